"""A bench session is green only when its suites really ran (harness/hardware/session.py,
`decoderbench session`), read from the run directories; and the nox session's order of steps:
the preflight before any install, never a torch of its own (noxfile.py, with a stand-in Session)."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nox
import pytest
from synthetic_runs import SynthDecoder, write_run, write_sweep
from typer.testing import CliRunner

from harness.cli import app
from harness.hardware.session import (
    NOT_MADE,
    decide,
    read_parts,
    read_run_part,
    read_sweep_part,
    wall_seconds,
)
from harness.hardware.walls import sweep_stop

REPO = Path(__file__).resolve().parents[2]
GiB = 2**30
PID_CLONE = "git clone https://github.com/nv-tlabs/PiD DIR"
MISSING = ("unavailable", f"load failed: PiD checkout not found; {PID_CLONE}")
OOM = ("oom", "CUDA out of memory. Tried to allocate 40.00 GiB")


def run(root: Path, *decoders: SynthDecoder, cases: int = 3, **kwargs: Any) -> Path:
    return write_run(root, list(decoders), cases, {"psnr": True}, images=False, **kwargs)


def every(status: tuple[str, str], cases: int = 3) -> dict[int, tuple[str, str]]:
    return dict.fromkeys(range(cases), status)


def test_all_unavailable_is_red_even_allowed(tmp_path: Path) -> None:
    part = read_run_part(run(tmp_path / "pid-paper", SynthDecoder("pid-a", failures=every(MISSING)),
                             SynthDecoder("pid-b", failures=every(MISSING))), "pid-paper")
    for allow in (False, True):
        verdict = decide([part], allow_missing=allow)
        assert not verdict.green
        assert verdict.problems == ["pid-paper: decoded nothing (no row measured a single case)"]
        assert verdict.missing[0] == ("pid-paper · pid-a: load failed: PiD checkout not found; git clone "
                                      "https://github.com/nv-tlabs/PiD DIR")


def test_only_oom_rows_in_a_wall_suite_pass(tmp_path: Path) -> None:
    root = run(tmp_path / "flux-vae-wall", SynthDecoder("flux-vae-tiled"),
               SynthDecoder("flux-vae-fp32", failures=every(OOM)),  # out of memory at every size
               SynthDecoder("flux-vae", failures={2: OOM}))  # out of memory at its largest size
    wall = read_run_part(root, "flux-vae-wall", wall=True)
    verdict = decide([wall], allow_missing=False)
    assert verdict.green and verdict.problems == [] and verdict.missing == []
    assert wall.measured_rows == 3
    not_wall = decide([read_run_part(root, "flux-vae-wall", wall=False)], allow_missing=True)
    assert not not_wall.green
    assert not_wall.problems[0] == (
        "flux-vae-wall · flux-vae-fp32: of 3 case(s), 3 oom (CUDA out of memory. Tried to allocate 40.00 "
        "GiB); out of memory is a result only in a memory-wall suite")


def test_a_wall_suite_that_decoded_nothing_is_red(tmp_path: Path) -> None:
    root = run(tmp_path / "wall", SynthDecoder("flux-vae", failures=every(OOM)))
    verdict = decide([read_run_part(root, "wall", wall=True)], allow_missing=True)
    assert verdict.problems == ["wall: decoded nothing (no row measured a single case)"]


def test_missing_weights_red_unless_allowed(tmp_path: Path) -> None:
    root = run(tmp_path / "pid-paper", SynthDecoder("flux-vae"), SynthDecoder("pid", failures=every(MISSING)))
    part = read_run_part(root, "pid-paper")
    red = decide([part], allow_missing=False)
    assert not red.green and red.problems == [] and len(red.missing) == 1
    allowed = decide([part], allow_missing=True)
    assert allowed.green and allowed.missing == red.missing  # listed, not hidden
    assert part.measured_rows == 1


def test_unavailable_metrics_and_failed_judge_requests_count_as_missing(tmp_path: Path) -> None:
    decoders = [SynthDecoder(d, metrics={"lpips": lambda k: "unavailable"}) for d in ("a", "b")]
    root = write_run(tmp_path / "s", decoders, 2, {"lpips": False}, images=False)
    case = json.loads((root / "cases.jsonl").read_text().splitlines()[0])["id"]  # a record of this run
    with (root / "results.jsonl").open("a") as handle:
        handle.write(json.dumps({"kind": "judge", "case": case, "a": "a", "b": "b", "criterion": "overall",
                                 "status": "failed", "failure": "no Gemini API key"}) + "\n")
    verdict = decide([read_run_part(root, "s")], allow_missing=False)
    assert verdict.problems == []
    assert verdict.missing == ["s · metric lpips: lpips unavailable: weights not found (test)",
                               "s · judge: 1 request(s) failed: no Gemini API key"], verdict.missing
    assert decide([read_run_part(root, "s")], allow_missing=True).green


@pytest.mark.parametrize("status", ["error", "timeout", "crashed", "invalid_output", "input_error"])
def test_any_other_failure_is_red_whatever_is_allowed(tmp_path: Path, status: str) -> None:
    failing = SynthDecoder("b", failures={1: (status, "boom\ntraceback")})
    root = run(tmp_path / "s", SynthDecoder("a"), failing)
    verdict = decide([read_run_part(root, "s", wall=True)], allow_missing=True)
    assert verdict.problems == [f"s · b: of 3 case(s), 1 {status} (boom)"]


def test_cases_without_records_and_unfinished_runs_are_red(tmp_path: Path) -> None:
    root = run(tmp_path / "s", SynthDecoder("a"), SynthDecoder("b"))
    lines = (root / "results.jsonl").read_text().splitlines()
    kept = [line for line in lines if not ('"decoder": "b"' in line and '"kind": "decode"' in line)][:-1]
    (root / "results.jsonl").write_text("\n".join(kept) + "\n")
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps({**manifest, "status": "interrupted"}))
    problems = decide([read_run_part(root, "s")], allow_missing=True).problems
    assert problems == [f"s: the run is 'interrupted', not finished: resume it with `decoderbench run "
                        f"--resume {root}`", "s · b: of 3 case(s), 3 without a record"]


def test_absent_and_unreadable_run_directories_are_red(tmp_path: Path) -> None:
    assert decide([read_run_part(tmp_path / "never", "never")], True).problems == [f"never: {NOT_MADE}"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{")
    problem = decide([read_run_part(tmp_path / "bad", "bad")], True).problems[0]
    assert problem.startswith("bad: ") and "invalid JSON" in problem


def test_sweeps_oom_is_their_result_and_nothing_decoded_is_red(tmp_path: Path) -> None:
    found = read_sweep_part(write_sweep(tmp_path / "a", "flux-vae", [512, 4096, 2048, 3072], 3072), "sweep a")
    assert decide([found], False).green and (found.largest_ok, found.smallest_oom) == (2048, 3072)
    nothing = read_sweep_part(write_sweep(tmp_path / "b", "flux-vae", [512], 512), "sweep b")
    assert decide([nothing], True).problems == ["sweep b: decoded nothing (tried: 512 px oom)"]
    broken = write_sweep(tmp_path / "c", "flux-vae", [512, 1024], 4096)
    records = [json.loads(line) for line in (broken / "results.jsonl").read_text().splitlines()]
    records[1].update(status="error", message="CUDA error: an illegal memory access")
    (broken / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert decide([read_sweep_part(broken, "sweep c")], True).problems == [
        "sweep c: 1024 px error (CUDA error: an illegal memory access)"]


def test_wall_time_from_the_start_to_the_last_finish(tmp_path: Path) -> None:
    first = read_run_part(run(tmp_path / "a", SynthDecoder("a"), created="2026-12-10T10:20:00+00:00"), "a")
    second = read_run_part(run(tmp_path / "b", SynthDecoder("b"), created="2026-12-10T11:05:30+00:00"), "b")
    plan = {"started": "2026-12-10T10:00:00.000+00:00"}
    assert wall_seconds(plan, [first, second]) == 3930.0
    assert wall_seconds({}, [first]) is None
    assert wall_seconds({"started": "2026-12-10T12:00:00+00:00"}, [first]) is None  # finished before it began


@pytest.mark.parametrize(("memory", "anchor", "stop"), [
    (80 * GiB, 16.8 * GiB, 5632),  # H100 80 GB, FLUX.1 VAE bf16 (16.8 GiB reserved at 2048²)
    (80 * GiB, 33.9 * GiB, 4096),  # ... fp32: the wall near 3100 px, searched up to 4096
    (174 * GiB, 16.8 * GiB, 8192),  # GB200 (186 GB): past 4096, capped at 8192
    (174 * GiB, 33.9 * GiB, 6144),
    (8 * GiB, 33.9 * GiB, 1536),
    (1 * GiB, 33.9 * GiB, 1024),  # never below the floor
])
def test_sweep_bounds_grow_with_device_memory(memory: float, anchor: float, stop: int) -> None:
    bound = sweep_stop(int(memory), 2048, int(anchor))
    assert bound == stop
    extrapolated_wall = 2048 * (memory / anchor) ** 0.5
    assert bound >= min(extrapolated_wall, 8192)  # the wall lies inside what is searched
    with pytest.raises(ValueError):
        sweep_stop(0, 2048, int(anchor))


# --------------------------------------------------------------------------- the folder and the verb


def session_folder(root: Path, allow_missing: bool = False) -> Path:
    run(root / "smoke", SynthDecoder("nearest"), SynthDecoder("bicubic"), suite="smoke",
        created="2026-12-10T10:01:00.000+00:00")
    run(root / "flux-vae-wall", SynthDecoder("flux-vae"), SynthDecoder("flux-vae-fp32", failures={2: OOM}),
        suite="flux-vae-wall", created="2026-12-10T10:05:00.000+00:00")
    pid = SynthDecoder("pid-v1-2k-4step", failures=every(MISSING))
    run(root / "pid-paper", SynthDecoder("flux-vae"), pid, suite="pid-paper",
        created="2026-12-10T10:07:00+00:00")
    write_sweep(root / "sweep-flux-vae", "flux-vae", [512, 8192, 4352, 6400, 7296, 6848], 6848)
    (root / "session.json").write_text(json.dumps({
        "session": "bench-gb200", "started": "2026-12-10T10:00:00.000+00:00",
        "suites": ["smoke", "flux-vae-wall", "pid-paper"], "wall_suites": ["flux-vae-wall"],
        "sweeps": [{"suite": "flux-vae-wall", "decoder": "flux-vae", "dir": "sweep-flux-vae"}],
        "allow_missing": allow_missing}))
    (root / "preflight.json").write_text(json.dumps({"machine": {
        "machine": "aarch64", "python": "3.12.3", "torch": "2.14.1+cu130", "torch_cuda": "13.0",
        "driver": "580.95.05", "gpus": [{"index": i, "name": "NVIDIA GB200", "capability": "10.0",
                                         "memory_bytes": 185 * GiB} for i in range(4)]}}))
    return root


def test_the_session_verb_summarizes_reports_exports_and_decides(tmp_path: Path) -> None:
    folder = session_folder(tmp_path / "bench-gb200-20261210-100000")
    result = CliRunner().invoke(app, ["session", str(folder)], env={"COLUMNS": "120"})
    assert result.exit_code == 1, result.output
    text = result.output
    assert ("machine: 4 × NVIDIA GB200 (compute capability 10.0, 185 GiB) · driver 580.95.05 · torch "
            "2.14.1+cu130 (CUDA 13.0) · aarch64 · Python 3.12.3") in text
    assert "wall time: 0 min 07 s" not in text and "wall time: 7 min 00 s" in text
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.split():
            rows.setdefault(line.split()[0], line.split())  # the table's row comes first
    assert rows["smoke"][1:] == ["2/2", "0", "0", "0", "✓"]
    assert rows["flux-vae-wall"][1:] == ["(wall)", "2/2", "0", "1", "0", "✓"]
    assert rows["pid-paper"][1:] == ["1/2", "1", "0", "0", "✗", "missing"]
    assert " ".join(rows["sweep"]) == "sweep flux-vae largest 6400 px — 3 (from 6848 px) 0 ✓"
    assert "missing (red; `--allow-missing`, in a session `-- --allow-missing`, accepts them):" in text
    assert "  pid-paper · pid-v1-2k-4step: load failed: PiD checkout not found" in text
    assert text.rstrip().endswith("verdict: red — 1 problem(s) above")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["green"] is False and summary["wall_s"] == 420.0 and len(summary["parts"]) == 4
    assert summary["parts"][3]["largest_ok"] == 6400 and summary["parts"][3]["smallest_oom"] == 6848
    assert (folder / "report" / "index.html").is_file()
    csv_text = (folder / "results.csv").read_text()
    suites = {line.split(",")[2] for line in csv_text.splitlines()[1:]}
    assert suites == {"smoke", "flux-vae-wall", "pid-paper"}

    allowed = CliRunner().invoke(app, ["session", str(folder), "--allow-missing", "--no-report"],
                                 env={"COLUMNS": "120"})
    assert allowed.exit_code == 0, allowed.output
    assert "missing, allowed by --allow-missing:" in allowed.output
    assert allowed.output.rstrip().endswith("verdict: green")


def test_the_session_verb_on_a_folder_that_is_not_a_session(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["session", str(tmp_path)])
    assert result.exit_code == 2 and "is not a bench session folder (no session.json" in result.output


def test_read_parts_keeps_the_declared_order_and_the_absent(tmp_path: Path) -> None:
    folder = session_folder(tmp_path / "s")
    (folder / "session.json").write_text(json.dumps({"suites": ["pid-4k", "smoke"], "sweeps": []}))
    parts = read_parts(folder, json.loads((folder / "session.json").read_text()))
    assert [(p.name, p.problem == NOT_MADE) for p in parts] == [("pid-4k", True), ("smoke", False)]


# --------------------------------------------------------------------------- the nox session


@functools.cache
def _noxfile() -> Any:
    """noxfile.py, loaded once (nox registers its sessions globally)."""
    spec = importlib.util.spec_from_file_location("decoderbench_noxfile", REPO / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeSession:
    """What the bench session asks of nox: each command recorded, the first failing one raises."""

    def __init__(self, tmp_path: Path, posargs: list[str], fail_on: str | None = None) -> None:
        self.name, self.posargs, self.venv_backend = "bench-gb200", posargs, "virtualenv"
        venv = tmp_path / "venv"
        venv.mkdir(parents=True)
        (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = true\n")
        self.virtualenv = SimpleNamespace(location=str(venv))
        self.tmp, self.fail_on, self.commands = tmp_path, fail_on, []

    def run(self, *args: str, **kwargs: Any) -> str:
        self.commands.append(list(args))
        if self.fail_on and self.fail_on in " ".join(args):
            raise nox.command.CommandFailed("exit 1", return_code=1)
        if "--record" in args:  # what doctor writes
            record = Path(args[args.index("--record") + 1])
            record.write_text(json.dumps({"machine": {"gpus": [{"memory_bytes": 174 * GiB}]}}))
        return "torch==2.14.1+cu130\n" if args[:2] == ("python", "-c") else ""

    def install(self, *args: str, **kwargs: Any) -> None:
        self.commands.append(["pip install", *args])

    def create_tmp(self) -> str:
        return str(self.tmp)

    def error(self, message: str) -> None:
        raise RuntimeError(message)

    def log(self, *args: Any) -> None:
        pass

    warn = log


def test_bench_sessions_see_the_runners_site_packages() -> None:
    noxfile = _noxfile()
    for function in (noxfile.bench_h100, noxfile.bench_gb200):
        assert function.venv_params == ["--system-site-packages"]


def test_the_nox_session_fails_at_the_preflight_before_installing(tmp_path: Path) -> None:
    session = FakeSession(tmp_path, [], fail_on="harness.hardware.cuda")
    with pytest.raises(nox.command.CommandFailed):
        _noxfile()._bench(session, "gb200")
    assert session.commands == [["python", "-m", "harness.hardware.cuda", "--gpu-family", "gb200"]]


def test_the_nox_session_in_order(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "bench"
    session = FakeSession(tmp_path, ["--allow-missing", "--suites", "smoke,flux-vae-wall", "--out", str(out)],
                          fail_on="decoderbench run smoke")  # a suite whose run dies: the others go on
    _noxfile()._bench(session, "gb200")
    steps = [" ".join(command[:3]) for command in session.commands]
    assert steps == ["python -m harness.hardware.cuda", "python -c " + _noxfile()._RUNNER_PINS,
                     "pip install -c " + str(tmp_path / "constraints-runner.txt"),
                     "decoderbench doctor --device", "decoderbench run smoke",
                     "decoderbench run flux-vae-wall",
                     "decoderbench sweep flux-vae-wall", "decoderbench sweep flux-vae-wall",
                     "decoderbench session " + str(out)]
    constraints = (tmp_path / "constraints-runner.txt").read_text()
    assert constraints.rstrip().endswith("# the runner's own, never replaced\ntorch==2.14.1+cu130")
    assert session.commands[2][-2:] == ["-e", ".[runner]"]
    doctor = session.commands[3]
    assert doctor[3:8] == ["cuda", "--gpu-family", "gb200", "--allow-missing", "--record"]
    assert doctor[-2:] == ["smoke", "flux-vae-wall"]
    assert session.commands[4][3:] == ["--device", "cuda", "--gpus", "all", "--out", str(out / "smoke"),
                                       "--no-report", "--quiet"]
    assert [c[c.index("--to") + 1] for c in session.commands[6:8]] == ["8192", "6144"]  # 174 GiB
    plan = json.loads((out / "session.json").read_text())
    assert plan["suites"] == ["smoke", "flux-vae-wall"] and plan["wall_suites"] == ["flux-vae-wall"]
    assert plan["allow_missing"] is True and [s["dir"] for s in plan["sweeps"]] == ["sweep-flux-vae",
                                                                                  "sweep-flux-vae-fp32"]


def test_the_nox_session_refuses_unknown_options_and_old_venvs(tmp_path: Path) -> None:
    noxfile = _noxfile()
    with pytest.raises(RuntimeError, match=r"unknown option.*--fast.*the options are --any-gpu"):
        noxfile._bench(FakeSession(tmp_path / "a", ["--fast"]), "h100")
    old = FakeSession(tmp_path / "b", [])
    (Path(old.virtualenv.location) / "pyvenv.cfg").write_text("include-system-site-packages = false\n")
    with pytest.raises(RuntimeError, match="does not see the runner's site-packages"):
        noxfile._bench(old, "h100")
    assert old.commands == []
