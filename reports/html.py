"""Static HTML report of one run (Jinja2, autoescaped, no network)."""

from __future__ import annotations

import json
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from reports.aggregate import RunView, direction, format_bytes, load_run


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["bytes"] = format_bytes
    env.filters["direction"] = direction
    env.filters["ms"] = lambda v: "—" if v is None else f"{v:,.2f}"
    env.filters["num"] = lambda v: "—" if v is None else f"{v:.4f}"
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
    return env


def render_report(run_dir: Path, out_dir: Path | None = None) -> Path:
    view: RunView = load_run(run_dir)
    out_dir = out_dir or run_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    html = _environment().get_template("run.html.j2").render(view=view)
    target = out_dir / "index.html"
    target.write_text(html, encoding="utf-8")
    return target
