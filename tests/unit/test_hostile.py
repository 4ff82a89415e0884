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
from helpers import decoder_tables, invoke, started, suite_text
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


# =========================================================================== issue 24: path containment


def _decode_records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()
            if line.strip() and json.loads(line)["kind"] == "decode"]


def _tree(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, bytes]:
    """Every file under root (outside `skip`) and its bytes: what a verb must leave alone."""
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink() and not any(s in p.parents for s in skip)}


CRAFTED_VERBS = {
    "baseline-save": ["baseline", "save", "RUN", "--name", "b", "--dir", "BASELINES", "--images", "copy"],
    "show": ["show", "RUN"], "report": ["report", "RUN"], "export": ["export", "RUN", "--csv"],
    "gate": ["gate", "RUN", "--baseline", "BASELINE"],
    "resume": ["run", "--resume", "RUN", "-q", "--no-report"],
    "judge": ["judge", "RUN", "--dry-run"],
}


@pytest.mark.parametrize("verb", sorted(CRAFTED_VERBS))
@pytest.mark.parametrize("path", ["../../../victim.txt", "/etc/passwd", "images/../../victim.txt"])
def test_a_crafted_image_path_is_refused_by_every_reader(base_run, tmp_path, verb, path) -> None:
    """A decode record naming a file outside its run directory (no image_sha256) is refused with its
    line by every verb; nothing outside the run, cache and baseline folders is read or written."""
    baselines = tmp_path / "baselines"
    assert invoke("baseline", "save", str(base_run), "--name", "good", "--dir", str(baselines),
                  "--images", "none").exit_code == 0
    run_dir = tmp_path / "a" / "b" / "run"
    shutil.copytree(base_run, run_dir)
    (tmp_path / "victim.txt").write_text("precious")
    (tmp_path / "a" / "victim.txt").write_text("ATTACK")
    record = _decode_records(run_dir)[0]
    record.update(case="crafted", image=path, output_size=[32, 32])
    record.pop("image_sha256", None)
    _append(run_dir / "results.jsonl", (json.dumps(record) + "\n").encode())
    line = _results_lines(run_dir)
    before = _tree(tmp_path, skip=(run_dir, baselines))
    places = {"RUN": str(run_dir), "BASELINES": str(baselines), "BASELINE": str(baselines / "good.json")}
    result = invoke(*(places.get(arg, arg) for arg in CRAFTED_VERBS[verb]))
    usage_error(result, f"results.jsonl:{line}: image:", "leaves its folder")
    assert _tree(tmp_path, skip=(run_dir, baselines)) == before
    assert (tmp_path / "victim.txt").read_text() == "precious"


def test_a_symlink_out_of_the_run_directory_is_refused(damaged, tmp_path) -> None:
    run_dir = damaged()
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(run_dir / "images"), str(elsewhere))
    (run_dir / "images").symlink_to(elsewhere)
    usage_error(invoke("baseline", "save", str(run_dir), "--name", "b", "--dir", str(tmp_path / "b")),
                "resolves to", f"outside {run_dir}")
    assert not (tmp_path / "b" / "b.json").exists()
    assert invoke("report", str(run_dir), "--out", str(tmp_path / "r")).exit_code == 0
    linked = {(p.stat().st_ino, p.stat().st_dev) for p in (tmp_path / "r").rglob("*.png")}
    outside = {(p.stat().st_ino, p.stat().st_dev) for p in elsewhere.rglob("*.png")}
    assert linked and not linked & outside  # the report links its references, nothing from outside
    assert not [p for p in (tmp_path / "r").rglob("*.png") if "nearest" in p.parts]


def test_a_reference_path_in_cases_is_checked(damaged) -> None:
    run_dir = damaged()
    cases = [json.loads(line) for line in (run_dir / "cases.jsonl").read_text().splitlines()]
    cases[1]["reference"] = "/etc/passwd"
    (run_dir / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    usage_error(invoke("report", str(run_dir)), "cases.jsonl:2: reference:", "leaves its folder")


@pytest.mark.parametrize(("mutate", "fragment"), [
    (lambda data: data["images"].update(dir="../.."), "images.dir:"),
    (lambda data: next(iter(next(iter(data["decoders"].values()))["outputs"].values())).update(
        image="../../etc/passwd"), ".image: '../../etc/passwd' leaves its folder"),
], ids=["images-dir", "output-image"])
def test_a_crafted_baseline_path_is_refused(base_run, tmp_path, mutate, fragment) -> None:
    assert invoke("baseline", "save", str(base_run), "--name", "b", "--dir", str(tmp_path)).exit_code == 0
    data = json.loads((tmp_path / "b.json").read_text())
    mutate(data)
    (tmp_path / "b.json").write_text(json.dumps(data))
    usage_error(invoke("gate", str(base_run), "--baseline", str(tmp_path / "b.json"), "--suite",
                       str(_gate_suite(base_run, tmp_path))), str(tmp_path / "b.json"), fragment)


def _gate_suite(base_run: Path, tmp_path: Path) -> Path:
    gates = tmp_path / "gates.toml"
    gates.write_text((base_run.parent / "suite.toml").read_text()
                     + '\n[[gate]]\nstatistic = "latency_ratio"\nmax_ratio = 10.0\n')
    return gates


def test_cache_keys_are_digests_and_damaged_entries_are_misses(tmp_path) -> None:
    import torch

    from harness.sources.cache import TensorCache, cache_key

    cache = TensorCache(tmp_path / "cache")
    with pytest.raises(ValueError, match="not a cache key"):
        cache.path("../../outside")
    key = cache_key("t", {"a": 1})
    cache.put(key, {"x": torch.ones(2)}, {"notes": ["n"]})
    assert cache.entry(key)[1] == {"notes": ["n"]}
    cache.path(key).write_bytes(b"torn")
    assert cache.get(key) is None  # made again, never fed to a decoder


# =========================================================================== issue 24: record membership


def _stray_records(run_dir: Path, kind: str) -> int:
    """Append a record that does not belong; returns its line number."""
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    decode = next(r for r in records if r["kind"] == "decode")
    if kind == "unknown-case":
        added = [{**decode, "case": "no-such-case"}]
    elif kind == "duplicate":
        added = [decode]
    elif kind == "other-suite":
        added = [{**decode, "suite_hash": "0123456789abcdef"}]
    else:
        added = [{**decode, "decoder": "stranger"}]
    _append(run_dir / "results.jsonl", "".join(json.dumps(r) + "\n" for r in added).encode())
    return _results_lines(run_dir)


STRAYS = {"unknown-case": "case 'no-such-case' is not in cases.jsonl",
          "duplicate": "a second record of the decode of",
          "other-suite": "a record of another suite's run (suite hash 0123456789abcdef",
          "unknown-decoder": "decoder 'stranger' is not in this run's suite"}


@pytest.mark.parametrize("kind", sorted(STRAYS))
def test_records_that_do_not_belong_are_set_aside_refused_and_moved(damaged, base_run, tmp_path,
                                                                    kind) -> None:
    run_dir = damaged()
    line = _stray_records(run_dir, kind)
    shown = invoke("show", str(run_dir), "--format", "json")
    assert shown.exit_code == 0 and "Traceback" not in shown.output, shown.output
    assert f"results.jsonl:{line}: {STRAYS[kind]}" in shown.output
    records = json.loads(shown.stdout)["records"]
    cases_ok = {r["decoder"]: r["text"] for r in records if r["column"] == "cases"}
    assert cases_ok == {"nearest": "3/3", "bilinear": "3/3"}  # nothing pooled from the stray
    exported = invoke("export", str(run_dir), "--csv", "--out", str(tmp_path / "x.csv"))
    assert exported.exit_code == 0 and f"results.jsonl:{line}:" in exported.output
    exported_text = (tmp_path / "x.csv").read_text()
    assert "no-such-case" not in exported_text and "stranger" not in exported_text
    assert invoke("baseline", "save", str(base_run), "--name", "good", "--dir", str(tmp_path / "b"),
                  "--images", "none").exit_code == 0
    usage_error(invoke("gate", str(run_dir), "--baseline", str(tmp_path / "b" / "good.json")),
                "do not belong to this run", f"results.jsonl:{line}")
    usage_error(invoke("baseline", "save", str(run_dir), "--name", "c", "--dir", str(tmp_path / "b")),
                "do not belong to this run")
    resumed = invoke("run", "--resume", str(run_dir), "-q", "--no-report")
    assert resumed.exit_code == 0 and "did not belong to this run" in resumed.output, resumed.output
    assert "do not belong" not in invoke("show", str(run_dir)).output
    assert len((run_dir / "results.jsonl.superseded").read_text().splitlines()) == 1


def test_every_record_names_its_suite(base_run) -> None:
    manifest = json.loads((base_run / "manifest.json").read_text())
    lines = (base_run / "results.jsonl").read_text().splitlines()
    stamps = {json.loads(line).get("suite_hash") for line in lines}
    assert stamps == {manifest["suite"]["sha256"][:16]}


# =========================================================================== issue 24: overrides and resume


@pytest.mark.parametrize(("option", "value", "fragment"), [
    ("--device", "tpu", "expected cpu, cuda or cuda:N"), ("--device", "gpu", "got 'gpu'"),
    ("--device", "cuda0", "got 'cuda0'"), ("--dtype", "int8", "got 'int8'"),
])
def test_overrides_are_validated_before_anything_is_written(write_suite, image_folder, tmp_path,
                                                            option, value, fragment) -> None:
    suite, run_dir = str(write_suite(small_suite(image_folder))), tmp_path / "run"
    usage_error(invoke("run", suite, "--out", str(run_dir), "--cache-dir", str(tmp_path / "c"), "-q",
                       option, value), f"command line: {option}:", fragment)
    assert not run_dir.exists()
    usage_error(invoke("gate", "calibrate", suite, "--repeats", "2", "--out", str(tmp_path / "cal"),
                       option, value), f"command line: {option}:")
    assert not (tmp_path / "cal").exists()
    ok = invoke("run", suite, "--out", str(run_dir), "--cache-dir", str(tmp_path / "c"), "-q", "--no-report")
    assert ok.exit_code == 0, ok.output  # nothing half-made blocks the same folder


@pytest.mark.parametrize(("args", "extra", "fragment"), [
    (["--device", "cuda"], "", "timing.device 'cuda': this machine has no GPU"),
    (["--device", "cuda:1"], "", "timing.device 'cuda:1': this machine has no GPU"),
    (["--gpus", "0"], "", "--gpus '0': this machine has no GPU"),
    ([], '[evaluation]\ndevice = "cuda"\n', "evaluation.device 'cuda': this machine has no GPU"),
], ids=["device", "device-index", "gpus", "evaluation-device"])
def test_cuda_without_a_gpu_is_one_line_before_the_run_directory(write_suite, image_folder, tmp_path,
                                                                monkeypatch, args, extra, fragment) -> None:
    monkeypatch.setattr("harness.workers.local.visible_gpu_count", lambda: 0)
    suite = str(write_suite(small_suite(image_folder) + "\n" + extra))
    usage_error(invoke("run", suite, "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c"), "-q",
                       *args), fragment)
    assert not (tmp_path / "run").exists()


def test_a_cuda_index_beyond_the_gpus_is_refused(write_suite, image_folder, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("harness.workers.local.visible_gpu_count", lambda: 2)
    suite = str(write_suite(small_suite(image_folder)))
    usage_error(invoke("run", suite, "--out", str(tmp_path / "run"), "--device", "cuda:2", "-q"),
                "timing.device 'cuda:2': this process sees 2 GPU(s), cuda:0 to cuda:1")


def test_calibrate_out_a_file(write_suite, image_folder, tmp_path) -> None:
    (tmp_path / "f").write_text("x")
    usage_error(invoke("gate", "calibrate", str(write_suite(small_suite(image_folder))), "--repeats", "2",
                       "--out", str(tmp_path / "f"), "--cache-dir", str(tmp_path / "c"), "-q"),
                "--out folder", "is a file")


def test_resume_refuses_what_it_cannot_honour(damaged, write_suite, image_folder, tmp_path) -> None:
    run_dir = damaged()
    before = (run_dir / "results.jsonl").read_bytes()
    other = write_suite(small_suite(image_folder, 'name = "bicubic"'), name="other.toml")
    usage_error(invoke("run", str(other), "--resume", str(run_dir), "-q"), str(other),
                "is not the suite this run was started with")
    usage_error(invoke("run", "--resume", str(run_dir), "--dtype", "bfloat16", "--device", "cuda", "--out",
                       str(tmp_path / "else"), "-q"), "--out, --device, --dtype cannot change a run")
    usage_error(invoke("run", str(write_suite(small_suite(image_folder))), "--retry-failed", "-q"),
                "--retry-failed goes with --resume")
    assert (run_dir / "results.jsonl").read_bytes() == before and not (tmp_path / "else").exists()


def test_resume_with_its_own_suite_file_is_accepted(base_run, tmp_path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(base_run, run_dir)
    result = invoke("run", str(base_run.parent / "suite.toml"), "--resume", str(run_dir), "-q", "--no-report")
    assert result.exit_code == 0, result.output


def test_an_empty_out_is_refused(write_suite, image_folder, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    usage_error(invoke("run", str(write_suite(small_suite(image_folder))), "--out", "", "-q"),
                "--out: an empty path")
    assert not (tmp_path / "manifest.json").exists()


# =========================================================================== issue 24: non-finite numbers


@pytest.mark.parametrize(("old", "new", "fragment"), [
    ("timeout_s = 60", "timeout_s = inf", "timing.timeout_s: expected a finite number, got inf"),
    ("load_timeout_s = 120", "load_timeout_s = inf", "timing.load_timeout_s: expected a finite number"),
    ("", '\n[judge]\nmodel = "m"\ntimeout_s = inf\n', "judge.timeout_s: expected a finite number, got inf"),
    ("", '\n[summary]\nq = [{metric = "psnr", weight = inf}]\n',
     "summary.q[0].weight: expected a finite number"),
    ('["psnr"]', '[{name = "ssim", params = {sigma = inf}}]',
     "metrics[0].params.sigma: expected a finite number"),
    ("", '\n[[gate]]\nstatistic = "fraction_exceeding"\nmetric = "lpips"\ntau = nan\nmax_fraction = 0.1\n',
     "gate[0].tau: expected a finite number, got nan"),
    ("", '\n[[gate]]\nstatistic = "fraction_exceeding"\nmetric = "lpips"\ntau = -1.0\nmax_fraction = 0.1\n',
     "gate[0].tau: expected greater than or equal to 0"),
    ("repeats = 1", "repeats = 1\nthreads = 100000", "timing.threads: expected less than or equal to 1024"),
], ids=["timeout", "load-timeout", "judge-timeout", "summary-weight", "ssim-sigma", "tau-nan", "tau-negative",
        "threads"])
def test_numbers_that_are_not_finite_or_sane_are_refused(write_suite, image_folder, tmp_path, old, new,
                                                         fragment) -> None:
    text = small_suite(image_folder)
    assert old in text
    path = write_suite(text.replace(old, new, 1) if old else text + new)
    usage_error(invoke("validate", str(path)), str(path), fragment)
    usage_error(invoke("run", str(path), "--out", str(tmp_path / "run"), "-q"), fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("args", "fragment"), [
    (["--memory-budget", "1e999"], "--memory-budget: '1e999' is not a memory size"),
    (["--memory-budget", "-5GiB"], "--memory-budget:"),
    (["--step", "-8"], "--step -8: expected a positive number of pixels"),
    (["--from", "0"], "--from 0: expected a positive number of pixels"),
])
def test_sweep_numbers(write_suite, image_folder, tmp_path, args, fragment) -> None:
    path = write_suite(small_suite(image_folder))
    usage_error(invoke("sweep", str(path), "--decoder", "nearest", "--from", "32", "--to", "64", *args,
                       "--out", str(tmp_path / "sweep")), fragment)
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("number", ["1e999", "-1e999", "NaN", "Infinity"])
def test_a_record_with_a_number_that_is_not_finite(damaged, number) -> None:
    run_dir = damaged()
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if '"kind": "metric"' in line and '"value": ' in line)
    record = json.loads(lines[index])
    lines[index] = json.dumps(record).replace(f'"value": {json.dumps(record["value"])}', f'"value": {number}')
    (run_dir / "results.jsonl").write_text("\n".join(lines) + "\n")
    for verb in (["show", str(run_dir)], ["report", str(run_dir)], ["export", str(run_dir), "--csv"]):
        usage_error(invoke(*verb), f"results.jsonl:{index + 1}: a number that is not finite ({number})")


def test_identical_images_are_infinite_psnr_in_every_view(write_suite, image_folder, tmp_path) -> None:
    """output_scale = 1 and a nearest 'upsampler': every output is its reference. PSNR = ∞ in the
    table, the JSON, the export and the case pages, and the decoder ranks first (`seeded-noise`
    adds noise: never identical)."""
    decoders = 'name = "nearest"\n\n[[decoder]]\nname = "seeded-noise"'
    text = small_suite(image_folder, decoders, seeds="[0, 1]").replace("seeds = [0]\n", "")
    path = write_suite(text.replace("output_scale = 2", "output_scale = 1"))  # 6 paired cases: decisive
    run_dir = tmp_path / "run"
    assert invoke("run", str(path), "--out", str(run_dir), "--cache-dir", str(tmp_path / "c"), "-q",
                  "--no-report").exit_code == 0
    psnr = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()
            if '"metric": "psnr"' in line and '"nearest"' in line]
    assert {(r["status"], r["value"], r.get("nonfinite")) for r in psnr} == {("ok", None, "inf")}
    shown = json.loads(invoke("show", str(run_dir), "--format", "json").stdout)["records"]
    cell = next(r for r in shown if r["column"] == "metric:psnr" and r["decoder"] == "nearest")
    assert cell["text"] == "★ ∞" and cell["status"] == "ok" and cell["best"] is True
    assert cell["value"] is None  # JSON has no infinity: the text says it
    table = invoke("show", str(run_dir))
    assert "★ ∞" in table.output  # not "not measured"
    invoke("export", str(run_dir), "--csv", "--out", str(tmp_path / "x.csv"))
    import csv

    rows = [r for r in csv.DictReader((tmp_path / "x.csv").open()) if r["variable"] == "psnr"
            and r["decoder"] == "nearest"]
    assert {r["value"] for r in rows} == {"inf"} and "identical to its reference" in rows[0]["reason"]
    assert invoke("report", str(run_dir)).exit_code == 0
    pages = "".join(p.read_text() for p in (run_dir / "report").rglob("*.html"))
    assert "∞" in pages


def test_psnr_ceiling_is_above_every_finite_value() -> None:
    import torch

    from harness.metrics.fullref import PSNR

    assert PSNR.finite_ceiling((32, 32)) == pytest.approx(83.0, abs=0.05)
    reference = torch.zeros(1, 3, 32, 32)
    closest = reference.clone()
    closest[0, 0, 0, 0] = 1 / 255  # the smallest difference two 8-bit images can have
    value = float(PSNR(PSNR.Params()).score(closest, reference)[0])
    assert value == pytest.approx(PSNR.finite_ceiling((32, 32)))


# ====================================================================== issue 24: files that are not files


def test_a_suite_path_that_is_a_symlink_loop(tmp_path) -> None:
    (tmp_path / "loop.toml").symlink_to(tmp_path / "loop.toml")
    usage_error(invoke("validate", str(tmp_path / "loop.toml")), "loop.toml", "a symbolic link loop")


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000, "{a = " * 5000 + "1" + "}" * 5000,
                                   "[" * 20 + "]" * 20], ids=["arrays-5000", "tables-5000", "arrays-20"])
def test_deep_toml_nesting(write_suite, value) -> None:
    path = write_suite(f"x = {value}\n")
    usage_error(invoke("validate", str(path)), str(path), "nested")


def test_an_include_chain_1500_files_deep(write_suite, image_folder, tmp_path) -> None:
    for index in range(1500):
        (tmp_path / f"s{index}.toml").write_text(f'include = "s{index + 1}.toml"\n')
    (tmp_path / "s1500.toml").write_text(small_suite(image_folder))
    usage_error(invoke("validate", str(tmp_path / "s0.toml")), "include chain deeper than 32 files")


def test_a_suite_larger_than_a_suite(write_suite) -> None:
    path = write_suite("# " + "x" * (1 << 20) + "\n")
    usage_error(invoke("validate", str(path)), str(path), "larger than 1,048,576 bytes")


FIFO_CASES = {  # run in a subprocess: a hang fails the test by its timeout instead of blocking the suite
    "suite": (lambda tmp: tmp / "s.toml", ["validate", "SUITE"], "not a regular file: it is a FIFO"),
    "include": (lambda tmp: tmp / "base.toml", ["validate", "INCLUDER"], "base.toml: cannot read suite file"),
    "doctor": (lambda tmp: tmp / "s.toml", ["doctor", "SUITE"], "it is a FIFO"),
    "judge-override": (lambda tmp: tmp / "s.toml", ["judge", "RUN", "--suite-override", "SUITE", "--dry-run"],
                       "it is a FIFO"),
    "baseline": (lambda tmp: tmp / "s.toml", ["gate", "RUN", "--baseline", "SUITE"], "it is a FIFO"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("name", sorted(FIFO_CASES))
def test_a_fifo_with_no_writer_answers_at_once(base_run, tmp_path, name) -> None:
    from helpers import cli

    make, args, fragment = FIFO_CASES[name]
    fifo = make(tmp_path)
    os.mkfifo(fifo)
    (tmp_path / "includer.toml").write_text('include = "base.toml"\n')
    places = {"SUITE": str(fifo), "INCLUDER": str(tmp_path / "includer.toml"), "RUN": str(base_run)}
    result = cli(*(places.get(a, a) for a in args), timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert fragment in result.stdout + result.stderr


def test_dev_zero_as_a_suite(tmp_path) -> None:
    usage_error(invoke("validate", "/dev/zero"), "/dev/zero", "it is a character device")


@pytest.mark.parametrize("what", ["fifo", "dangling-symlink", "device-symlink"])
def test_special_files_named_like_images_in_a_folder_source(write_suite, image_folder, tmp_path,
                                                            what) -> None:
    target = image_folder / "x.png"
    if what == "fifo":
        os.mkfifo(target)
        fragment = "not a regular file: it is a FIFO"
    elif what == "dangling-symlink":
        target.symlink_to(tmp_path / "gone.png")
        fragment = "a dangling symbolic link"
    else:
        target.symlink_to("/dev/zero")
        fragment = "it is a character device"
    path = write_suite(small_suite(image_folder))
    usage_error(invoke("validate", str(path)), str(target), fragment)
    run_dir = tmp_path / "run"
    result = invoke("run", str(path), "--out", str(run_dir), "--cache-dir", str(tmp_path / "c"), "-q",
                    "--no-report")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    statuses = Counter(r["status"] for r in _decode_records(run_dir))
    assert statuses == {"ok": 3, "input_error": 1}  # the other items run


def test_a_folder_where_a_prompt_file_should_be(write_suite, image_folder) -> None:
    (image_folder / "img0.txt").mkdir()
    path = write_suite(small_suite(image_folder))
    usage_error(invoke("validate", str(path)), str(image_folder / "img0.txt"), "it is a directory")


def test_a_folder_named_like_an_image_is_a_folder(write_suite, image_folder) -> None:
    (image_folder / "more.png").mkdir()
    shutil.copy(image_folder / "img0.png", image_folder / "more.png" / "inner.png")
    result = invoke("validate", str(write_suite(small_suite(image_folder))))
    assert result.exit_code == 0 and "4 item(s)" in result.output, result.output


# =========================================================================== issue 24: terminals and names


@pytest.mark.e2e
def test_columns_zero_and_an_ascii_terminal(base_run) -> None:
    from helpers import cli

    result = cli("show", str(base_run), columns=0)
    assert result.returncode == 0 and "Traceback" not in result.stderr and "psnr" in result.stdout
    env = {**os.environ, "LC_ALL": "C", "PYTHONIOENCODING": "ascii", "COLUMNS": "100"}
    import subprocess

    for args in (["list", "decoders"], ["show", str(base_run)]):
        done = started(subprocess.run, [sys.executable, "-m", "harness", *args], capture_output=True, env=env,
                              timeout=120)
        assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
        done.stdout.decode("ascii")  # plain ASCII: ★ → *, × → x, ↑ → ^
    assert b"32x32" in done.stdout and b"*" in done.stdout


def test_an_out_path_with_a_300_character_name(write_suite, image_folder, tmp_path) -> None:
    target = tmp_path / ("x" * 300)
    usage_error(invoke("run", str(write_suite(small_suite(image_folder))), "--out", str(target), "-q"),
                "run directory", "File name too long")


@pytest.mark.parametrize(("content", "fragment"), [
    (b"[]", "expected a JSON object (a baseline), got list"),
    (bytes(range(256)), "not UTF-8 text"),
    (b'{"format": 1, "name": "b"}', "suite: required key is missing"),
    (b'{"format": 1', ":1: invalid JSON"),
], ids=["a-list", "binary", "no-keys", "torn"])
def test_a_gate_baseline_that_is_no_baseline(base_run, tmp_path, content, fragment) -> None:
    baseline = tmp_path / "b.json"
    baseline.write_bytes(content)
    usage_error(invoke("gate", str(base_run), "--baseline", str(baseline), "--suite",
                       str(_gate_suite(base_run, tmp_path))), str(baseline), fragment)


def test_a_baseline_without_its_decoders_key(base_run, tmp_path) -> None:
    assert invoke("baseline", "save", str(base_run), "--name", "b", "--dir", str(tmp_path),
                  "--images", "none").exit_code == 0
    data = json.loads((tmp_path / "b.json").read_text())
    del data["decoders"]
    (tmp_path / "b.json").write_text(json.dumps(data))
    usage_error(invoke("gate", str(base_run), "--baseline", str(tmp_path / "b.json"), "--suite",
                       str(_gate_suite(base_run, tmp_path))), "b.json: decoders: required key is missing")


# =========================================================================== issue 24: silent accepts


def test_a_summary_group_named_overall(write_suite, image_folder) -> None:
    path = write_suite(small_suite(image_folder) + '\n[summary]\noverall = ["psnr"]\n')
    usage_error(invoke("validate", str(path)), str(path), "summary group 'overall'", "another name")


def test_a_misspelt_decoder_table_is_named(write_suite, image_folder) -> None:
    path = write_suite(small_suite(image_folder).replace("[[decoder]]", "[[decoders]]"))
    usage_error(invoke("validate", str(path)), "decoder: required key is missing",
                "the file has 'decoders': did you mean 'decoder'?")


def test_report_of_a_metric_the_run_does_not_have(base_run, tmp_path) -> None:
    usage_error(invoke("report", str(base_run), "--out", str(tmp_path / "r"), "--metric", "psnrr"),
                "--metric: 'psnrr' is not a metric of this run (did you mean 'psnr'?)")
    assert not (tmp_path / "r").exists()


def test_a_benchmarks_dir_that_is_a_file(tmp_path, monkeypatch) -> None:
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("DECODERBENCH_BENCHMARKS_DIR", str(tmp_path / "f"))
    for verb in ("list", "where", "verify"):
        usage_error(invoke("benchmarks", verb), "DECODERBENCH_BENCHMARKS_DIR=", "a file, not a folder")


def test_a_start_method_that_is_no_process(write_suite, image_folder, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DECODERBENCH_START_METHOD", "threads")
    suite = str(write_suite(small_suite(image_folder)))
    usage_error(invoke("run", suite, "--out", str(tmp_path / "r"), "-q"),
                "DECODERBENCH_START_METHOD='threads'", "forkserver, spawn")
    assert not (tmp_path / "r").exists()


def test_judge_max_requests_is_blamed_on_the_command_line(base_run, tmp_path) -> None:
    override = tmp_path / "judge.toml"
    override.write_text('[judge]\nmodel = "m"\n')
    line = usage_error(invoke("judge", str(base_run), "--suite-override", str(override), "--max-requests",
                              "-1", "--dry-run"), "command line: --max-requests:")
    assert str(override) not in line and "invalid judge settings" not in line


def test_validate_opens_only_the_items_a_limit_keeps(write_suite, image_folder, tmp_path,
                                                     monkeypatch) -> None:
    """Listing is linear and lazy: ids are checked over every entry, files opened for `limit` only."""
    import harness.sources.items as items

    manifest = tmp_path / "items.jsonl"
    manifest.write_text("".join(json.dumps({"image": str(image_folder / "img0.png"), "id": f"i{n}"}) + "\n"
                                for n in range(5000)))
    text = small_suite(image_folder).replace(f'folder = "{image_folder}"',
                                             f'manifest = "{manifest}"\nlimit = 2')
    opened = []
    real = items.read_regular
    monkeypatch.setattr(items, "read_regular", lambda path, limit: opened.append(path) or real(path, limit))
    result = invoke("validate", str(write_suite(text)))
    assert result.exit_code == 0 and "2 item(s)" in result.output, result.output
    assert len([p for p in opened if p.suffix == ".png"]) == 2
    manifest.write_text(manifest.read_text() + json.dumps({"image": "x.png", "id": "i4999"}) + "\n")
    usage_error(invoke("validate", str(write_suite(text))), "item ids occur twice: ['i4999']")


def test_cached_sources_keep_their_notes(write_suite, image_folder, tmp_path) -> None:
    text = small_suite(image_folder).replace("output_scale = 2", "output_scale = 4")
    path = write_suite(text)
    notes = []
    for name in ("a", "b"):
        result = invoke("run", str(path), "--out", str(tmp_path / name), "--cache-dir", str(tmp_path / "c"),
                        "-q", "--no-report")
        assert result.exit_code == 0, result.output
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        notes.append(sorted(n for n in manifest["notes"] if "upsampled" in n))
    assert notes[0] and notes[0] == notes[1]
