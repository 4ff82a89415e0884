"""Helpers shared by test modules (import as `from helpers import ...`)."""

from __future__ import annotations

import csv
import errno
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T")

BENCH = Path(__file__).resolve().parents[2] / "bench"


# A loaded machine can briefly refuse a new process (fork: EAGAIN, ENOMEM): a fixture asks again.
START_ERRNOS = frozenset({errno.EAGAIN, errno.ENOMEM})


def started(start: Callable[..., T], *args: Any, retry_on: tuple[type[BaseException], ...] = (),
            **kwargs: Any) -> T:
    """`start(*args, **kwargs)` (subprocess.run or Popen, a browser's launch), asked again up to three
    times, after a pause, when the machine cannot start a process now; `retry_on`: other exceptions
    that mean the same (a browser that died while starting). Never around an assertion."""
    pauses = [0.5, 2.0, 5.0]
    while True:
        try:
            return start(*args, **kwargs)
        except OSError as exc:
            if exc.errno not in START_ERRNOS or not pauses:
                raise
        except retry_on:
            if not pauses:
                raise
        time.sleep(pauses.pop(0))


def suite_text(folder: Path, decoders: str, **extra: str) -> str:
    """A small suite over `folder`: 16x16 inputs, 32x32 comparison size."""
    top = "\n".join(f"{key} = {value}" for key, value in extra.items())
    return f"""
name = "t"
seeds = [0]
metrics = ["psnr", "ssim"]
{top}

[source]
kind = "images"
folder = "{folder}"

[resolution]
input = 16
output_scale = 2

[timing]
warmup = 1
repeats = 2
timeout_s = 60
load_timeout_s = 120

{decoders}
"""


def decoder_tables(*entries: str) -> str:
    return "\n".join(f"[[decoder]]\n{entry}\n" for entry in entries)


def cli(*args: str, cwd: Path | None = None, timeout: float = 300,
        columns: int = 200) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess (piped, as in CI: the log layout)."""
    return started(
        subprocess.run, [sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "COLUMNS": str(columns)},
    )


def invoke(*args: str):
    """The command line in this process (fast, no interpreter start); same exit codes."""
    from typer.testing import CliRunner

    from harness.cli import app

    return CliRunner(env={"COLUMNS": "200", "GITHUB_STEP_SUMMARY": ""}).invoke(app, list(args))


DPG_COLUMNS = ["item_id", "text", "keywords", "proposition_id", "dependency", "category_broad",
               "category_detailed", "tuple", "question_natural_language"]


def write_dpg_csv(path: Path, rows: list[tuple]) -> Path:
    """A dpg_bench.csv with ELLA's columns from (item, text, proposition id, dependency, tuple,
    question) rows; the columns no reader uses are left empty."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DPG_COLUMNS)
        for item, text, qid, dependency, tuple_, question in rows:
            writer.writerow([item, text, "", qid, dependency, "", "", tuple_, question])
    return path


def bench_script(name: str) -> ModuleType:
    """bench/<name>.py (the harness's own benchmarks: scripts, not an installed package) as a module."""
    module_name = f"bench_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # before running it: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[module_name]
