"""Inline SVG sparklines: a series of numbers as a small line, with its summary in words.

Built from numbers only (no text of a tenant's goes in), so the markup is safe to embed as is;
no script and no external file: the chart reads without JavaScript, and its `<title>` and the
text beside it say what it shows for people who cannot see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 120
HEIGHT = 28


@dataclass(frozen=True)
class Chart:
    label: str
    svg: str
    summary: str


def sparkline(
    values: Sequence[float], label: str, *, width: int = WIDTH, height: int = HEIGHT
) -> str:
    """An SVG polyline of `values` scaled to the box (flat at the bottom when all are zero)."""
    title = (
        f"{label}: no data" if not values else f"{label}: last {values[-1]:g}, max {max(values):g}"
    )
    if not values:
        return (
            f'<svg class="spark" width="{width}" height="{height}" role="img">'
            f"<title>{_escape(title)}</title></svg>"
        )
    top = max(values) or 1.0
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}" for i, v in enumerate(values)
    )
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img"><title>{_escape(title)}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>'
    )


def chart(values: Sequence[float], label: str, unit: str = "") -> Chart:
    if not values:
        summary = "no data in the last hour"
    else:
        summary = f"now {values[-1]:g}{unit}, max {max(values):g}{unit}"
    return Chart(label=label, svg=sparkline(values, label, width=240, height=48), summary=summary)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
