"""Hostile input, tried as a new user would (issue 11): every case ends in one clear line naming the
file (and the key or line) with exit code 2 — or, for a bad data item, a recorded failure and exit
1 while the other items run — and never in a traceback.

Classes: suites (schema, values, sizes, parameters), data files (images, prompts, latents), run
directories (one validated loader for every reader), file-system conditions, terminal markup,
missing optional libraries, resume from anywhere, out of memory.

Read-only places: the tests run as root, for whom chmod does not make a folder read-only, so they
use what refuses even root without a mount: a file in the way of a folder, and paths under /proc
(a virtual file system where nothing can be created).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import decoder_tables, invoke, suite_text
from PIL import Image

from harness.store import RunStore

READ_ONLY = Path("/proc/decoderbench-test")  # nothing can be created under /proc, not even by root
pytestmark = pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")


def usage_error(result, *fragments: str) -> str:
    """Exit 2, no traceback, and one error line holding every fragment; returns that line."""
    text = result.output
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, text
    lines = [line for line in text.splitlines() if line.startswith(("error:", "✗"))]
    assert lines, text
    matching = [line for line in lines if all(f in line for f in fragments)]
    assert matching, f"no error line holds {fragments}:\n{text}"
    return matching[0]


def png_header(width: int, height: int) -> bytes:
    """A valid PNG header (and a tiny IDAT) declaring any size: a decompression bomb."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def small_suite(folder: Path, decoders: str = 'name = "nearest"', **extra: str) -> str:
    text = suite_text(folder, decoder_tables(decoders), **extra).replace('["psnr", "ssim"]', '["psnr"]')
    return text.replace("warmup = 1", "warmup = 0").replace("repeats = 2", "repeats = 1")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """One finished run (2 decoders × 3 cases) that the run-directory cases copy and damage."""
    root = tmp_path_factory.mktemp("base")
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"i{index}.png")
    suite = root / "suite.toml"
    suite.write_text(small_suite(folder, 'name = "nearest"\n\n[[decoder]]\nname = "bilinear"'))
    run_dir = root / "run"
    result = invoke("run", str(suite), "--out", str(run_dir), "--cache-dir", str(root / "cache"), "-q",
                    "--no-report")
    assert result.exit_code == 0, result.output
    return run_dir


@pytest.fixture
def damaged(base_run: Path, tmp_path: Path):
    def copy() -> Path:
        target = tmp_path / "run"
        shutil.copytree(base_run, target)
        return target

    return copy


# =========================================================================== suites


@pytest.mark.parametrize(("extra", "resolution", "fragments"), [
    ({}, "input = 100000\noutput_scale = 4", ("resolution:", "16384", "400000x400000", "3.8 TB")),
    ({"seeds": "[0, 0]"}, None, ("seeds[1]:", "listed twice", "seeds[0]")),
    ({"sigmas": "[0.1, 0.1]"}, None, ("sigmas[1]:", "listed twice")),
    ({"input_seeds": "[3, 3]"}, None, ("input_seeds[1]:", "listed twice")),
    ({}, "input = [48, 48, 48]\noutput_scale = 2", ("resolution.input[1]:", "48x48 is listed twice")),
    ({"seeds": "[99999999999999999999]"}, None, ("seeds[0]:", "2**63 - 1")),
    ({"seeds": "[-1]"}, None, ("seeds[0]:", "[0, 2**63 - 1]")),
    ({"seeds": "[true]"}, None, ("seeds[0]:", "expected a valid integer")),
], ids=["huge-size", "dup-seeds", "dup-sigmas", "dup-input-seeds", "dup-sizes", "huge-seed", "negative-seed",
        "bool-seed"])
def test_suite_values(write_suite, image_folder, extra, resolution, fragments) -> None:
    text = small_suite(image_folder, **extra)
    if "seeds" in extra:
        text = text.replace("seeds = [0]\n", "", 1)
    if resolution:
        text = text.replace("input = 16\noutput_scale = 2", resolution)
    path = write_suite(text)
    usage_error(invoke("validate", str(path)), str(path), *fragments)


@pytest.mark.parametrize(("old", "new", "fragments"), [
    ("repeats = 1", "repeats = true", ("timing.repeats:", 'expected a valid integer or "auto", got True')),
    ("repeats = 1", "repeats = 1\nbatch_size = 2.0", ("timing.batch_size:", "got 2.0")),
    ("timeout_s = 60", 'timeout_s = "60"', ("timing.timeout_s:",)),
    ('folder = "', 'builtin = ["photos", "photos"]\nfolder = "', ("source.builtin[1]:", "listed twice")),
    ('name = "nearest"', 'name = "fault"\nparams = {sleep_s = true}', ("decoder[0].params.sleep_s:",)),
    ('["psnr"]', '["ms_ssim"]', ("metrics[0].name:", "161 px", "32x32")),
    ("", '\n[[gate]]\nmetric = "psnr"\ntolerance = "0.1"\n', ("gate[0].tolerance:",)),
    ('name = "t"', 'name = "t" = 2', ("invalid TOML",)),
], ids=["bool-count", "float-count", "string-seconds", "dup-builtin", "strict-decoder-params",
        "ms-ssim-too-small", "strict-gate", "toml-syntax"])
def test_suite_keys(write_suite, image_folder, old, new, fragments) -> None:
    text = small_suite(image_folder)
    assert old in text
    path = write_suite(text.replace(old, new, 1) if old else text + new)
    usage_error(invoke("validate", str(path)), str(path), *fragments)


def test_vae_tiled_overlap_of_zero(write_suite) -> None:
    path = write_suite('name = "t"\n[source]\nkind = "latents"\nspace = "flux1"\nsynthetic = 1\n'
                       '[resolution]\ninput = 64\noutput_scale = 1\n[[decoder]]\nname = "vae-tiled"\n'
                       'params = {weights = "random", overlap_px = 0}\n')
    usage_error(invoke("validate", str(path)), str(path), "decoder[0].params", "overlap_px", "8 px")


def test_run_refuses_a_bad_suite_before_making_a_run_directory(write_suite, image_folder, tmp_path) -> None:
    path = write_suite(small_suite(image_folder).replace("seeds = [0]", "seeds = [0, 0]"))
    usage_error(invoke("run", str(path), "--out", str(tmp_path / "r"), "-q"), "seeds[1]")
    assert not (tmp_path / "r").exists()


def test_markup_in_a_suite_path_and_a_folder(write_suite, tmp_path) -> None:
    missing = tmp_path / "[/]" / "[bold]x.toml"
    usage_error(invoke("validate", str(missing)), "[bold]x.toml", "suite file not found")
    path = write_suite(f'name = "t"\n[source]\nkind = "images"\nfolder = "{tmp_path}/no[/]such"\n'
                       '[resolution]\ninput = 16\noutput_scale = 2\n[[decoder]]\nname = "nearest"\n')
    usage_error(invoke("validate", str(path)), str(path), "no[/]such", "not a directory")


# =========================================================================== data files


BAD_IMAGES = {
    "truncated.png": ("damaged image file",),
    "empty.png": ("empty file (0 bytes)",),
    "text.png": ("not an image file",),
    "bomb.png": ("10,000,000,000 pixels", "decompression bomb"),
}


def _bad_folder(image_folder: Path) -> Path:
    (image_folder / "truncated.png").write_bytes((image_folder / "img0.png").read_bytes()[:200])
    (image_folder / "empty.png").write_bytes(b"")
    (image_folder / "text.png").write_text("not an image\n")
    (image_folder / "bomb.png").write_bytes(png_header(100_000, 100_000))
    return image_folder


@pytest.mark.parametrize("name", sorted(BAD_IMAGES))
def test_validate_names_each_bad_image(write_suite, image_folder, name) -> None:
    folder = _bad_folder(image_folder)
    path = write_suite(small_suite(folder))
    result = invoke("validate", str(path))
    usage_error(result, str(path), "source:", str(folder / name), *BAD_IMAGES[name])
    assert sum(line.startswith("✗") for line in result.output.splitlines()) == len(BAD_IMAGES)


def test_validate_a_manifest_entry_that_is_no_image(write_suite, image_folder, tmp_path) -> None:
    manifest = tmp_path / "items.jsonl"
    manifest.write_text(json.dumps({"image": "/etc/passwd"}) + "\n"
                        + json.dumps({"image": str(image_folder / "img0.png")}) + "\n")
    path = write_suite(small_suite(image_folder).replace(f'folder = "{image_folder}"',
                                                         f'manifest = "{manifest}"'))
    usage_error(invoke("validate", str(path)), "/etc/passwd: not an image file")


def test_run_records_bad_items_and_runs_the_others(write_suite, image_folder, tmp_path) -> None:
    folder = _bad_folder(image_folder)
    # a JPEG cut short: its header reads fine, only decoding the pixels finds the damage
    Image.open(folder / "img2.png").convert("RGB").save(tmp_path / "full.jpg", quality=90)
    full = (tmp_path / "full.jpg").read_bytes()
    (folder / "late.jpg").write_bytes(full[:full.index(b"\xff\xda") + 40])  # cut inside the scan
    path = write_suite(small_suite(folder))
    run_dir = tmp_path / "run"
    result = invoke("run", str(path), "--out", str(run_dir), "--cache-dir", str(tmp_path / "c"), "-q",
                    "--no-report")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    decodes = {r["case"]: r for r in RunStore.open(run_dir).records()[0] if r["kind"] == "decode"}
    cases = {c["id"]: c for c in RunStore.open(run_dir).cases()}
    by_item = {cases[case]["item_id"]: record for case, record in decodes.items()}
    assert {by_item[name]["status"] for name in ("img0.png", "img1.png", "img2.png")} == {"ok"}
    for name, fragments in {**BAD_IMAGES, "late.jpg": ("damaged image file",)}.items():
        assert by_item[name]["status"] == "input_error"
        assert by_item[name]["message"].startswith(str(folder / name))
        assert all(f in by_item[name]["message"] for f in fragments)
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "finished"


def test_a_prompt_that_is_not_utf8(write_suite, image_folder) -> None:
    (image_folder / "img0.txt").write_bytes(b"caf\xe9\n")
    path = write_suite(small_suite(image_folder))
    usage_error(invoke("validate", str(path)), str(image_folder / "img0.txt"), "not UTF-8")


def test_a_latent_file_that_is_not_safetensors(write_suite, tmp_path) -> None:
    folder = tmp_path / "latents"
    folder.mkdir()
    (folder / "bad.safetensors").write_bytes(os.urandom(64))
    path = write_suite(f'name = "t"\n[source]\nkind = "latents"\nspace = "pixels"\nfolder = "{folder}"\n'
                       '[resolution]\ninput = 16\noutput_scale = 2\n[[decoder]]\nname = "nearest"\n')
    usage_error(invoke("validate", str(path)), str(folder / "bad.safetensors"), "safetensors")


# =========================================================================== run directories


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as handle:
        handle.write(data)


def _results_lines(run_dir: Path) -> int:
    return len((run_dir / "results.jsonl").read_bytes().splitlines())


CORRUPTIONS = {
    "manifest-not-json": (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json:1:"),
    "manifest-a-list": (lambda d: (d / "manifest.json").write_text("[]"),
                        "manifest.json: expected a JSON object"),
    "manifest-suite-null": (
        lambda d: (d / "manifest.json").write_text(json.dumps(
            {**json.loads((d / "manifest.json").read_text()), "suite": None})),
        "manifest.json: suite: expected a JSON object"),
    "manifest-format": (
        lambda d: (d / "manifest.json").write_text(json.dumps(
            {**json.loads((d / "manifest.json").read_text()), "format": 2})),
        "manifest.json: format:"),
    "record-without-kind": (
        lambda d: _append(d / "results.jsonl", b'{"decoder": "nearest", "status": "ok"}\n'),
        'record has no "kind"'),
    "record-unknown-kind": (
        lambda d: _append(d / "results.jsonl", b'{"kind": "mystery"}\n'), "unknown kind 'mystery'"),
    "record-status-not-text": (
        lambda d: _append(d / "results.jsonl", b'{"kind": "decode", "decoder": "x", "case": "y", '
                                               b'"status": 7}\n'), "status: expected a valid string"),
    "random-bytes": (lambda d: _append(d / "results.jsonl", bytes(range(128, 256)) + b"\n"),
                     "not UTF-8 text"),
    "cases-garbage": (lambda d: (d / "cases.jsonl").write_text("garbage\n"), "cases.jsonl:1: corrupt record"),
    "empty-results": (lambda d: (d / "results.jsonl").write_text(""), "results.jsonl: is empty"),
}
VERBS = {  # RUN_DIR stands for the damaged run directory
    "manifest-not-json": ["show", "RUN_DIR"], "manifest-a-list": ["report", "RUN_DIR"],
    "manifest-suite-null": ["export", "RUN_DIR", "--csv"],
    "manifest-format": ["judge", "RUN_DIR", "--dry-run"],
    "record-without-kind": ["show", "RUN_DIR"], "record-unknown-kind": ["export", "RUN_DIR", "--csv"],
    "record-status-not-text": ["baseline", "save", "RUN_DIR", "--name", "b", "--dir", "BASELINES"],
    "random-bytes": ["run", "--resume", "RUN_DIR", "-q"], "cases-garbage": ["judge", "RUN_DIR", "--dry-run"],
    "empty-results": ["show", "RUN_DIR"],
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_run_directory(damaged, tmp_path, name) -> None:
    run_dir = damaged()
    mutate, fragment = CORRUPTIONS[name]
    lines_before = _results_lines(run_dir)
    mutate(run_dir)
    places = {"RUN_DIR": str(run_dir), "BASELINES": str(tmp_path / "baselines")}
    line = usage_error(invoke(*(places.get(arg, arg) for arg in VERBS[name])), str(run_dir), fragment)
    if name in ("record-without-kind", "record-unknown-kind", "record-status-not-text", "random-bytes"):
        assert f"results.jsonl:{lines_before + 1}:" in line  # the line that is wrong


def test_corrupt_run_directory_under_gate(damaged, base_run, tmp_path) -> None:
    assert invoke("baseline", "save", str(base_run), "--name", "good", "--dir", str(tmp_path / "b"),
                  "--images", "none").exit_code == 0
    run_dir = damaged()
    _append(run_dir / "results.jsonl", b"\xff\xfe\n")
    usage_error(invoke("gate", str(run_dir), "--baseline", str(tmp_path / "b" / "good.json")),
                "results.jsonl:", "not UTF-8 text")


@pytest.mark.parametrize("what", ["nothing", "a-file"])
def test_not_a_run_directory(tmp_path, what) -> None:
    target = tmp_path / what
    if what == "a-file":
        target.write_text("x")
    usage_error(invoke("show", str(target)), str(target), "not a decoderbench run directory")


def test_deleted_images_are_noted_refused_and_decoded_again(damaged, tmp_path) -> None:
    run_dir = damaged()
    shutil.rmtree(run_dir / "images")
    shown = invoke("show", str(run_dir))
    assert shown.exit_code == 0 and "6 output image(s) of ok decodes are missing" in shown.output
    reported = invoke("report", str(run_dir))
    assert reported.exit_code == 0, reported.output
    assert "6 output image(s) of ok decodes are missing" in (run_dir / "report" / "index.html").read_text()
    usage_error(invoke("baseline", "save", str(run_dir), "--name", "b", "--dir", str(tmp_path / "b")),
                "6 output image(s) cannot go into a baseline", "(missing)")
    assert not (tmp_path / "b" / "b.json").exists()
    resumed = invoke("run", "--resume", str(run_dir), "-q", "--no-report")
    assert resumed.exit_code == 0 and "decoding them again" in resumed.output, resumed.output
    records = RunStore.open(run_dir).records()[0]
    units = Counter((r["decoder"], r["case"]) for r in records if r["kind"] == "decode")
    assert len(units) == 6 and set(units.values()) == {1}  # every unit once, none lost
    assert len(list((run_dir / "images").rglob("*.png"))) == 6
    assert Counter(r["metric"] for r in records if r["kind"] == "metric") == {"psnr": 6}
    assert (run_dir / "results.jsonl.superseded").read_text().count('"kind": "decode"') == 6


def test_a_changed_image_is_refused_by_baseline_save(damaged, tmp_path) -> None:
    run_dir = damaged()
    image = next((run_dir / "images").rglob("*.png"))
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    usage_error(invoke("baseline", "save", str(run_dir), "--name", "b", "--dir", str(tmp_path / "b")),
                "sha256 differs from its decode record")


# =========================================================================== file system


def test_run_out_and_cache_dir(base_run, write_suite, image_folder, tmp_path) -> None:
    suite = str(write_suite(small_suite(image_folder)))
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cache = ["--cache-dir", str(tmp_path / "c")]
    cases = [
        (["--out", str(a_file), *cache], ("run directory", "is a file")),
        (["--out", str(a_file / "run"), *cache], ("not writable", "Not a directory")),
        (["--out", str(READ_ONLY / "run"), *cache], ("run directory", "not writable")),
        (["--out", str(tmp_path / "r1"), "--cache-dir", str(a_file)], ("cache directory", "is a file")),
        (["--out", str(tmp_path / "r2"), "--cache-dir", str(READ_ONLY)], ("cache directory", "not writable")),
    ]
    for args, fragments in cases:
        usage_error(invoke("run", suite, *args, "-q", "--no-report"), *fragments)
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()  # nothing half made


def test_outputs_of_report_export_baseline_and_gate(base_run, tmp_path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    run = str(base_run)
    usage_error(invoke("report", run, "--out", str(READ_ONLY)), "report folder", "not writable")
    usage_error(invoke("export", run, "--csv", "--out", str(a_file / "x.csv")), "export file", "is a file")
    usage_error(invoke("export", run, "--csv", "--out", str(READ_ONLY / "x.csv")), "not writable")
    usage_error(invoke("baseline", "save", run, "--name", "b", "--dir", str(a_file)), "baselines folder",
                "is a file")
    assert invoke("baseline", "save", run, "--name", "b", "--dir", str(tmp_path / "b"),
                  "--images", "none").exit_code == 0
    gates = tmp_path / "gates.toml"  # the run's suite has no gates: take them from a suite file
    gates.write_text((base_run.parent / "suite.toml").read_text()
                     + '\n[[gate]]\nstatistic = "latency_ratio"\nmax_ratio = 10.0\n')
    usage_error(invoke("gate", run, "--baseline", str(tmp_path / "b" / "b.json"), "--suite", str(gates),
                       "--junit", str(READ_ONLY / "junit.xml")), "--junit file", "not writable")


def test_resume_of_something_that_is_not_a_run() -> None:
    usage_error(invoke("run", "--resume", "/proc/self", "-q"), "/proc/self", "not a decoderbench run")


# =========================================================================== terminal markup


def test_markup_in_item_ids_and_prompts_is_printed_literally(write_suite, image_folder, tmp_path) -> None:
    manifest = tmp_path / "items.jsonl"
    manifest.write_text(json.dumps({"image": str(image_folder / "img0.png"), "id": "x[/]y",
                                    "prompt": "[bold red]p[/]"}) + "\n")
    text = small_suite(image_folder).replace(f'folder = "{image_folder}"', f'manifest = "{manifest}"')
    path = write_suite(text.replace("input = 16\noutput_scale = 2", "input = 32\noutput_scale = 2"))
    result = invoke("run", str(path), "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c"),
                    "-q", "--no-report")
    assert result.exit_code == 0, result.output
    assert "note: x[/]y: reference upsampled" in result.output  # the note that crashed the printer


def test_reporter_note_and_phase_escape(capsys) -> None:
    from harness.cli.console import RichReporter

    with RichReporter(quiet=True) as reporter:
        reporter.phase("decode [/]odd", 1)
        reporter.note("a [/] note with [bold]markup[/bold]")
    assert "a [/] note with [bold]markup[/bold]" in capsys.readouterr().err


# =========================================================================== missing libraries


def test_missing_or_broken_metric_libraries_make_metrics_unavailable(write_suite, image_folder, tmp_path,
                                                                     monkeypatch) -> None:
    import harness.metrics.perceptual as perceptual

    monkeypatch.setitem(sys.modules, "pyiqa", None)  # `import pyiqa` fails as when it is not installed
    monkeypatch.setattr(perceptual.LPIPS, "load", lambda self, device: (_ for _ in ()).throw(
        OSError("liblpips.so: cannot open shared object file")))
    decoders = 'name = "nearest"\n\n[[decoder]]\nname = "fault"\nlabel = "needs-a-library"\n' \
               'params = {mode = "import_error"}'
    text = small_suite(image_folder, decoders).replace('["psnr"]', '["psnr", "piqe", "lpips"]')
    run_dir = tmp_path / "run"
    result = invoke("run", str(write_suite(text)), "--out", str(run_dir), "--cache-dir", str(tmp_path / "c"),
                    "-q", "--no-report")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    records = RunStore.open(run_dir).records()[0]
    statuses = {(r["metric"], r["decoder"]): (r["status"], r.get("message", ""))
                for r in records if r["kind"] == "metric" and r["case"] is not None}
    assert statuses[("psnr", "nearest")][0] == "ok"
    piqe, lpips = statuses[("piqe", "nearest")], statuses[("lpips", "nearest")]
    assert piqe[0] == "unavailable" and "'pyiqa'" in piqe[1] and "decoderbench[metrics]" in piqe[1]
    assert lpips[0] == "unavailable" and "liblpips.so" in lpips[1]
    load = next(r for r in records if r["kind"] == "load" and r["decoder"] == "needs-a-library")
    assert load["status"] == "unavailable" and "decoderbench_missing_dependency" in load["message"]


def test_judge_backend_that_cannot_be_imported_is_unavailable(monkeypatch) -> None:
    from harness.judge.backends import create_backend
    from harness.judge.config import JudgeConfig
    from harness.judge.protocol import BackendUnavailable

    monkeypatch.setitem(sys.modules, "harness.judge.local_vlm", None)
    with pytest.raises(BackendUnavailable, match="harness"):
        create_backend(JudgeConfig(backend="local", model="some/vlm", device="cpu"))


def test_unavailable_reason_names_the_package_and_the_extra() -> None:
    from decoders.plugins import unavailable_reason

    reason = unavailable_reason(ModuleNotFoundError("No module named 'pyiqa'", name="pyiqa"))
    assert "'pyiqa'" in reason and "pip install 'decoderbench[metrics]'" in reason
    assert "pip install foo" in unavailable_reason(ModuleNotFoundError("x", name="foo.bar"))


# =========================================================================== resume from anywhere


def test_resume_from_another_working_directory(image_folder, tmp_path, monkeypatch) -> None:
    project = tmp_path / "project"
    shutil.copytree(image_folder, project / "imgs")
    text = small_suite(Path("imgs"), 'name = "nearest"\n\n[[decoder]]\nname = "bilinear"')
    (project / "s.toml").write_text(text)
    monkeypatch.chdir(project)
    assert invoke("run", "s.toml", "--out", "r", "--cache-dir", "c", "-q", "--no-report").exit_code == 0
    results = project / "r" / "results.jsonl"
    results.write_text("".join(line for line in results.read_text().splitlines(keepends=True)
                               if '"bilinear"' not in line))  # as if killed before the second decoder
    monkeypatch.chdir(tmp_path)
    resumed = invoke("run", "--resume", str(project / "r"), "-q", "--no-report")
    assert resumed.exit_code == 0, resumed.output
    decodes = [r for r in RunStore.open(project / "r").records()[0] if r["kind"] == "decode"]
    assert Counter(r["decoder"] for r in decodes) == {"nearest": 3, "bilinear": 3}


def test_resume_of_an_old_run_with_a_relative_suite_path_says_where(damaged, tmp_path, monkeypatch) -> None:
    run_dir = damaged()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    resolved = manifest["suite"]["resolved"]
    resolved["source"]["folder"] = "images"  # relative to where the run was started
    manifest["suite"].update(path="suite.toml", sha256=_sha(resolved))
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.chdir(tmp_path)
    usage_error(invoke("run", "--resume", str(run_dir), "-q"), "manifest.json: suite.path: source.folder",
                "resume it from there")


def _sha(resolved: dict) -> str:
    from harness.suite import validate_raw

    return validate_raw(resolved, Path("suite.toml")).sha256


# =========================================================================== out of memory


def test_injected_cuda_oom_is_a_recorded_oom_and_the_worker_is_replaced(write_suite, image_folder,
                                                                      tmp_path) -> None:
    decoders = 'name = "fault"\nlabel = "wall"\nparams = {mode = "cuda_oom", oom_from_px = 64}\n\n' \
               '[[decoder]]\nname = "fault"\nlabel = "load-oom"\nparams = {mode = "load_oom"}'
    text = small_suite(image_folder, decoders).replace("input = 16\noutput_scale = 2",
                                                       "input = [[16, 16], [32, 32]]\noutput_scale = 2")
    run_dir = tmp_path / "run"
    result = invoke("run", str(write_suite(text)), "--out", str(run_dir), "--cache-dir", str(tmp_path / "c"),
                    "-q", "--no-report")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    records = RunStore.open(run_dir).records()[0]
    wall = [r for r in records if r["kind"] == "decode" and r["decoder"] == "wall"]
    assert Counter(r["status"] for r in wall) == {"ok": 3, "oom": 3}
    for record in (r for r in wall if r["status"] == "oom"):
        assert record["failed_size"] == [64, 64] and record["message"].startswith("OutOfMemoryError: CUDA")
        assert 0 < record["failed_after_ms"] < 10_000 and record["memory_after_release"] is None  # CPU
    loads = [r for r in records if r["kind"] == "load" and r["decoder"] == "wall"]
    assert len(loads) == 3  # the first worker, and a fresh one after each OOM but the last
    failed_load = [r for r in records if r["decoder"] == "load-oom"]
    assert {r["status"] for r in failed_load} == {"oom"}


def test_sweep_finds_the_wall_from_an_injected_cuda_oom(write_suite, image_folder, tmp_path) -> None:
    decoders = 'name = "fault"\nlabel = "subject"\nparams = {mode = "cuda_oom", oom_from_px = 96}'
    path = write_suite(small_suite(image_folder, decoders))
    result = invoke("sweep", str(path), "--decoder", "subject", "--from", "32", "--to", "128", "--step", "32",
                    "--out", str(tmp_path / "sweep"))
    assert result.exit_code == 0, result.output
    result_facts = json.loads((tmp_path / "sweep" / "manifest.json").read_text())["result"]
    assert result_facts["largest_ok"] == 64 and result_facts["smallest_failed"] == 96


def test_sweep_refuses_an_impossible_size(write_suite, image_folder, tmp_path) -> None:
    path = write_suite(small_suite(image_folder))
    usage_error(invoke("sweep", str(path), "--decoder", "nearest", "--from", "64", "--to", "100000",
                       "--out", str(tmp_path / "sweep")), "--to 100000", "16384")
    assert not (tmp_path / "sweep").exists()


def test_a_sweep_directory_given_to_a_reader_of_runs(tmp_path) -> None:
    from synthetic_runs import write_sweep

    sweep = write_sweep(tmp_path / "sweep", "vae", [512, 1024], 1024)
    usage_error(invoke("show", str(sweep)), "manifest.json: kind:", "memory-wall sweep")
    assert invoke("report", str(sweep), "--out", str(tmp_path / "r")).exit_code == 0
