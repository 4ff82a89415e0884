"""Baselines: the golden results of a run that gates compare later runs against.

`decoderbench baseline save RUN_DIR --name NAME` writes baselines/NAME.json:
per decoder its weights digest, decode statuses, latency and peak memory per
comparison size, and per metric the per-case values, summary, direction and
protocol hash; plus the suite hash, the run's environment fingerprint and,
from it, the facts that make latency and memory comparable. Output images, which distance gates
(fraction_exceeding) and pixel-exact gates need, are copied next to it
(baselines/NAME/<decoder>/<case>.png), referenced in the source run
(`--images link`), or left out (`--images none`).

The same `snapshot()` describes a fresh run, so a gate compares like with like.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.store import atomic_write_text, link_or_copy, now_iso, writable_dir
from reports.aggregate import RunView, load_run

BASELINE_FORMAT = 1
ImagesMode = Literal["copy", "link", "none"]
# Packages whose version is the code under test, not the environment.
NOT_ENVIRONMENT = frozenset({"decoderbench"})


class BaselineError(ValueError):
    pass


@dataclass
class Baseline:
    path: Path
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return self.data["name"]

    @property
    def images_root(self) -> Path | None:
        """Where the baseline's output images are, or None when it holds none."""
        images = self.data.get("images") or {}
        if images.get("mode") == "copy":
            return self.path.parent / images["dir"]
        if images.get("mode") == "link":
            return Path(images["run_dir"])
        return None


def environment_facts(view: RunView) -> dict[str, Any]:
    """The facts that must match for latency and memory to be comparable."""
    manifest = view.manifest
    env = manifest.get("environment") or {}
    timing = manifest["suite"]["resolved"].get("timing") or {}
    worker_gpus = sorted({(load.get("device") or {}).get("gpu_name") for load in view.loads.values()}
                         - {None})
    facts: dict[str, Any] = {
        "device": timing.get("device"), "dtype": timing.get("dtype"),
        "python": env.get("python"), "torch": env.get("torch"), "torch_cuda": env.get("torch_cuda"),
        "cudnn": env.get("cudnn"),
        "packages": {k: v for k, v in (env.get("packages") or {}).items() if k not in NOT_ENVIRONMENT},
    }
    if str(timing.get("device", "cpu")).startswith("cpu"):  # what the decoders ran on
        facts["cpu"] = env.get("cpu")
    else:
        facts["gpus"] = worker_gpus or sorted(g.get("name") for g in env.get("gpus") or [])
    return facts


def snapshot(view: RunView) -> dict[str, Any]:
    """What a gate needs from a run, in the baseline's JSON layout."""
    decoders: dict[str, Any] = {}
    for decoder in view.decoders:
        rows = [row for row in view.rows if row.decoder == decoder]
        statuses: dict[str, int] = {}
        for row in rows:
            for status, count in row.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        decoders[decoder] = {
            "checkpoint": view.checkpoint(decoder),
            "weights": (view.loads.get(decoder) or {}).get("weights") or {},
            "decode_statuses": statuses,
            "failures": [message for row in rows for message in row.failures],
            "sizes": {f"{row.size[0]}x{row.size[1]}": {
                # per image, from calls of `batch_size` images only
                "latency_median_ms": row.image_latency(0.5), "latency_p90_ms": row.image_latency(0.9),
                "call_latency_median_ms": row.call_latency(0.5), "batch_size": row.batch_size,
                "latency_spread": row.latency_spread,
                "peak_memory_bytes": row.peak_memory_bytes, "memory_kind": row.memory_headline_kind,
                "memory": row.memory, "memory_method": row.memory_method,
                **_energy_entry(row), "decode_statuses": row.statuses,
            } for row in rows},
            "metrics": {name: _metric_entry(view, decoder, name) for name in view.metric_names},
            "outputs": {case: {"image": record["image"], "sha256": record.get("image_sha256")}
                        for (d, case), record in view.decodes.items()
                        if d == decoder and record["status"] == "ok" and record.get("image")},
        }
    manifest = view.manifest
    return {
        "suite": {"name": manifest["suite"]["name"], "sha256": manifest["suite"]["sha256"]},
        "run": {"dir": str(view.run_dir.resolve()), "created": manifest.get("created"),
                "git": (manifest.get("environment") or {}).get("git")},
        "environment": environment_facts(view),
        "fingerprint": manifest.get("environment"),
        "evaluation_device": (manifest["suite"]["resolved"].get("evaluation") or {}).get("device")
        or (manifest["suite"]["resolved"].get("timing") or {}).get("device", "cpu"),
        "decoders": decoders,
    }


def _energy_entry(row: Any) -> dict[str, Any]:
    """The decoding device's energy per image (calls of `batch_size`), which counter gave it, or why
    there is none (recorded since energy was measured)."""
    energy = row.device_energy
    if energy is None:
        return {}
    return {"energy_per_image_j": energy.per_image_j, "energy_counter": energy.kind,
            "energy_low_resolution": energy.low_resolution, "energy_reason": energy.reason or None}


def _metric_entry(view: RunView, decoder: str, metric: str) -> dict[str, Any]:
    summary = view.metric_over_sizes(decoder, metric)
    info = view.metric_info.get(metric) or {}
    direction = view.direction(metric)
    return {
        "direction": direction.as_dict() if direction else None,
        "protocol_sha256": info.get("protocol_sha256"),
        "n": summary.n, "mean": summary.mean, "ci95": summary.ci95, "values": summary.per_case,
        "statuses": summary.statuses, "messages": summary.messages,
    }


def save_baseline(run_dir: Path, name: str, directory: Path, images: ImagesMode = "copy") -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise BaselineError(f"baseline name {name!r}: use letters, digits, '.', '_' and '-'")
    view = load_run(run_dir)
    if images != "none":
        _check_outputs(view)
    data = {"format": BASELINE_FORMAT, "name": name, "created": now_iso(), **snapshot(view)}
    writable_dir(directory, "baselines folder")
    if images == "copy":
        for decoder in data["decoders"].values():
            for output in decoder["outputs"].values():
                link_or_copy(run_dir / output["image"], directory / name / output["image"])
        data["images"] = {"mode": "copy", "dir": name}
    elif images == "link":
        data["images"] = {"mode": "link", "run_dir": str(run_dir.resolve())}
    else:
        data["images"] = {"mode": "none"}
    target = directory / f"{name}.json"
    atomic_write_text(target, json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")
    return target


def _check_outputs(view: RunView) -> None:
    """A baseline never claims an output image that is gone or is not what the run recorded."""
    from harness import images

    bad = [f"{path} (missing)" for path in view.missing_images]
    for record in view.decodes.values():
        path = view.run_dir / record["image"] if record["status"] == "ok" and record.get("image") else None
        if path is None or not path.is_file() or not record.get("image_sha256"):
            continue
        try:
            pixels = images.read_png(path)
        except Exception as exc:  # a truncated or foreign file in images/
            bad.append(f"{record['image']} (unreadable: {exc})")
            continue
        if images.pixels_sha256(pixels) != record["image_sha256"]:
            bad.append(f"{record['image']} (sha256 differs from its decode record)")
    if bad:
        shown = "; ".join(bad[:10]) + (f"; and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise BaselineError(f"{view.run_dir}: {len(bad)} output image(s) cannot go into a baseline: {shown}. "
                            f"Resume the run (`decoderbench run --resume {view.run_dir}`) to decode them "
                            "again, or save with --images none")


def load_baseline(path: Path) -> Baseline:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BaselineError(f"baseline {path} not found; create it with "
                            "`decoderbench baseline save RUN_DIR --name NAME`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BaselineError(f"cannot read baseline {path}: {exc}") from None
    if data.get("format") != BASELINE_FORMAT:
        raise BaselineError(f"{path}: baseline format {data.get('format')} is not supported "
                            f"(expected {BASELINE_FORMAT}); re-save it")
    return Baseline(path, data)
