"""What the CLI prints: tables for people, JSON for scripts, messages on stderr.

Colour only on a terminal and never with NO_COLOR set (https://no-color.org). Away from a
terminal, tables are not wrapped to a width: each row stays one line for grep and cut.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

STATE_STYLES = {
    "live": "green",
    "active": "green",
    "failed": "red",
    "FAIL": "red",
    "warn": "yellow",
    "ok": "green",
    "crash-looping": "red",
    "cancelled": "yellow",
    "removing": "yellow",
    "superseded": "bright_black",
}
UNWRAPPED_WIDTH = 10_000
"""Away from a terminal: wide enough that no row is folded."""


def colour_allowed(environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return not environ.get("NO_COLOR")


def console_for(file: TextIO) -> Console:
    tty = file.isatty()
    return Console(
        file=file,
        color_system="auto" if colour_allowed() else None,
        no_color=not colour_allowed(),
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=not tty,
        width=None if tty else UNWRAPPED_WIDTH,
    )


@dataclass(frozen=True)
class Column:
    key: str
    header: str = ""

    @property
    def title(self) -> str:
        return (self.header or self.key.replace("_", " ")).upper()


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def styled(value: Any) -> Text:
    """The cell's text; a state word in its colour (the style is the span's, so text
    appended after it stays plain)."""
    text = cell(value)
    return Text().append(text, style=STATE_STYLES.get(text) or None)


class Output:
    """One command's output: `json` sends data as JSON and messages to stderr, so stdout
    stays parseable."""

    def __init__(
        self, *, json: bool = False, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.json = json
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._console = console_for(self.out)
        self._err_console = console_for(self.err)

    def data(self, value: Any) -> None:
        print(json.dumps(value, indent=2, default=str), file=self.out, flush=True)

    def table(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> None:
        """Rows as a table, or (with --json) as the API gave them."""
        if self.json:
            self.data(list(rows))
            return
        table = Table(
            box=None, show_edge=False, pad_edge=False, header_style="bold", show_header=True
        )
        for column in columns:
            table.add_column(column.title, overflow="fold")
        for row in rows:
            table.add_row(*(styled(row.get(c.key)) for c in columns))
        if self._console.is_terminal:
            self._console.print(table)
            return
        with self._console.capture() as captured:
            self._console.print(table)
        for line in captured.get().splitlines():  # no padding after the last column
            print(line.rstrip(), file=self.out)
        self.out.flush()

    def fields(self, value: Mapping[str, Any], keys: Sequence[str]) -> None:
        """One object as `key: value` lines, or (with --json) whole."""
        if self.json:
            self.data(value)
            return
        width = max(len(k) for k in keys)
        for key in keys:
            line = Text(f"{key}:".ljust(width + 2))
            line.append_text(styled(value.get(key)))
            self._console.print(line)

    def say(self, text: str | Text) -> None:
        """A message for the person at the terminal (stderr with --json)."""
        (self._err_console if self.json else self._console).print(text)

    def state(self, state: str, rest: str = "") -> None:
        line = styled(state)
        if rest:
            line.append(f"  {rest}")
        self.say(line)

    def raw(self, text: str) -> None:
        """Text as it is (a build log): no styling, no wrapping."""
        self.out.write(text)
        self.out.flush()

    def note(self, text: str) -> None:
        """A remark beside the output (stderr), such as how to use what was printed."""
        print(text, file=self.err, flush=True)

    def error(self, text: str) -> None:
        print(f"slipway: {text}", file=self.err, flush=True)
