"""nox sessions: tests, lint, the offline demo, and GPU benchmark runs.

    nox -s tests            # the test suite (CPU, offline)
    nox -s lint             # ruff
    nox -s smoke            # the offline demo suite
    nox -s bench-metrics    # every metric against the library it matches (CPU, and CUDA if present)
    nox -s bench-h100       # the GPU suites on an H100 runner (docs/hardware-runners.md)
    nox -s bench-gb200      # the GPU suites on a GB200 runner (docs/hardware-runners.md)
    nox -s bench-overhead   # the harness's own cost (bench/overhead.py)

Development sessions install the project with constraints.txt's torch (`-- ARGS` are forwarded);
the bench sessions use the runner's own CUDA torch and are described in docs/hardware-runners.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

ROOT = Path(__file__).resolve().parent
# GPU suites run by the bench sessions (weights from the HF cache or the paths the suites declare).
GPU_SUITES = ["smoke", "flux-vae-wall", "pid-paper", "pid-4k", "l2p-1k", "pid-rae-dinov2", "pid-rae-siglip"]
# Suites whose out-of-memory cases are their result (the memory wall), not a failure.
WALL_SUITES = ["flux-vae-wall"]
# Memory-wall sweeps: (suite, decoder, side, peak reserved bytes at that side). The peaks are the
# FLUX.1 VAE's at 2048² measured on an H200 (suites/flux-vae-wall.toml): 16.8 GiB in bf16,
# 33.9 GiB in fp32. Each sweep searches up to where that peak, scaled by area, outgrows the GPU's
# memory with headroom (harness/hardware/walls.py): 80 GB H100 5632 / 4096 px, 186 GB GB200
# 8192 / 6144 px.
SWEEPS = [("flux-vae-wall", "flux-vae", 2048, int(16.8 * 2**30)),
          ("flux-vae-wall", "flux-vae-fp32", 2048, int(33.9 * 2**30))]
BENCH_OPTIONS = "--any-gpu, --allow-missing, --suites a,b, --out DIR, --no-sweeps"
# Prints the runner's torch and torchvision as pins (no torch import: its metadata only).
_RUNNER_PINS = """import importlib.metadata as m
for name in ("torch", "torchvision"):
    try:
        print(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        pass
"""


def _install(session: nox.Session, extras: str = "dev") -> None:
    session.install("-c", "constraints.txt", "-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    _install(session)
    session.run("pytest", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def smoke(session: nox.Session) -> None:
    _install(session)
    session.run("decoderbench", "run", "smoke", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


@nox.session(name="bench-metrics")
def bench_metrics(session: nox.Session) -> None:
    """Metric throughput and agreement against scikit-image, pytorch_msssim, lpips, pyiqa, rapidocr,
    clean-fid (see bench/metrics.py); `-- --sizes 256 --device cuda` etc. are forwarded."""
    _install(session)
    session.run("python", "bench/metrics.py", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


def _bench_options(session: nox.Session) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"nox -s {session.name} --", add_help=False, exit_on_error=False)
    parser.add_argument("--any-gpu", action="store_true")
    parser.add_argument("--allow-missing", action="store_true")
    parser.add_argument("--suites", type=lambda text: [name for name in text.split(",") if name],
                        default=GPU_SUITES)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-sweeps", action="store_true")
    try:
        options, unknown = parser.parse_known_args(session.posargs)
    except argparse.ArgumentError as exc:
        session.error(f"{exc}; the options are {BENCH_OPTIONS}")
    if unknown:
        session.error(f"unknown option(s) {' '.join(unknown)}; the options are {BENCH_OPTIONS}")
    return options


def _check_runner_venv(session: nox.Session) -> None:
    """The venv must see the runner's Python: a venv an older noxfile made cannot, and would
    measure with whatever torch was installed into it."""
    if session.venv_backend == "none":  # --no-venv: the current environment, as it is
        return
    config = Path(session.virtualenv.location) / "pyvenv.cfg"
    lines = config.read_text(encoding="utf-8").splitlines() if config.is_file() else []
    if "include-system-site-packages = true" not in (line.strip().lower() for line in lines):
        session.error(f"{session.virtualenv.location} does not see the runner's site-packages (an older "
                      "noxfile made it): delete it and run the session again")


def _install_runner(session: nox.Session) -> None:
    """The project and what the GPU suites need, pinned, with the runner's torch pinned as it is:
    pip can then never replace it (a conflict fails the install instead)."""
    if session.venv_backend == "none":
        session.log("--no-venv: this environment is used as it is (it needs `pip install -e '.[runner]' "
                    "-c constraints-runner.txt` once)")
        return
    pins = session.run("python", "-c", _RUNNER_PINS, silent=True) or ""
    constraints = Path(session.create_tmp()) / "constraints-runner.txt"
    constraints.write_text((ROOT / "constraints-runner.txt").read_text(encoding="utf-8")
                           + "# the runner's own, never replaced\n" + pins, encoding="utf-8")
    session.install("-c", str(constraints), "-e", ".[runner]")


def _step(session: nox.Session, *args: str, env: dict[str, str]) -> None:
    """A suite run or a sweep: its exit code is no verdict (`decoderbench session` reads what it
    wrote), and a command that died still lets the others run."""
    try:
        session.run(*args, env=env, success_codes=[0, 1, 2])
    except nox.command.CommandFailed as exc:
        session.warn(f"{' '.join(args[:3])} ended abnormally ({exc.reason}); the verdict reads what it left")


def _bench(session: nox.Session, family: str) -> None:
    started = datetime.now(UTC)
    options = _bench_options(session)
    expect = [] if options.any_gpu else ["--gpu-family", family]
    _check_runner_venv(session)
    # 1. The runner's torch, its CUDA build, the GPUs: from the checkout, before installing anything.
    session.run("python", "-m", "harness.hardware.cuda", *expect)
    _install_runner(session)
    folder = options.out or Path("runs") / f"{session.name}-{started.astimezone():%Y%m%d-%H%M%S}"
    if folder.exists():
        session.error(f"{folder} exists: give another `-- --out DIR`")
    sweeps = [] if options.no_sweeps else [
        {"suite": suite, "decoder": decoder, "dir": f"sweep-{decoder}", "anchor": [side, peak]}
        for suite, decoder, side, peak in SWEEPS if suite in options.suites]
    folder.mkdir(parents=True)
    (folder / "session.json").write_text(json.dumps({
        "session": session.name, "gpu_family": None if options.any_gpu else family,
        "started": started.isoformat(timespec="milliseconds"), "suites": options.suites,
        "wall_suites": [s for s in WALL_SUITES if s in options.suites], "sweeps": sweeps,
        "allow_missing": options.allow_missing, "posargs": session.posargs}, indent=1) + "\n")
    env = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    # 2. Every suite's weights, data and keys; any problem ends the session here.
    allow = ["--allow-missing"] if options.allow_missing else []
    session.run("decoderbench", "doctor", "--device", "cuda", *expect, *allow,
                "--record", str(folder / "preflight.json"), *options.suites, env=env)
    for suite in options.suites:
        session.log(f"{session.name}: suite {suite}")
        _step(session, "decoderbench", "run", suite, "--device", "cuda", "--gpus", "all",
              "--out", str(folder / suite), "--no-report", "--quiet", env=env)
    for sweep in sweeps:
        stop = _sweep_stop(folder / "preflight.json", *sweep["anchor"])
        session.log(f"{session.name}: memory wall of {sweep['decoder']}, 512 to {stop} px")
        _step(session, "decoderbench", "sweep", sweep["suite"], "--decoder", sweep["decoder"],
              "--from", "512", "--to", str(stop), "--device", "cuda", "--out", str(folder / sweep["dir"]),
              env=env)
    # 3. One report, one export, the summary; exit 1 (a red session) unless every suite measured.
    session.run("decoderbench", "session", str(folder), env=env)


def _sweep_stop(preflight: Path, anchor_side: int, anchor_bytes: int) -> int:
    """`--to` from the memory of the GPU a sweep runs on (the first visible one)."""
    sys.path.insert(0, str(ROOT))
    from harness.hardware.walls import sweep_stop

    gpus = json.loads(preflight.read_text(encoding="utf-8"))["machine"]["gpus"]
    return sweep_stop(gpus[0]["memory_bytes"], anchor_side, anchor_bytes)


@nox.session(name="bench-h100", venv_params=["--system-site-packages"])
def bench_h100(session: nox.Session) -> None:
    _bench(session, "h100")


@nox.session(name="bench-gb200", venv_params=["--system-site-packages"])
def bench_gb200(session: nox.Session) -> None:
    _bench(session, "gb200")


@nox.session(name="bench-overhead")
def bench_overhead(session: nox.Session) -> None:
    """Harness overhead of a fixed-time synthetic decoder over 200 cases, worker start-up spawned vs
    forked, PNG levels; `-- ray` or `-- demo --checkouts A B` for the other measurements."""
    _install(session)
    env = {"HF_HUB_OFFLINE": "1", "PYTHONPATH": "."}
    commands = [session.posargs] if session.posargs else [["overhead"], ["startup"], ["png"]]
    for command in commands:
        session.run("python", "bench/overhead.py", *command, env=env)


@nox.session(name="timing-check")
def timing_check(session: nox.Session) -> None:
    """Harness-measured latency vs a bare CUDA-event loop on the same input (ratio ≈ 1)."""
    _install(session)
    session.run("python", "bench/timing_check.py", "--device", "cuda", *session.posargs)
