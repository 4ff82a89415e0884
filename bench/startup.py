"""Start-up time of the verbs that touch no tensor: wall time of a fresh interpreter per call.

    PYTHONPATH=. python bench/startup.py [--repeats 5] [--run RUN_DIR]

A measurement (tests/e2e/test_startup.py keeps torch out of these verbs). Prints, per command,
the median and minimum wall time over the repeats and whether the process imported torch
(`-X importtime` output). Without --run, a constructed run of 4 decoders × 13 cases
(tests/support/synthetic_runs.py) is shown and exported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from synthetic_runs import SynthDecoder, write_run


def _commands(run_dir: Path, scratch: Path) -> list[list[str]]:
    return [
        ["--help"],
        ["--version"],
        ["list", "decoders"],
        ["list", "metrics"],
        ["list", "suites"],
        ["validate", "smoke"],
        ["show", str(run_dir)],
        ["weights", "list"],
        ["export", str(run_dir), "--csv", "--out", str(scratch / "results.csv")],
    ]


def _time(args: list[str]) -> tuple[float, bool, int]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "harness", *args],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"})
    elapsed = time.perf_counter() - start
    imported_torch = any(line.split("|")[-1].strip() == "torch" for line in result.stderr.splitlines())
    return elapsed, imported_torch, result.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        run_dir = args.run or write_run(
            scratch / "run", [SynthDecoder(d, latency_ms=5.0 * (i + 1)) for i, d in
                              enumerate(("nearest", "bilinear", "bicubic", "lanczos"))],
            13, {"psnr": True, "ssim": True}, suite="smoke", size=(256, 256))
        print(f"{'command':<44} {'median s':>9} {'min s':>7}  torch  exit")
        for command in _commands(run_dir, scratch):
            samples = [_time(command) for _ in range(args.repeats)]
            times = [s[0] for s in samples]
            label = " ".join(command).replace(str(run_dir), "RUN").replace(str(scratch), "TMP")
            print(f"{label[:44]:<44} {statistics.median(times):>9.2f} {min(times):>7.2f}  "
                  f"{'yes' if samples[0][1] else 'no':<5}  {samples[0][2]}")


if __name__ == "__main__":
    main()
