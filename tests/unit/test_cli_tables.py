"""Tables at any width: nothing is ever cut to `…`, names and numbers stay whole, the layout
follows the width, piped output gets the log layout, Markdown escapes what it must; and every
table the command line prints, rendered at 80 columns (what a CI log shows)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from helpers import cli, started
from rich.console import Console
from synthetic_runs import SynthDecoder, write_run

from harness.cli.tables import Cell, Column, Grid, choose, markdown_grid, print_grid, print_note

LONG_NAMES = ["flux-vae.real-esrgan", "pid-teacher-50step", "vae-tiled", "bilinear"]
SUMMARY = "a decoder that tiles large outputs with overlapping cross-faded tiles"


def _grid() -> Grid:
    columns = [Column(f"metric_number_{i} ↑", numeric=True) for i in range(9)]
    grid = Grid("synth · 2048×2048", Column("decoder"), [*columns, Column("summary", text=True)])
    for index, name in enumerate(LONG_NAMES):
        cells = [Cell(f"{1234.5678 * (index + 1) + i:,.4f}", interval=f"± {0.0123 * (i + 1):.4f}", n="13",
                      best=i == index) for i in range(9)]
        grid.add(name, [*cells, Cell(SUMMARY)])
    return grid


def _render(grid: Grid, width: int, terminal: bool) -> tuple[str, str]:
    console = Console(width=width, record=True, force_terminal=terminal, color_system=None)
    layout = print_grid(grid, console)
    return layout, console.export_text()


@pytest.mark.parametrize("terminal", [True, False])
@pytest.mark.parametrize("width", [40, 80, 120, 400])
def test_no_value_or_name_is_ever_cut(width: int, terminal: bool) -> None:
    grid = _grid()
    _, text = _render(grid, width, terminal)
    assert "…" not in text
    for name, cells in grid.rows:
        assert name in text
        for cell in cells[:-1]:  # names and numbers never wrap: each appears whole on one line
            assert cell.text in text
            assert cell.interval in text or width < 80  # narrower, the long form's value wraps at words
    for word in SUMMARY.split():
        assert re.search(rf"(^|[\s│]){re.escape(word)}([\s│]|$)", text, re.MULTILINE), word  # whole words
    if width >= 80:
        assert max(len(line) for line in text.splitlines()) <= width


def test_the_layout_follows_the_width_and_pipes_get_a_grid_whenever_it_fits() -> None:
    grid = _grid()
    assert _render(grid, 400, True)[0] == "wide"
    assert _render(grid, 80, True)[0] == "long"
    narrow = Grid("t", Column("decoder"), [Column(f"m{i}", numeric=True) for i in range(12)])
    for name in ("a", "b"):
        narrow.add(name, [Cell(f"{i}.{i}{i}{i}") for i in range(12)])
    assert choose(narrow, Console(), 40, plain=False)[0].layout == "transposed"
    assert choose(narrow, Console(), 40, plain=True)[0].layout == "transposed"  # logs get grids too
    layout, text = _render(narrow, 40, terminal=False)
    assert layout == "transposed" and "─" not in text and "│" not in text  # no box drawing in logs
    assert re.search(r"^m11\s+11\.111111\s+11\.111111$", text, re.MULTILINE)
    wide = Grid("t", Column("decoder"), [Column(f"m{i}", numeric=True) for i in range(12)])
    for name in [f"decoder-{i}" for i in range(8)]:  # no grid fits 40 columns: one line per value
        wide.add(name, [Cell(f"{i}.{i}{i}{i}") for i in range(12)])
    layout, text = _render(wide, 40, terminal=False)
    assert layout == "long" and re.search(r"^decoder-7\s+m11\s+11\.111111$", text, re.MULTILINE)


def test_cells_stack_their_interval_before_a_grid_gives_way_to_the_long_form() -> None:
    grid = Grid("t", Column("decoder"), [Column(f"metric {i} ↑", numeric=True) for i in range(8)])
    for name in ("lanczos", "bicubic", "nearest", "bilinear"):
        grid.add(name, [Cell("0.9148", interval="± 0.0272", best=i == 0) for i in range(8)])
    grid.rows[0][1][1] = Cell("0.40", interval="p90 20.58, spread 821%", note="unstable")
    choice, _ = choose(grid, Console(), 70, plain=True)
    assert (choice.layout, choice.stacked) == ("transposed", True)
    _, text = _render(grid, 70, terminal=False)
    lines = text.splitlines()
    assert any(re.search(r"^metric 0 ↑\s+★ 0\.9148\s+★ 0\.9148", line) for line in lines)
    assert any(re.search(r"^\s+± 0\.0272\s+± 0\.0272", line) for line in lines)
    for part in ("(unstable)", "p90 20.58", "spread 821%"):  # each on a line of its own, whole
        assert any(part in line for line in lines), part
    assert max(map(len, lines)) <= 70


def test_optional_columns_leave_before_the_long_form_and_a_note_says_so() -> None:
    grid = Grid("metrics", Column("name"), [Column("unit"), Column("group"), Column("one value per"),
                                            Column("summary", text=True, optional=True)])
    for index in range(30):
        grid.add(f"metric_{index}", ["distance (≈0–1)", "no_reference", "seed group",
                                     "a summary that is far too long to share a line with the other "
                                     "columns of this table at sixty columns of width"])
    layout, text = _render(grid, 60, terminal=False)
    assert layout == "wide" and "summary left out to fit 60 columns" in " ".join(text.split())
    assert len(text.splitlines()) <= 36
    layout, text = _render(grid, 300, terminal=False)
    assert "left out" not in text and "a summary that is far too long" in text


def test_the_long_form_carries_value_interval_mark_and_n() -> None:
    _, text = _render(_grid(), 80, terminal=False)
    assert re.search(r"^bilinear\s+metric_number_3 ↑\s+★ 4,941\.2712 ± 0\.0492\s+13$", text, re.MULTILINE)


def test_markdown_escapes_pipes_and_keeps_everything() -> None:
    grid = Grid("a | b", Column("decoder"), [Column("note", text=True), Column("x", numeric=True)])
    grid.add("d|1", [Cell("one | two"), Cell("3.5", best=True)])
    grid.add("d2", [Cell("three"), Cell("4.5", interval="± 0.1")])
    text = markdown_grid(grid)  # 2 decoders, 2 columns: a row per decoder
    assert "**a \\| b**" in text and "| d\\|1 | one \\| two | ★ 3.5 |" in text
    assert "| d2 | three | 4.5 ± 0.1 |" in text
    assert "|---|---|---:|" in text


def test_markdown_is_one_criterion_by_decoder_grid(run_dir: Path) -> None:
    """What a pull-request comment wants: one grid per table, criteria down, decoders across."""
    text = cli("show", str(run_dir), "--format", "markdown", columns=80).stdout
    tables = [block for block in text.split("\n\n") if block.startswith("| ")]
    assert len(tables) == 1  # the summary's win rates, then every criterion
    header = tables[0].splitlines()[0]
    assert sorted(header.strip("| ").split(" | ")[1:]) == sorted(LONG_NAMES)
    rows = tables[0].splitlines()[2:]
    assert rows[0].startswith("| overall win rate |")
    assert any(row.startswith("| psnr ↑") for row in rows) and len(rows) < 20


def test_notes_print_long_words_whole_on_their_own_line() -> None:
    url = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
    console = Console(width=80, record=True, color_system=None)
    print_note(console, f"metric fid unavailable: missing weight file (source: {url}) or copy it there")
    lines = console.export_text().splitlines()
    assert [line for line in lines if url in line] == [f"  {url})"]  # whole, on a line of its own
    assert all(len(line) <= 80 for line in lines if url not in line)


# --------------------------------------------------------------------------- the command line at 80


def _no_ellipsis(result) -> str:
    text = result.stdout + result.stderr
    assert result.returncode in (0, 1), text
    assert "…" not in text, text
    return text


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tables")
    decoders = [SynthDecoder(name, latency_ms=10 * (i + 1), metrics={
        "psnr": lambda k, i=i: 20 + i + 0.1 * k, "ssim": lambda k, i=i: 0.6 + 0.01 * i + 0.001 * k,
        "lpips": lambda k: "unavailable"}) for i, name in enumerate(LONG_NAMES)]
    decoders[0].failures = {0: ("oom", "CUDA out of memory. Tried to allocate 20.00 GiB")}
    return write_run(root / "run", decoders, 6, {"psnr": True, "ssim": True, "lpips": False},
                     size=(64, 64), notes=["a note with a path /very/long/path/to/some/file/that/"
                                           "does/not/fit/anywhere/near/eighty/columns.safetensors"])


@pytest.mark.e2e
@pytest.mark.parametrize("args", [["list", "decoders"], ["list", "metrics"], ["list", "suites"],
                                  ["weights", "list"], ["doctor", "smoke"], ["--help"], ["run", "--help"],
                                  ["gate", "check", "--help"], ["gate", "--help"], ["weights", "--help"],
                                  ["baseline", "--help"]])
def test_every_listing_is_whole_at_80_columns(args: list[str]) -> None:
    text = _no_ellipsis(cli(*args, columns=80))
    if args == ["list", "decoders"]:
        assert all(name in text for name in ("vae-tiled", "bilinear", "available here"))
        assert "builtin" not in text
    if args == ["gate", "check", "--help"]:
        assert "[[gate]]" in text and "--allow-environment-mismatch" in text
    if "--help" in args:
        assert "<bool>" not in text
        assert all("..." not in line for line in text.splitlines() if not line.startswith("Usage"))


@pytest.mark.e2e
@pytest.mark.parametrize("form", ["table", "markdown", "csv", "json"])
def test_show_is_whole_at_80_columns_in_every_format(run_dir: Path, form: str) -> None:
    text = _no_ellipsis(cli("show", str(run_dir), "--format", form, columns=80))
    assert all(name in text for name in LONG_NAMES)
    if form == "json":
        document = json.loads(cli("show", str(run_dir), "--format", "json").stdout)
        assert document["schema"] == "decoderbench show" and document["schema_version"] == 2
        assert document["run"]["suite"] == "synth" and document["run"]["run_dir"] == str(run_dir)
        assert {"created", "suite_sha256", "device", "dtype", "git_sha", "decoderbench"} <= \
            set(document["run"])
        records = document["records"]
        psnr = next(r for r in records if r["column"] == "metric:psnr" and r["decoder"] == "bilinear")
        assert psnr["unit"] == "dB" and psnr["better"] == "higher" and psnr["n"] == 6
        assert abs(psnr["value"] - (23 + 0.25)) < 1e-9 and psnr["status"] == "ok"
        assert psnr["ci95_low"] < psnr["value"] < psnr["ci95_high"]  # bounds, not a half-width
        assert psnr["text"].startswith(f"{psnr['value']:.2f} ± ")
        lpips = next(r for r in records if r["column"] == "metric:lpips" and r["decoder"] == "bilinear")
        assert lpips["value"] is None and lpips["status"] == lpips["text"] == "unavailable"
        assert {"state", "interval", "ci95"}.isdisjoint(psnr)  # display-only and ambiguous fields gone
    if form == "markdown":
        assert "| criterion |" in text and "★" in text
    if form == "table":
        assert "CUDA out of memory" in text
        assert "/does/not/fit/anywhere/near/eighty/columns.safetensors" in text  # unbroken


@pytest.mark.e2e
def test_show_metrics_and_summary_options(run_dir: Path) -> None:
    only = cli("show", str(run_dir), "--metrics", "ssim", "--format", "csv").stdout
    columns = {row["column"] for row in csv.DictReader(io.StringIO(only))}
    assert "metric:ssim" in columns and "metric:psnr" not in columns and "latency" in columns
    text = cli("show", str(run_dir), "--summary", "--format", "csv").stdout
    summary = list(csv.DictReader(io.StringIO(text)))
    assert summary and all(row["column"].startswith("summary:") for row in summary)
    wrong = cli("show", str(run_dir), "--metrics", "psnx")
    assert wrong.returncode == 2 and "did you mean 'psnr'" in wrong.stderr


@pytest.mark.e2e
def test_version_and_suite_suggestions() -> None:
    from harness import __version__

    assert cli("--version").stdout.strip() == f"decoderbench {__version__}"
    result = cli("validate", "smok")
    assert result.returncode == 2 and "did you mean 'smoke'?" in result.stderr


# --------------------------------------------------------------------------- every reader


def test_list_metrics_piped_at_80_columns_fits_in_40_lines() -> None:
    result = cli("list", "metrics", columns=80)
    lines = result.stdout.splitlines()
    assert result.returncode == 0 and len(lines) <= 40 and max(map(len, lines)) <= 80, result.stdout
    for name in ("psnr", "lpips", "fid", "topiq_nr"):  # one row each, in a grid
        assert re.search(rf"^{name}\s+[↑↓→]", result.stdout, re.MULTILINE), name
    assert "summary left out to fit 80 columns" in " ".join(result.stdout.split())


@pytest.mark.e2e
def test_weights_and_benchmarks_lists_never_break_urls_or_digests() -> None:
    from harness.metrics import weights
    from harness.sources import benchmarks

    listed = cli("weights", "list", columns=80).stdout
    lines = listed.splitlines()
    for entry in weights.LOCK:
        assert any(entry.url in line for line in lines), entry.url
        if entry.sha256:
            assert any(entry.sha256 in line for line in lines), entry.sha256
    data = cli("benchmarks", "list", columns=80)
    assert data.returncode == 0 and not {"…", "│", "─"} & set(data.stdout)
    for benchmark in benchmarks.BENCHMARKS.values():
        for entry in benchmark.files:
            assert any(entry.git_object in line for line in data.stdout.splitlines()), entry.git_object


@pytest.mark.e2e
def test_no_color_turns_off_every_style() -> None:
    import os
    import subprocess
    import sys

    def run(**env: str) -> str:
        return started(subprocess.run,
                       [sys.executable, "-m", "harness", "list", "suites"], capture_output=True,
                              text=True, env={**os.environ, "COLUMNS": "100", **env}).stdout

    assert "\x1b[" in run(FORCE_COLOR="1")  # a terminal: bold headers
    assert "\x1b[" not in run(FORCE_COLOR="1", NO_COLOR="1")  # no colour, no bold, no dim


def test_piped_progress_has_counts_and_elapsed_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    console_module = importlib.import_module("harness.cli.console")
    target = Console(width=80, record=True, force_terminal=False, color_system=None)
    monkeypatch.setattr(console_module, "LOG_EVERY_S", 0.0)
    with console_module.RichReporter(target=target) as reporter:
        reporter.phase("metrics: psnr, ssim, ms_ssim, spectral_distance, hf_energy_ratio, piqe, "
                       "legibility_cer", 3)
        for _ in range(3):
            reporter.advance()
        reporter.phase("decode lanczos", 0)
    text = " ".join(target.export_text().split())
    assert "legibility_cer: 1/3 ·" in text and "legibility_cer: 2/3 ·" in text  # while it runs
    assert re.search(r"legibility_cer: 3/3 in \d+\.\d s \(elapsed \d+\.\d s\)", text)  # when it ends
    assert "decode lanczos: nothing to do" in text and "…" not in text
