"""nox sessions: tests, lint, the offline demo, and GPU benchmark runs.

    nox -s tests            # the test suite (CPU, offline)
    nox -s lint             # ruff
    nox -s smoke            # the offline demo suite
    nox -s bench-metrics    # every metric against the library it matches (CPU, and CUDA if present)
    nox -s bench-h100       # GPU suites on an H100 runner (--device cuda, every GPU at once)
    nox -s bench-gb200      # GPU suites on a GB200 runner (--device cuda, every GPU at once)
    nox -s bench-overhead   # the harness's own cost (tests/bench_overhead.py)

Sessions install the project with the pinned torch of constraints.txt; pass
`-- ARGS` to forward extra arguments (e.g. `nox -s bench-h100 -- --out runs/h100`).
"""

from __future__ import annotations

import os

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]

# GPU suites run by the bench sessions (weights from the HF cache or the paths the suites declare;
# a decoder whose weights are missing is recorded as unavailable and the suite goes on).
GPU_SUITES = ["smoke", "flux-vae-wall", "pid-paper", "pid-4k", "l2p-1k", "pid-rae-dinov2", "pid-rae-siglip"]


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
    clean-fid (see harness/metrics/bench.py); `-- --sizes 256 --device cuda` etc. are forwarded."""
    _install(session)
    session.run("python", "-m", "harness.metrics.bench", *session.posargs, env={"HF_HUB_OFFLINE": "1"})


def _bench(session: nox.Session, runner: str) -> None:
    _install(session)
    env = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    for suite in GPU_SUITES:
        session.log(f"{runner}: suite {suite}")
        # exit code 1 = some cases did not decode (OOM at 4K, missing weights): recorded, go on
        session.run("decoderbench", "run", suite, "--device", "cuda", "--gpus", "all", *session.posargs,
                    env=env, success_codes=[0, 1])
    for decoder in ("flux-vae", "flux-vae-fp32"):  # bf16, and fp32 (the PiD paper's 37 GB figure)
        session.log(f"{runner}: FLUX.1 VAE memory wall ({decoder})")
        session.run("decoderbench", "sweep", "flux-vae-wall", "--decoder", decoder, "--from", "512",
                    "--to", "4096", "--device", "cuda", env=env, success_codes=[0, 1])


@nox.session(name="bench-h100")
def bench_h100(session: nox.Session) -> None:
    _bench(session, "h100")


@nox.session(name="bench-gb200")
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
        session.run("python", "tests/bench_overhead.py", *command, env=env)


@nox.session(name="timing-check")
def timing_check(session: nox.Session) -> None:
    """Harness-measured latency vs a bare CUDA-event loop on the same input (ratio ≈ 1)."""
    _install(session)
    session.run("python", "-m", "harness.timingcheck", "--device", "cuda", *session.posargs)
