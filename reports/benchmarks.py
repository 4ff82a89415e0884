"""Benchmark results tables as the benchmarks' papers print them, and the published numbers a
suite's rows compare with.

- GenEval (Ghosh et al., Table 2): Overall, then Single object, Two object, Counting, Colors,
  Position, Color attribution — fractions of correct images; Overall is the mean of the six.
- DPG-Bench (ELLA, Table 2): Global, Entity, Attribute, Relation, Other (L1 categories), Overall.

Each table is one (metric, comparison size) of a run; its title names what the numbers are only
comparable with (the backend, and DPG-Bench's scoring protocol).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.view import RunView

GENEVAL_TASKS = {"single_object": "Single object", "two_object": "Two object", "counting": "Counting",
                 "colors": "Colors", "position": "Position", "color_attr": "Color attribution"}
DPG_CATEGORIES = {"global": "Global", "entity": "Entity", "attribute": "Attribute", "relation": "Relation",
                  "other": "Other"}


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]


def _cell(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def benchmark_tables(view: RunView) -> list[Table]:
    tables = []
    for size in view.sizes:
        for metric, build in (("geneval", _geneval_row), ("dpg_bench", _dpg_row)):
            rows = [(row.decoder, row.metrics[metric]) for row in view.rows_at(size)
                    if metric in row.metrics and row.metrics[metric].aggregate is not None]
            if rows:
                tables.append(build(view, size, rows))
    return tables


def _geneval_row(view: RunView, size: tuple[int, int], rows: list[tuple[str, Any]]) -> Table:
    backend = _backend(view, "geneval")
    title = f"GenEval · {size[0]}×{size[1]} · backend {backend} (comparable only with the same backend)"
    table = Table(title, ["decoder", "Overall", *GENEVAL_TASKS.values(), "images"], [])
    for decoder, summary in rows:
        tasks = summary.aggregate_details.get("tasks", {})
        table.rows.append([decoder, _cell(summary.aggregate, ".3f"),
                           *(_cell(tasks.get(tag), ".3f") for tag in GENEVAL_TASKS),
                           str(summary.aggregate_details.get("images", "—"))])
    return table


def _dpg_row(view: RunView, size: tuple[int, int], rows: list[tuple[str, Any]]) -> Table:
    params = view.metric_info.get("dpg_bench", {}).get("protocol", {}).get("params", {})
    title = (f"DPG-Bench · {size[0]}×{size[1]} · protocol {params.get('protocol', '?')} · VQA "
             f"{_backend(view, 'dpg_bench')} (comparable only with the same VQA model and protocol)")
    table = Table(title, ["decoder", *DPG_CATEGORIES.values(), "Overall", "prompts"], [])
    for decoder, summary in rows:
        categories = summary.aggregate_details.get("l1_categories", {})
        prompts = str(summary.aggregate_details.get("prompts", "—"))
        table.rows.append([decoder, *(_cell(categories.get(key), ".2f") for key in DPG_CATEGORIES),
                           _cell(summary.aggregate, ".2f"), prompts])
    return table


def _backend(view: RunView, metric: str) -> str:
    backend = view.metric_info.get(metric, {}).get("protocol", {}).get("backend", {})
    model = backend.get("model") or backend.get("detector")
    return f"{backend.get('name', '?')}" + (f" ({model})" if model else "")


def published_table(view: RunView) -> Table | None:
    """Measured next to published numbers, for the rows whose suite entry names them."""
    entries = {e.get("label") or e["name"]: e.get("published") or {}
               for e in view.manifest["suite"]["resolved"].get("decoder", [])}
    table = Table("published numbers these rows compare with", ["decoder", "what", "measured", "published",
                                                                  "source"], [])
    for decoder, published in entries.items():
        source = str(published.get("source", "—"))
        for what, value in published.items():
            if what != "source":
                table.rows.append([decoder, what, _measured(view, decoder, what), str(value), source])
    return table if table.rows else None


def _measured(view: RunView, decoder: str, what: str) -> str:
    cells = []
    for row in view.rows:
        if row.decoder != decoder:
            continue
        if what == "latency_ms":
            value = row.latency(0.5)
        elif what == "peak_memory":
            value = None if row.peak_memory_bytes is None else row.peak_memory_bytes / 2**30
        else:
            summary = row.metrics.get(what)
            value = summary.headline if summary else None
        unit = " GiB" if what == "peak_memory" and value is not None else ""
        cells.append(f"{_cell(value, '.4g')}{unit} @ {row.size[0]}×{row.size[1]}")
    return "; ".join(cells) or "not measured"
