"""Constructed run directories in the shared run-store format, for report and gate tests.

A run is described by its decoders (latency, memory, failures, per-case metric
values) and written as manifest.json, cases.jsonl, results.jsonl, images and
references: the typed records of harness/records.py, as the runner, the workers and the
evaluation write them, plus the formats other parts produce (metric "artifact" heat-maps, judge
records and judge.json, memory-wall sweep runs).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from harness.images import pixels_sha256
from harness.records import CaseLine, DecodeRecord, JudgeRecord, LoadRecord, MetricRecord, Record, SweepRecord

MetricValue = Callable[[int], "float | str"]  # case index → value, or a status ("unavailable")


@dataclass
class SynthDecoder:
    id: str
    name: str = "bilinear"
    latency_ms: float = 10.0
    peak_bytes: int = 512 * 2**20
    failures: dict[int, tuple[str, str]] = field(default_factory=dict)  # case index → (status, message)
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    noise: float = 0.02  # output = reference + noise of this std (seeded by decoder and case)
    artifacts: tuple[str, ...] = ()  # metrics whose records carry a heat-map artifact
    quality_not_applicable: str | None = None
    jitter: float = 0.01  # the timed repeats spread by ± this fraction of latency_ms
    batch_size: int = 1  # cases per decode call (consecutive cases share a call and its timings)
    energy_j: float | None = None  # energy per image of each block (GPU counter), ±1 % by case
    energy_reason: str | None = None  # instead: the counter could not be read, for this reason
    energy_kind: str = "gpu"


ENVIRONMENT = {
    "python": "3.11.7",
    "platform": "Linux-test",
    "cpu": "Test CPU",
    "cpu_count": 2,
    "torch": "2.14.1",
    "torch_cuda": "13.0",
    "cudnn": 92400,
    "gpus": [],
    "packages": {"torch": "2.14.1", "numpy": "2.4.6", "decoderbench": "0.1.0"},
    "env": {},
    "git": {"sha": "0123456789abcdef0123", "dirty": False},
}


def reference_image(index: int, size: tuple[int, int]) -> np.ndarray:
    """A deterministic textured image: gradients, a checker patch and noise."""
    width, height = size
    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / width, yy / height, ((xx + yy + index * 7) % 32) / 32], axis=-1)
    checker = ((xx // 4 + yy // 4) % 2)[..., None] * (xx > width // 2)[..., None]
    array = np.clip(0.7 * base + 0.3 * checker + rng.normal(0, 0.03, base.shape), 0, 1)
    return (array * 255 + 0.5).astype(np.uint8)


def _write_png(array: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)
    return pixels_sha256(np.ascontiguousarray(array.transpose(2, 0, 1)))  # what the worker records


def _latency(median: float, index: int, jitter: float = 0.01) -> dict[str, Any]:
    samples = [median * (1 + jitter * ((index + k) % 3 - 1)) for k in range(3)]
    return {
        "samples_ms": samples,
        "median_ms": float(np.median(samples)),
        "mean_ms": float(np.mean(samples)),
        "p10_ms": min(samples),
        "p90_ms": max(samples),
        "min_ms": min(samples),
        "max_ms": max(samples),
        "std_ms": float(np.std(samples)),
        "n": len(samples),
        "timer": "perf_counter_ns",
    }


def write_run(
    root: Path,
    decoders: list[SynthDecoder],
    n_cases: int,
    metric_info: dict[str, bool | dict[str, Any]],
    suite: str = "synth",
    size: tuple[int, int] = (48, 48),
    prompts: list[str | None] | None = None,
    created: str = "2026-01-01T00:00:00.000+00:00",
    environment: dict[str, Any] | None = None,
    gates: list[dict[str, Any]] | None = None,
    dtype: str = "float32",
    suite_sha256: str | None = None,
    images: bool = True,
    notes: list[str] | None = None,
    cost: dict[str, Any] | None = None,
    energy: dict[str, Any] | None = None,
) -> Path:
    """Write a finished run; `metric_info` maps metric name → higher_is_better, or a direction
    ({"better": "target", "target": 1.0})."""
    root.mkdir(parents=True, exist_ok=True)
    cases = []
    for index in range(n_cases):
        case_id = f"item{index:04d}-{hashlib.sha256(f'{suite}{index}'.encode()).hexdigest()[:12]}"
        reference = f"references/{case_id[:20]}.png"
        case = CaseLine(
            id=case_id,
            item_id=f"set/item{index:04d}",
            seed=0,
            sigma=0.0,
            input_size=[size[0] // 4, size[1] // 4],
            output_size=list(size),
            prompt=prompts[index % len(prompts)] if prompts else None,
            reference=reference,
            reference_key=hashlib.sha256(case_id.encode()).hexdigest(),
            input_sha256="0" * 64,
            notes=[],
        )
        if images:
            _write_png(reference_image(index, size), root / reference)
        cases.append(case)
    (root / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    records: list[Record] = []
    for decoder in decoders:
        records.append(
            LoadRecord(
                kind="load",
                decoder=decoder.id,
                status="ok",
                pid=1,
                weights=decoder.weights,
                spawn_to_ready_ms=1500.0,
                import_ms=10.0,
                load_ms=100.0,
                facts={},
                device={"device": "cpu", "threads": 2},
                torch_state={},
            )
        )
        for index, case in enumerate(cases):
            records.append(_decode_record(root, decoder, index, case, images))
        records.extend(_metric_records(root, decoder, cases, metric_info, images))
    (root / "results.jsonl").write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in records))
    manifest = {
        "format": 1,
        "created": created,
        "finished": created,
        "decoderbench": "0.1.0",
        "status": "finished",
        "suite": {
            "name": suite,
            "sha256": suite_sha256 or hashlib.sha256(suite.encode()).hexdigest(),
            "path": f"/suites/{suite}.toml",
            "texts": {f"/suites/{suite}.toml": f'name = "{suite}"\n'},
            "resolved": {
                "name": suite,
                "description": f"constructed run of {suite}",
                "decoder": [{"name": d.name, "label": d.id, "params": {}} for d in decoders],
                "metrics": [{"name": m, "params": {}} for m in metric_info],
                "timing": {"device": "cpu", "dtype": dtype},
                "evaluation": {"device": "cpu"},
                "gate": gates or [],
                **({"cost": cost} if cost else {}),
            },
        },
        **({"energy": energy} if energy else {}),
        "environment": environment or ENVIRONMENT,
        "metrics": {
            name: {
                "family": "full_reference",
                **_direction_fields(higher),
                "version": "1",
                "protocol": {"name": name},
                "protocol_sha256": hashlib.sha256(name.encode()).hexdigest(),
                "summary": f"{name} (constructed)",
            }
            for name, higher in metric_info.items()
        },
        "notes": notes or [],
        "phases": [{"sources_s": 1.0, "decode_s": 2.0, "evaluate_s": 1.0, "wall_s": 4.0}],
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root


def _direction_fields(declared: bool | dict[str, Any]) -> dict[str, Any]:
    """The manifest's direction fields, as harness.evaluate.metric_info writes them."""
    if isinstance(declared, dict):
        return {"direction": declared, "higher_is_better": True, "target": declared.get("target")}
    return {"direction": {"better": "higher" if declared else "lower", "target": None},
            "higher_is_better": declared, "target": None}


def _decode_record(
    root: Path, decoder: SynthDecoder, index: int, case: CaseLine, images: bool
) -> DecodeRecord:
    record = DecodeRecord(
        kind="decode",
        decoder=decoder.id,
        case=case["id"],
        batch_size=decoder.batch_size,
        batch_id=f"{decoder.id}:{index // decoder.batch_size}",
        output_size=case["output_size"],
        request_size=case["output_size"],
    )
    if index in decoder.failures:
        status, message = decoder.failures[index]
        record.update(status=status, message=message, latency=None, memory=None)
        return record
    image = f"images/{decoder.id}/{case['id']}.png"
    sha = "0" * 64
    if images:
        rng = np.random.default_rng([index, sum(map(ord, decoder.id))])
        reference = reference_image(index, tuple(case["output_size"])).astype(np.float64)
        output = np.clip(reference + rng.normal(0, decoder.noise * 255, reference.shape), 0, 255)
        sha = _write_png((output + 0.5).astype(np.uint8), root / image)
    record.update(
        status="ok",
        image=image,
        image_sha256=sha,
        latency=_latency(decoder.latency_ms * decoder.batch_size, index - index % decoder.batch_size,
                         decoder.jitter),
        memory={
            "method": "linux_vmhwm_reset",
            "peak_rss_bytes": decoder.peak_bytes,
            "baseline_rss_bytes": decoder.peak_bytes // 2,
        },
        warmup={"n": 1, "first_call_ms": decoder.latency_ms * 3},
        native_size=case["output_size"],
        resampled=None,
        stage_ms={},
        facts={"quality_not_applicable": decoder.quality_not_applicable}
        if decoder.quality_not_applicable
        else {},
    )
    if decoder.energy_reason is not None:
        record["energy"] = {decoder.energy_kind: {"status": "not_measured", "reason": decoder.energy_reason}}
    elif decoder.energy_j is not None:
        per_image = decoder.energy_j * (1 + 0.01 * (index % 3 - 1))
        calls, block_s = 3, 3 * decoder.latency_ms / 1000
        record["energy"] = {decoder.energy_kind: {
            "status": "ok", "source": "nvml_total_energy", "gpu_uuid": "GPU-test",
            "energy_j": per_image * calls,
            "block_s": block_s, "calls": calls, "images": calls, "per_call_j": per_image,
            "per_image_j": per_image, "mean_power_w": per_image * calls / block_s, "reads": 5, "changes": 4,
            "update_interval_s": 0.02, "resolution": 0.02 / block_s, "min_block_s": 1.0}}
    return record


def _metric_records(
    root: Path, decoder: SynthDecoder, cases: list[CaseLine], metric_info: dict[str, Any], images: bool
) -> list[MetricRecord]:
    records = []
    for name in metric_info:
        value_of = decoder.metrics.get(name)
        for index, case in enumerate(cases):
            if index in decoder.failures or value_of is None:
                continue
            record = MetricRecord(
                kind="metric",
                decoder=decoder.id,
                case=case["id"],
                metric=name,
                version="1",
                protocol_sha256=hashlib.sha256(name.encode()).hexdigest(),
            )
            if decoder.quality_not_applicable:
                record.update(status="not_applicable", value=None, message=decoder.quality_not_applicable)
            else:
                value = value_of(index)
                if isinstance(value, str):
                    record.update(
                        status=value, value=None, message=f"{name} {value}: weights not found (test)"
                    )
                else:
                    record.update(status="ok", value=float(value))
            if name in decoder.artifacts and images:
                artifact = f"artifacts/{name}/{decoder.id}/{case['id']}.png"
                heat = (np.random.default_rng(index).random((16, 16)) * 255).astype(np.uint8)
                _write_png(np.repeat(heat[..., None], 3, axis=2), root / artifact)
                record["artifact"] = artifact
            records.append(record)
    return records


def write_judge(root: Path, decoders: list[str], case_ids: list[str], reason: str = "sharper text") -> None:
    """Judge records (both orders per pair and case) and judge.json, as the judge writes them."""
    records, pairs = [], []
    for i, a in enumerate(decoders):
        for b in decoders[i + 1 :]:
            for case in case_ids:
                for order in ("ab", "ba"):
                    records.append(
                        JudgeRecord(
                            kind="judge",
                            case=case,
                            a=a,
                            b=b,
                            order=order,
                            criterion="overall",
                            judge_model="test-judge",
                            status="ok",
                            verdict="a",
                            reason=reason,
                            cached=False,
                        )
                    )
            n = len(case_ids)
            pairs.append(
                {
                    "a": a,
                    "b": b,
                    "n": n,
                    "wins_a": n,
                    "wins_b": 0,
                    "ties": 0,
                    "inconsistent": 0,
                    "win_rate_a": 1.0,
                    "wilson95_a": [0.8, 1.0],
                }
            )
    with (root / "results.jsonl").open("a") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in records)
    ranking = [
        {
            "decoder": d,
            "strength": float(len(decoders) - i),
            "ci95": [len(decoders) - i - 0.5, len(decoders) - i + 0.5],
        }
        for i, d in enumerate(decoders)
    ]
    (root / "judge.json").write_text(
        json.dumps(
            {
                "criteria": {
                    "overall": {
                        "judge_model": "test-judge",
                        "template_version": "v1",
                        "pairs": pairs,
                        "bradley_terry": ranking,
                        "consistency_rate": 0.9,
                    }
                }
            }
        )
    )


def write_sweep(root: Path, decoder: str, sizes: list[int], oom_from: int) -> Path:
    """A memory-wall sweep run: memory grows with pixels, OOM from `oom_from` px on."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").write_text(
        json.dumps(
            {
                "format": 1,
                "kind": "sweep",
                "created": "2026-01-02",
                "status": "finished",
                "suite": {"name": f"sweep-{decoder}"},
                "environment": ENVIRONMENT,
            }
        )
    )
    records = []
    for side in sizes:
        record = SweepRecord(kind="sweep", decoder=decoder, size=[side, side])  # status: below
        if side >= oom_from:
            record.update(status="oom", latency=None, memory=None, message=f"CUDA out of memory at {side}px")
        else:
            record.update(
                status="ok",
                latency=_latency(side / 10, 0),
                memory={"method": "cuda_max_memory_allocated", "peak_allocated_bytes": side * side * 4000,
                        "peak_reserved_bytes": side * side * 7000},
                message=None,
            )
        records.append(record)
    (root / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root
