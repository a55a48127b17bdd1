"""Inline SVG sparklines: a series of numbers as a small line (or several series, one line
each, on one scale), with its summary in words.

Built from numbers only (no text of a tenant's goes in), so the markup is safe to embed as is;
no script and no external file: the chart reads without JavaScript, and its `<title>` and the
text beside it say what it shows for people who cannot see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 120
HEIGHT = 28


LINE_STYLES = (
    ("#0550ae", ""),
    ("#bc4c00", "5 3"),
    ("#116329", "1.5 2"),
    ("#8250df", "7 2 1.5 2"),
    ("#a40e26", "3 3"),
    ("#57606a", "9 3"),
)
"""Colour and dash of each line of a chart with several (one per replica): told apart by
dash as well as colour, for people who do not see the colours apart."""


@dataclass(frozen=True)
class Key:
    """One line of a chart with several: what it is, how it is drawn, its values in words."""

    name: str
    colour: str
    dash: str
    summary: str


@dataclass(frozen=True)
class Chart:
    label: str
    svg: str
    summary: str
    keys: tuple[Key, ...] = ()
    """The lines of a chart with several, each with its own summary (empty: one line)."""


def sparkline(
    values: Sequence[float], label: str, *, width: int = WIDTH, height: int = HEIGHT
) -> str:
    """An SVG polyline of `values` scaled to the box (flat at the bottom when all are zero)."""
    title = (
        f"{label}: no data" if not values else f"{label}: last {values[-1]:g}, max {max(values):g}"
    )
    if not values:
        return (
            f'<svg class="spark" width="{width}" height="{height}" role="img" '
            f'aria-label="{_escape(title)}"><title>{_escape(title)}</title></svg>'
        )
    top = max(values) or 1.0
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}" for i, v in enumerate(values)
    )
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_escape(title)}"><title>{_escape(title)}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>'
    )


def chart(values: Sequence[float], label: str, unit: str = "") -> Chart:
    if not values:
        summary = "no data in the last hour"
    else:
        summary = f"now {values[-1]:g}{unit}, max {max(values):g}{unit}"
    return Chart(label=label, svg=sparkline(values, label, width=240, height=48), summary=summary)


def lines_chart(
    lines: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    label: str,
    unit: str = "",
    *,
    width: int = 240,
    height: int = 48,
) -> Chart:
    """A chart of several series on one scale (CPU of each replica): each a `(name, points)`,
    a point `(x, value)` with x from 0 (the window's start) to 1 (now), so lines of replicas
    that lived through different parts of the window sit where they were in time."""
    shown = [(name, list(points)) for name, points in lines if points]
    if not shown:
        return Chart(
            label=label,
            svg=sparkline([], label, width=width, height=height),
            summary="no data in the last hour",
        )
    top = max(value for _, points in shown for _, value in points) or 1.0
    keys: list[Key] = []
    marks: list[str] = []
    for index, (name, points) in enumerate(shown):
        colour, dash = LINE_STYLES[index % len(LINE_STYLES)]
        values = [value for _, value in points]
        keys.append(Key(name, colour, dash, f"now {values[-1]:g}{unit}, max {max(values):g}{unit}"))
        xy = [
            (min(max(x, 0.0), 1.0) * (width - 2) + 1, height - 1 - (v / top) * (height - 2))
            for x, v in points
        ]
        style = f'stroke="{colour}" stroke-width="1.5"' + (
            f' stroke-dasharray="{dash}"' if dash else ""
        )
        if len(xy) == 1:
            marks.append(f'<circle cx="{xy[0][0]:.1f}" cy="{xy[0][1]:.1f}" r="2" fill="{colour}"/>')
        else:
            drawn = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
            marks.append(f'<polyline fill="none" {style} points="{drawn}"/>')
    title = f"{label}: " + "; ".join(f"{key.name} {key.summary}" for key in keys)
    svg = (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{_escape(title)}"><title>{_escape(title)}</title>'
        + "".join(marks)
        + "</svg>"
    )
    summary = f"{len(keys)} replica{'s' if len(keys) != 1 else ''} in the last hour"
    return Chart(label=label, svg=svg, summary=summary, keys=tuple(keys))


def _escape(text: str) -> str:
    """For element text and double-quoted attributes alike (names are the platform's own)."""
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
