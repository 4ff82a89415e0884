"""Check the timing path: harness-measured latency vs a bare timing loop on the same input.

    python bench/timing_check.py --decoder bicubic --input 512 --scale 4 --device cuda

Runs a one-decoder suite through the real harness (spawned worker, warm-up, CUDA events or
perf_counter_ns), then, in this process, loads the same decoder, reads the very same cached
input tensor and times it with a bare ~20-line loop (CUDA events + synchronize, or
perf_counter_ns). A ratio near 1.0 means the harness adds nothing inside its timed region.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from decoders.base import DecodeBatch
from decoders.registry import DECODERS
from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.store import RunStore
from harness.suite import validate_raw


def bare_loop_ms(decoder, batch: DecodeBatch, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """The reference: no harness code at all around the decode call."""
    for _ in range(warmup):
        decoder.decode(batch)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            output = decoder.decode(batch)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter_ns()
            output = decoder.decode(batch)
            times.append((time.perf_counter_ns() - begin) / 1e6)
        del output
    return times


def check(decoder_name: str, input_px: int, scale: int, device: str, dtype: str, warmup: int,
          repeats: int, work_dir: Path, params: dict[str, Any] | None = None) -> dict[str, float]:
    raw = {
        "name": "timingcheck", "source": {"kind": "images", "builtin": ["photos"], "limit": 1},
        "resolution": {"input": input_px, "output_scale": scale},
        "decoder": [{"name": decoder_name, "params": params or {}}],
        "timing": {"device": device, "dtype": dtype, "warmup": warmup, "repeats": repeats},
    }
    suite = validate_raw(raw, work_dir / "timingcheck.toml")
    run_dir = work_dir / "run"
    Runner.new(suite, run_dir, TensorCache(work_dir / "cache")).run()
    store = RunStore.open(run_dir)
    record = next(r for r in store.records()[0] if r["kind"] == "decode")
    if record["status"] != "ok":
        raise RuntimeError(f"harness run failed: {record['status']}: {record.get('message')}")
    case = store.cases()[0]
    torch_device, torch_dtype = torch.device(device), getattr(torch, dtype)
    cls = DECODERS.get(decoder_name)
    decoder = cls(cls.Params.model_validate(params or {}))
    decoder.load(torch_device, torch_dtype)
    latents = load_file(case["input_path"])["latent"][None].to(torch_device, torch_dtype)
    batch = DecodeBatch(latents=latents, input_size=tuple(case["input_size"]),
                        output_size=tuple(record["request_size"]), seeds=[case["seed"]],
                        sigmas=[case["sigma"]], prompts=[case["prompt"]])
    with torch.inference_mode():
        bare = bare_loop_ms(decoder, batch, torch_device, warmup, repeats)
    harness_median = record["latency"]["median_ms"]
    return {
        "harness_median_ms": harness_median, "bare_median_ms": statistics.median(bare),
        "ratio": harness_median / statistics.median(bare), "repeats": repeats,
        "timer": record["latency"]["timer"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", default="bicubic")
    parser.add_argument("--input", type=int, default=512)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        result = check(args.decoder, args.input, args.scale, args.device, args.dtype, args.warmup,
                       args.repeats, Path(work))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
