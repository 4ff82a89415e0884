"""Tables the command line prints, readable at any width and never truncated.

A `Grid` is a table in neutral form: a key column that names each row (a decoder, a metric,
a file) and value columns of `Cell`s (a value, its interval, how many values it stands on, the
best mark). It is laid out three ways:

- wide: one row per key, one column per value column (the usual table);
- transposed: one row per value column, one column per key (few decoders, many metrics);
- long: one row per (key, column): key | column | value ± interval | n.

`print_grid` takes the first layout whose narrowest rendering fits the console width (names
and numbers never wrap; free-text columns wrap between words, never inside one), so no cell
is ever cut to `…`. On a terminal the table is boxed; piped output (CI logs) gets the log
layout: no box, no colour, a dashed header rule, and the long form when the wide table does
not fit, one self-contained line per value so that `grep` finds it. `markdown_grid` writes the
same choice as a Markdown table (pastes into pull requests), `print_note` prints notes whose
long words (URLs, paths) go on their own line, unbroken.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.segment import Segments
from rich.table import Table
from rich.text import Text

Layout = Literal["wide", "transposed", "long"]
TEXT_MIN_WIDTH = 24  # a free-text column narrower than this reads as a word list: use another layout
LOG_BOX = box.Box("    \n    \n -- \n    \n    \n -- \n    \n    \n")


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool = False  # right-aligned
    text: bool = False  # free text (summaries, messages): may wrap between words


@dataclass(frozen=True)
class Cell:
    text: str
    interval: str = ""  # "± 0.012" (shown after the value), or e.g. "p90 4.1" (shown in brackets)
    n: str = ""  # values behind it ("13", "12/13"); shown in the long layout, and when partial
    best: bool = False
    style: str = ""  # a rich style on terminals ("red", "green"); logs and Markdown drop it
    partial: bool = False  # n covers only part of the cases: shown in every layout

    @property
    def value(self) -> str:
        """The value with its interval (the long layout's value column)."""
        mark = "★ " if self.best else ""
        if not self.interval:
            return f"{mark}{self.text}"
        interval = self.interval if self.interval.startswith("±") else f"({self.interval})"
        return f"{mark}{self.text} {interval}"

    @property
    def full(self) -> str:
        """Everything in one cell (wide and transposed layouts)."""
        return f"{self.value} [{self.n}]" if self.partial and self.n else self.value


@dataclass
class Grid:
    title: str
    key: Column
    columns: list[Column]
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    legend: str = ""  # one line under the table: what marks and intervals mean
    field_name: str = "field"  # the long layout's name for the value columns ("metric", ...)
    layouts: tuple[Layout, ...] = ("wide", "transposed", "long")

    def add(self, key: str, row: Iterable[Cell | str]) -> None:
        self.rows.append((key, [c if isinstance(c, Cell) else Cell(c) for c in row]))


@dataclass
class _Shaped:
    """A layout of a grid: header columns and rows of cells (first cell: the row's name)."""

    columns: list[Column]
    rows: list[list[Cell]]
    sections: list[int] = field(default_factory=list)  # row indices that end a group


def _wide(grid: Grid) -> _Shaped:
    columns = [grid.key, *grid.columns]
    return _Shaped(columns, [[Cell(key), *row] for key, row in grid.rows])


def _transposed(grid: Grid) -> _Shaped:
    columns = [Column(grid.field_name), *(Column(key, numeric=True) for key, _ in grid.rows)]
    rows = [[Cell(column.name), *(row[index] for _, row in grid.rows)]
            for index, column in enumerate(grid.columns)]
    return _Shaped(columns, rows)


def _long(grid: Grid) -> _Shaped:
    with_n = any(cell.n for _, row in grid.rows for cell in row)
    columns = [grid.key, Column(grid.field_name), Column("value", text=True)]
    columns += [Column("n", numeric=True)] if with_n else []
    rows, sections = [], []
    for key, row in grid.rows:
        for column, cell in zip(grid.columns, row, strict=True):
            shaped = [Cell(key), Cell(column.name), replace(cell, partial=False)]
            rows.append(shaped + ([Cell(cell.n)] if with_n else []))
        sections.append(len(rows) - 1)
    return _Shaped(columns, rows, sections)


SHAPES = {"wide": _wide, "transposed": _transposed, "long": _long}


def _text_of(cell: Cell, layout: Layout, index: int) -> str:
    return cell.value if layout == "long" and index == 2 else cell.full


def _min_width(column: Column, texts: list[str]) -> int:
    """The narrowest a column may be: its longest value, or for free text its longest word (at
    least TEXT_MIN_WIDTH where the text is that long)."""
    longest = max(map(cell_len, texts), default=0)
    if not column.text:
        return longest
    word = max((cell_len(w) for t in texts for w in t.split()), default=0)
    return max(word, min(longest, TEXT_MIN_WIDTH))


def _rich_table(shaped: _Shaped, layout: Layout, plain: bool, cap: int | None = None) -> Table:
    """`cap`: the widest a free-text column may be (only when no layout fits: a word longer than
    that folds onto the next line; still never an ellipsis)."""
    table = Table(box=LOG_BOX if plain else box.ROUNDED, show_edge=not plain, pad_edge=not plain,
                  header_style="" if plain else "bold", highlight=False)
    for index, column in enumerate(shaped.columns):
        texts = [column.name] + [_text_of(row[index], layout, index) for row in shaped.rows]
        minimum = _min_width(column, texts)
        if column.text and cap is not None:
            minimum = min(minimum, cap)
        table.add_column(column.name, justify="right" if column.numeric else "left",
                         no_wrap=not column.text, overflow="fold", min_width=minimum,
                         max_width=cap if column.text else None)
    for number, row in enumerate(shaped.rows):
        table.add_row(*(Text(_text_of(cell, layout, i), style="" if plain else cell.style)
                        for i, cell in enumerate(row)),
                      end_section=not plain and number in shaped.sections[:-1])
    return table


def choose(grid: Grid, console: Console, width: int, plain: bool) -> tuple[Layout, Table]:
    """The first layout whose narrowest rendering fits `width` (the long form when none does)."""
    layouts = [layout for layout in grid.layouts if not (plain and layout == "transposed")]
    for layout in layouts:
        table = _rich_table(SHAPES[layout](grid), layout, plain)
        if _needed(console, table) <= width:
            return layout, table
    shaped = SHAPES[layout](grid)
    texts = sum(c.text for c in shaped.columns)
    if not texts:
        return layout, table
    floor = 12
    others = _needed(console, _rich_table(shaped, layout, plain, cap=floor)) - floor * texts
    return layout, _rich_table(shaped, layout, plain, cap=max(floor, (width - others) // texts))


def _needed(console: Console, table: Table) -> int:
    return console.measure(table, options=console.options.update_width(10**6)).minimum


def print_grid(grid: Grid, console: Console, plain: bool | None = None) -> Layout:
    """Print a grid to `console` in the layout that fits it; return the layout used."""
    plain = not console.is_terminal if plain is None else plain
    width = console.width
    layout, table = choose(grid, console, width, plain)
    for line in textwrap.wrap(grid.title, width, break_long_words=False, break_on_hyphens=False):
        console.print(Text(line, style="" if plain else "bold"), soft_wrap=True)
    needed = _needed(console, table)
    if needed <= width:
        console.print(table, width=width)
    else:  # names and numbers alone wider than the console: printed whole, the terminal folds lines
        console.print(Segments(list(console.render(table, console.options.update_width(needed)))),
                      soft_wrap=True, crop=False)
    if grid.legend:
        print_wrapped(console, grid.legend, width, style="" if plain else "dim")
    return layout


def print_wrapped(console: Console, text: str, width: int | None = None, prefix: str = "",
                  style: str = "", prefix_style: str = "", indent: int = 2) -> None:
    """Text wrapped between words: a word longer than the line (a URL, a path) goes on a line of
    its own, unbroken (soft wrap: a terminal may fold it, but copying it gives it whole)."""
    width = width or console.width
    lines = textwrap.wrap(text, width, initial_indent=" " * len(prefix), subsequent_indent=" " * indent,
                          break_long_words=False, break_on_hyphens=False) or [" " * len(prefix)]
    for index, line in enumerate(lines):
        rendered = Text()
        if index == 0 and prefix:
            rendered.append(prefix, style=prefix_style)
            line = line[len(prefix):]
        rendered.append(line, style=style)
        console.print(rendered, soft_wrap=True, highlight=False)


def print_note(console: Console, message: str, label: str = "note", style: str = "yellow") -> None:
    print_wrapped(console, message, prefix=f"{label}: ", prefix_style=style)


def print_checks(console: Console, title: str, checks: list[tuple[str, str]]) -> bool:
    """A titled list of checks: `✓ name`, or `✗ name: what is missing and how to get it`."""
    console.print(Text(title, style="bold"), soft_wrap=True)
    for name, problem in checks:
        if problem:
            print_wrapped(console, problem, prefix=f"  ✗ {name}: ", prefix_style="red", indent=6)
        else:
            print_wrapped(console, "", prefix=f"  ✓ {name}", prefix_style="green")
    return not any(problem for _, problem in checks)


# --------------------------------------------------------------------------- markdown


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_grid(grid: Grid, width: int) -> str:
    """A GitHub Markdown table in the first layout whose plain rendering fits `width`."""
    layout, _ = choose(grid, Console(width=10**6, color_system=None), width, plain=False)
    shaped = SHAPES[layout](grid)
    lines = [f"**{_md(grid.title)}**", ""]
    lines.append("| " + " | ".join(_md(c.name) for c in shaped.columns) + " |")
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in shaped.columns) + "|")
    for row in shaped.rows:
        lines.append("| " + " | ".join(_md(_text_of(c, layout, i)) for i, c in enumerate(row)) + " |")
    if grid.legend:
        lines += ["", f"_{_md(grid.legend)}_"]
    return "\n".join(lines) + "\n"
