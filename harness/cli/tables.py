"""Tables the command line prints, readable at any width and never truncated.

A `Grid` (key column, value cells) is laid out wide, transposed or long, whichever first fits the
console; names, numbers, URLs and digests never wrap and nothing is cut to `…`
(docs/command-line.md, output for every reader).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

Layout = Literal["wide", "transposed", "long"]
TEXT_MIN_WIDTH = 24  # a free-text column narrower than this reads as a word list: use another layout
KEY_MIN_WIDTH = 24  # a transposed table's first column (criteria, properties) wraps down to this
LOG_BOX = box.Box("    \n    \n -- \n    \n    \n -- \n    \n    \n")


@dataclass(frozen=True)
class Column:
    name: str
    numeric: bool = False  # right-aligned
    text: bool = False  # free text (summaries, messages): may wrap between words
    optional: bool = False  # left out, with a note, when the table fits no grid with it
    notes: bool | str = False  # when left out, its cells are printed under the table, one line per
    #                            row, named by the row's key (and by this column's value, if a name)
    min_text: int = TEXT_MIN_WIDTH  # a text column's narrowest width (its longest word if wider)


@dataclass(frozen=True)
class Cell:
    text: str
    interval: str = ""  # "± 0.012" (shown after the value), or e.g. "p90 4.1" (shown in brackets)
    n: str = ""  # values behind it ("13", "12/13"); shown in the long layout, and when partial
    best: bool = False
    style: str = ""  # a rich style on terminals ("red", "green"); logs and Markdown drop it
    partial: bool = False  # n covers only part of the cases: shown in every layout
    note: str = ""  # a qualifier shown after the value in brackets ("unstable", "uninformative")

    @property
    def value(self) -> str:
        """The value with its qualifier and interval (the long layout's value column)."""
        text = f"{'★ ' if self.best else ''}{self.text}" + (f" ({self.note})" if self.note else "")
        if not self.interval:
            return text
        interval = self.interval if self.interval.startswith("±") else f"({self.interval})"
        return f"{text} {interval}"

    @property
    def full(self) -> str:
        """Everything in one line (wide and transposed layouts)."""
        return f"{self.value} [{self.n}]" if self.partial and self.n else self.value

    @property
    def stacked(self) -> str:
        """Everything on short lines: the value, its qualifier, each part of its interval, the
        coverage (grids that do not fit with one line per cell)."""
        lines = [f"{'★ ' if self.best else ''}{self.text}"]
        lines += [f"({self.note})"] if self.note else []
        if self.interval.startswith("±"):
            lines.append(self.interval)
        elif self.interval:
            lines += [part.strip() for part in self.interval.split(", ")]
        lines += [f"[{self.n}]"] if self.partial and self.n else []
        return "\n".join(lines)


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

    def without(self, names: tuple[str, ...]) -> Grid:
        keep = [i for i, column in enumerate(self.columns) if column.name not in names]
        return replace(self, columns=[self.columns[i] for i in keep],
                       rows=[(key, [cells[i] for i in keep]) for key, cells in self.rows])


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
    columns = [Column(grid.field_name, text=True, min_text=KEY_MIN_WIDTH),
               *(Column(key, numeric=True) for key, _ in grid.rows)]
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


@dataclass(frozen=True)
class Choice:
    """How a grid is printed: its layout, whether cells are stacked, the columns left out."""

    layout: Layout
    stacked: bool = False
    left_out: tuple[str, ...] = ()


def _text_of(cell: Cell, layout: Layout, index: int, stacked: bool = False) -> str:
    if layout == "long" and index == 2:
        return cell.value
    return cell.stacked if stacked and index > 0 else cell.full


def _longest_word(texts: Iterable[str]) -> int:
    return max((cell_len(w) for t in texts for w in t.split()), default=0)


def _min_width(column: Column, texts: list[str]) -> int:
    """The narrowest a column may be: its longest line, or for free text its longest word (at
    least `min_text` where the text is that long)."""
    longest = max((cell_len(line) for t in texts for line in t.splitlines()), default=0)
    if not column.text:
        return longest
    return max(_longest_word(texts), min(longest, column.min_text))


def _header(name: str, width: int) -> str:
    """A header wrapped between words to the column's width (never inside a word)."""
    lines = textwrap.wrap(name, max(width, 1), break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines) or name


def _rich_table(shaped: _Shaped, layout: Layout, plain: bool, stacked: bool = False,
                cap: int | None = None, wrap_headers: bool = True) -> Table:
    """`cap`: the widest a free-text column may be (only when no layout fits: text then wraps
    at its words, and a word longer than the cap keeps the column at its length).
    `wrap_headers`: headers may wrap between words to their column's width (else they are whole)."""
    table = Table(box=LOG_BOX if plain else box.ROUNDED, show_edge=not plain, pad_edge=not plain,
                  collapse_padding=plain,
                  header_style="" if plain else "bold", highlight=False)
    for index, column in enumerate(shaped.columns):
        texts = [_text_of(row[index], layout, index, stacked) for row in shaped.rows]
        minimum = max(_min_width(column, texts), _longest_word([column.name]) if wrap_headers
                      else cell_len(column.name))
        if column.text and cap is not None:
            minimum = max(min(minimum, cap), _longest_word([*texts, column.name]))
        table.add_column(_header(column.name, minimum), justify="right" if column.numeric else "left",
                         no_wrap=not column.text, overflow="fold", min_width=minimum,
                         max_width=max(cap, minimum) if column.text and cap is not None else None)
    for number, row in enumerate(shaped.rows):
        table.add_row(*(Text(_text_of(cell, layout, i, stacked), style="" if plain else cell.style)
                        for i, cell in enumerate(row)),
                      end_section=(not plain or stacked) and number in shaped.sections[:-1])
    return table


def _attempts(grid: Grid, plain: bool) -> Iterator[tuple[Grid, Choice]]:
    """Grids first (one line per cell, then stacked), then without optional columns, then long."""
    optional = [c.name for c in grid.columns if c.optional]
    # the optional columns leave from the right, one at a time
    left_outs = [tuple(optional[len(optional) - count:]) for count in range(len(optional) + 1)]
    for left_out in left_outs:
        candidate = grid.without(left_out) if left_out else grid
        for stacked in (False, True):
            for layout in ("wide", "transposed"):
                if layout in grid.layouts and not (stacked and not _has_stack(candidate)):
                    yield candidate, Choice(layout, stacked, left_out)
    yield grid, Choice("long")


def _has_stack(grid: Grid) -> bool:
    return any("\n" in cell.stacked for _, row in grid.rows for cell in row)


def choose(grid: Grid, console: Console, width: int, plain: bool) -> tuple[Choice, Table]:
    """The first layout whose narrowest rendering fits `width` (the long form when none does)."""
    for candidate, choice in _attempts(grid, plain):
        for wrap_headers in (False, True):  # whole headers where they fit
            table = _rich_table(SHAPES[choice.layout](candidate), choice.layout, plain, choice.stacked,
                                wrap_headers=wrap_headers)
            if _needed(console, table) <= width:
                return choice, table
    shaped = SHAPES["long"](grid)
    texts = sum(c.text for c in shaped.columns)
    if not texts:
        return Choice("long"), table
    floor = 12
    others = _needed(console, _rich_table(shaped, "long", plain, cap=floor)) - floor * texts
    return Choice("long"), _rich_table(shaped, "long", plain, cap=max(floor, (width - others) // texts))


def _needed(console: Console, table: Table) -> int:
    return console.measure(table, options=console.options.update_width(10**6)).minimum


def print_grid(grid: Grid, console: Console, plain: bool | None = None) -> Layout:
    """Print a grid to `console` in the layout that fits it; return the layout used."""
    plain = not console.is_terminal if plain is None else plain
    width = console.width
    choice, table = choose(grid, console, width, plain)
    for line in textwrap.wrap(grid.title, width, break_long_words=False, break_on_hyphens=False):
        console.print(Text(line, style="" if plain else "bold"), soft_wrap=True)
    needed = _needed(console, table)
    if needed <= width:
        console.print(table, width=width)
    else:  # names, numbers or URLs wider than any table allows: one `field: value` line each
        _print_records(grid, console, width)
    if grid.legend:
        print_wrapped(console, grid.legend, width, style="" if plain else "dim")
    as_notes = [i for i, column in enumerate(grid.columns) if column.name in choice.left_out and column.notes]
    names = [column.name for column in grid.columns]
    for index in as_notes:  # each row's cell under the table, whole
        also = grid.columns[index].notes
        for key, cells in grid.rows:
            if cells[index].text not in ("", "—"):
                name = f"{key} · {cells[names.index(also)].text}" if isinstance(also, str) else key
                print_wrapped(console, cells[index].value, width, prefix=f"{name}: ",
                              prefix_style="" if plain else "bold")
    hidden = [name for name in choice.left_out if name not in {grid.columns[i].name for i in as_notes}]
    if hidden:
        print_wrapped(console, f"{', '.join(hidden)} left out to fit {width} columns; a wider "
                      f"console shows {'them' if len(hidden) > 1 else 'it'} (COLUMNS=160)",
                      width, style="" if plain else "dim")
    return choice.layout


def _print_records(grid: Grid, console: Console, width: int) -> None:
    """Not even the long form fits (long names, URLs, digests): each row as its name, then one
    `field: value` line per column, wrapped between words, long words whole on their own line."""
    for key, cells in grid.rows:
        console.print(Text(key, style="bold"), soft_wrap=True, highlight=False)
        for column, cell in zip(grid.columns, cells, strict=True):
            print_wrapped(console, cell.value, width, prefix=f"  {column.name}: ", indent=4, style=cell.style)


def print_wrapped(console: Console, text: str, width: int | None = None, prefix: str = "",
                  style: str = "", prefix_style: str = "", indent: int = 2) -> None:
    """Text wrapped between words: a word longer than the line (a URL, a path) goes on a line of
    its own, unbroken (soft wrap: a terminal may fold it, but copying it gives it whole). Each line
    of `text` starts a line of its own (two problems never run together)."""
    width = width or console.width
    lines: list[str] = []
    for number, paragraph in enumerate(text.splitlines() or [""]):
        first = " " * (len(prefix) if number == 0 else indent)
        wrapped = textwrap.wrap(paragraph, width, initial_indent=first, subsequent_indent=" " * indent,
                                break_long_words=False, break_on_hyphens=False)
        lines += wrapped or ([first] if not number else [])
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


def markdown_grid(grid: Grid) -> str:
    """A GitHub Markdown grid: decoders × criteria or criteria × decoders, whichever has fewer
    columns (a pull-request comment scrolls sideways, never folds a cell)."""
    layout: Layout = "transposed" if len(grid.rows) < len(grid.columns) and "transposed" in grid.layouts \
        else "wide"
    shaped = SHAPES[layout](grid)
    lines = [f"**{_md(grid.title)}**", ""]
    lines.append("| " + " | ".join(_md(c.name) for c in shaped.columns) + " |")
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in shaped.columns) + "|")
    for row in shaped.rows:
        lines.append("| " + " | ".join(_md(_text_of(c, layout, i)) for i, c in enumerate(row)) + " |")
    if grid.legend:
        lines += ["", f"_{_md(grid.legend)}_"]
    return "\n".join(lines) + "\n"
