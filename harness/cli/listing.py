"""`decoderbench list decoders|metrics|suites`: what the registries and the built-in suites hold."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.console import out
from harness.suite import SuiteError, builtin_suites_dir, load_suite


class _Verb(StrEnum):
    decoders = "decoders"
    metrics = "metrics"
    suites = "suites"


def list_(what: Annotated[_Verb, typer.Argument(help="decoders, metrics or suites")]) -> None:
    """List registered decoders, metrics, or the built-in suites."""
    if what == _Verb.decoders:
        _list_decoders()
    elif what == _Verb.metrics:
        _list_metrics()
    else:
        _list_suites()


def _list_decoders() -> None:
    from decoders.registry import DECODERS

    table = Table("name", "consumes", "latent spaces", "stochastic", "prompt", "native scale",
                  "from", "summary")
    for name, entry in DECODERS.entries().items():
        try:
            spec = DECODERS.get(name).spec
        except Exception as exc:
            table.add_row(name, "?", "", "", "", "", entry.origin, escape(f"cannot import: {exc}"))
            continue
        scale = "any" if spec.native_scale is None else f"{spec.native_scale:g}×"
        table.add_row(name, str(spec.consumes), ", ".join(spec.latent_spaces),
                      "yes" if spec.stochastic else "no", "yes" if spec.needs_prompt else "no",
                      scale, entry.origin, spec.summary)
    out.print(table)


def _list_metrics() -> None:
    from harness.metrics import METRICS

    table = Table("name", "family", "better", "from", "summary")
    for name, entry in METRICS.entries().items():
        try:
            cls = METRICS.get(name)
        except Exception as exc:
            table.add_row(name, "?", "", entry.origin, escape(f"cannot import: {exc}"))
            continue
        better = f"closest to {cls.target:g}" if cls.target is not None else (
            "higher" if cls.higher_is_better else "lower")
        table.add_row(name, str(cls.family), better,
                      entry.origin, cls.summary)
    out.print(table)


def _list_suites() -> None:
    table = Table("name", "path", "description")
    for path in sorted(builtin_suites_dir().glob("*.toml")):
        try:
            description = load_suite(path).model.description
        except SuiteError as exc:
            description = f"invalid: {exc}"
        table.add_row(path.stem, escape(str(path)), escape(description))
    out.print(table)
