"""The harness's own cost.

    PYTHONPATH=. python bench/overhead.py overhead [--cases 200] [--decode-ms 100] [--size 512]
    PYTHONPATH=. python bench/overhead.py startup [--workers 4]
    PYTHONPATH=. python bench/overhead.py png [--sizes 1024 2048]
    PYTHONPATH=. python bench/overhead.py ray [--cases 24]
    python bench/overhead.py demo --checkouts ../main . [--rounds 3]

- overhead: a GPU-like synthetic decoder (the test plug-in `fault`: a fixed sleep per image, so the
  CPU is free while it "decodes", as it is while a GPU does) over `--cases` synthetic latents, one
  timed call each; harness overhead = (wall − decoder calls − sources − metrics) / wall, computed
  from the run directory alone (so the same code measures an older checkout: set PYTHONPATH to it).
  With --overlap auto the run stores outputs in the background only where the suite allows it.
- startup: worker start-up (start → decoder loaded) with spawned workers and forkserver children.
- png: PNG encode time, size and write + fsync time per zlib level on a real photograph.
- ray: the same CPU suite through the local and the Ray executor: identical records, wall ratio.
- demo: the offline demo's wall time per checkout, rounds interleaved (other users of the machine
  load every checkout alike), medians printed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS / "plugins"))  # the `fault` decoder, through its entry point
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS / "plugins"),
                                                        os.environ.get("PYTHONPATH", "")) if p)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def overhead_suite(cases: int, decode_ms: float, size: int, overlap: str, device: str) -> str:
    from harness.suite import Timing

    overlap_line = ""
    if overlap != "auto" and "overlap_io" in Timing.model_fields:
        overlap_line = f"overlap_io = {'true' if overlap == 'on' else 'false'}"
    return f"""
name = "overhead"
metrics = []

[source]
kind = "latents"
space = "pixels"
synthetic = {cases}

[resolution]
input = {size // 4}
output_scale = 4

[timing]
device = "{device}"
warmup = 1
repeats = 1
threads = 1  # a GPU-like decoder needs no CPU threads (two would wake up after every sleep)
{overlap_line}

[[decoder]]
name = "fault"
label = "fixed-{decode_ms:g}ms"
params = {{sleep_per_image_s = {decode_ms / 1e3}}}
"""


def budget(run_dir: Path) -> dict[str, float]:
    """Wall, decoder calls, sources and metrics from a run directory (any decoderbench version)."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    phases = manifest["phases"]
    calls_ms, starts_ms, seen = 0.0, 0.0, set()
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "load":
            starts_ms += record.get("spawn_to_ready_ms") or 0.0
        if record["kind"] != "decode" or record.get("batch_id") in seen:
            continue
        seen.add(record.get("batch_id"))
        calls_ms += sum((record.get("latency") or {}).get("samples_ms", []))
        calls_ms += (record.get("warmup") or {}).get("total_ms") or 0.0
    total = {key: sum(p.get(key, 0.0) for p in phases)
             for key in ("wall_s", "sources_s", "evaluate_s", "judge_s", "writing_s", "writer_busy_s")}
    overhead = total["wall_s"] - calls_ms / 1e3 - total["sources_s"] - total["evaluate_s"] - total["judge_s"]
    return {**total, "decoder_calls_s": calls_ms / 1e3, "worker_startup_s": starts_ms / 1e3,
            "overhead_s": overhead, "overhead_share": overhead / total["wall_s"]}


def run_suite(text: str, work: Path, name: str, **execution: Any) -> Path:
    from harness.runner import Runner
    from harness.sources.cache import TensorCache
    from harness.suite import load_suite

    path = work / f"{name}.toml"
    path.write_text(text)
    suite = load_suite(path)
    return Runner.new(suite, work / name, TensorCache(work / "cache"), **execution).run().run_dir


def cmd_overhead(args: argparse.Namespace) -> None:
    text = overhead_suite(args.cases, args.decode_ms, args.size, args.overlap, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shares = []
        for index in range(args.repeat):
            numbers = budget(run_suite(text, work, f"run{index}"))
            shares.append(numbers["overhead_share"])
            print(json.dumps({k: round(v, 4) for k, v in numbers.items()}))
        print(f"harness overhead share over {args.cases} cases × {args.decode_ms:g} ms: "
              f"median {100 * statistics.median(shares):.2f} % of wall ({len(shares)} run(s))")


def cmd_startup(args: argparse.Namespace) -> None:
    for method in ("spawn", "forkserver"):
        env = {**os.environ, "DECODERBENCH_START_METHOD": method}
        command = [sys.executable, str(Path(__file__).resolve()), "startup-once", "--workers",
                   str(args.workers)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        starts = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{method:>10}: worker start-up (ms) {[round(s) for s in starts]}, "
              f"median {statistics.median(starts):.0f} ms, total {sum(starts) / 1e3:.2f} s")


def cmd_startup_once(args: argparse.Namespace) -> None:
    """One run of `--workers` trivial decoders; prints each worker's start → ready time (ms)."""
    tables = "\n".join(f'[[decoder]]\nname = "fault"\nlabel = "w{i}"\n' for i in range(args.workers))
    text = overhead_suite(1, 0, 64, "auto", "cpu").split("[[decoder]]")[0] + tables
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = run_suite(text, Path(tmp), "startup")
        records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    print(json.dumps([r["spawn_to_ready_ms"] for r in records if r["kind"] == "load"]))


def cmd_png(args: argparse.Namespace) -> None:
    import numpy as np
    import skimage.data
    from PIL import Image

    photo = Image.fromarray(skimage.data.astronaut())
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sizes:
            array = np.asarray(photo.resize((side, side), Image.Resampling.LANCZOS))
            for level in (0, 1, 2, 3, 6):
                encode, write = [], []
                for _ in range(args.rounds):
                    begin = time.perf_counter()
                    buffer = io.BytesIO()
                    Image.fromarray(array).save(buffer, format="PNG", compress_level=level)
                    encode.append(time.perf_counter() - begin)
                    begin = time.perf_counter()
                    with open(Path(tmp) / "x.png", "wb") as handle:
                        handle.write(buffer.getvalue())
                        handle.flush()
                        os.fsync(handle.fileno())
                    write.append(time.perf_counter() - begin)
                size = len(buffer.getvalue())
                print(f"{side}² level {level}: encode {1e3 * statistics.median(encode):.0f} ms, write+fsync "
                      f"{1e3 * statistics.median(write):.0f} ms, {size / array.nbytes:.2f} of raw")


def cmd_ray(args: argparse.Namespace) -> None:
    import logging

    import ray

    text = overhead_suite(args.cases, 50, 256, "auto", "cpu").replace(
        'label = "fixed-50ms"', 'label = "a"') + '\n[[decoder]]\nname = "bicubic"\n'
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        begin = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
        print(f"ray.init(num_cpus=2): {time.perf_counter() - begin:.1f} s (not in the walls below)")
        walls: dict[str, list[float]] = {"local": [], "ray": []}
        records: dict[str, Any] = {}
        for index in range(args.rounds):
            for executor in ("local", "ray"):
                run_dir = run_suite(text, work, f"{executor}{index}", executor=executor)
                walls[executor].append(budget(run_dir)["wall_s"])
                records[executor] = _comparable(run_dir)
        ray.shutdown()
    same = records["local"] == records["ray"]
    local, remote = statistics.median(walls["local"]), statistics.median(walls["ray"])
    print(f"identical records (status, sizes, input and image hashes, facts): {same}")
    print(f"wall: local {local:.1f} s, ray {remote:.1f} s (medians of {args.rounds}); "
          f"ratio {remote / local:.2f}")


def _comparable(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    per_run = {"time", "worker_pid", "batch_id", "latency", "memory", "warmup", "placement", "slot", "unit"}
    out = {}
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "decode":
            out[(record["decoder"], record["case"])] = {k: v for k, v in record.items() if k not in per_run}
    return out


def cmd_demo(args: argparse.Namespace) -> None:
    rows: dict[str, list[dict[str, float]]] = {c: [] for c in args.checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.rounds):
            for checkout in args.checkouts:
                root = Path(checkout).resolve()
                out = Path(tmp) / f"{root.name}-{index}"
                env = {**os.environ, "PYTHONPATH": str(root)}
                begin = time.perf_counter()
                done = subprocess.run([args.python, "-m", "harness", "run", "--out", str(out), "-q",
                                       "--no-report"], cwd=root, env=env, capture_output=True, text=True)
                if not (out / "manifest.json").is_file():
                    print(f"{root.name} round {index} failed:\n{done.stderr[-2000:]}")
                    continue
                numbers = {**budget(out), "process_s": time.perf_counter() - begin}
                numbers["wall_less_metrics_s"] = numbers["wall_s"] - numbers["evaluate_s"]
                rows[checkout].append(numbers)
                print(f"{root.name} round {index}: " + ", ".join(f"{k} {numbers[k]:.1f}" for k in DEMO_KEYS))
    for checkout, values in rows.items():
        medians = {k: statistics.median(v[k] for v in values) for k in DEMO_KEYS} if values else {}
        text = ", ".join(f"{k} {v:.1f}" for k, v in medians.items())
        print(f"{checkout} medians of {len(values)}: {text}")


DEMO_KEYS = ("process_s", "wall_s", "wall_less_metrics_s", "worker_startup_s", "decoder_calls_s",
             "evaluate_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    overhead = commands.add_parser("overhead")
    overhead.add_argument("--cases", type=int, default=200)
    overhead.add_argument("--decode-ms", type=float, default=100.0)
    overhead.add_argument("--size", type=int, default=512, help="comparison size (square)")
    overhead.add_argument("--overlap", choices=("auto", "on", "off"), default="on")
    overhead.add_argument("--device", default="cpu")
    overhead.add_argument("--repeat", type=int, default=1)
    for name in ("startup", "startup-once"):
        commands.add_parser(name).add_argument("--workers", type=int, default=4)
    png = commands.add_parser("png")
    png.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    png.add_argument("--rounds", type=int, default=3)
    ray = commands.add_parser("ray")
    ray.add_argument("--cases", type=int, default=24)
    ray.add_argument("--rounds", type=int, default=1)
    demo = commands.add_parser("demo")
    demo.add_argument("--checkouts", nargs="+", required=True)
    demo.add_argument("--rounds", type=int, default=3)
    demo.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    {"overhead": cmd_overhead, "startup": cmd_startup, "startup-once": cmd_startup_once, "png": cmd_png,
     "ray": cmd_ray, "demo": cmd_demo}[args.command](args)


if __name__ == "__main__":
    main()
