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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import DecoderbenchError
from harness.store import (
    INFRASTRUCTURE_ERROR,
    NonFinite,
    PathProblem,
    atomic_write_text,
    inside,
    link_or_copy,
    loads_finite,
    now_iso,
    read_regular,
    stored_path_problem,
    writable_dir,
)
from harness.view import RunView, load_run

BASELINE_FORMAT = 1
ImagesMode = Literal["copy", "link", "none"]
# Packages whose version is the code under test, not the environment.
NOT_ENVIRONMENT = frozenset({"decoderbench"})


class BaselineError(DecoderbenchError, ValueError):
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
            return inside(self.path.parent, images["dir"])
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
    require_clean(view, "a baseline")
    if images != "none":
        _check_outputs(view)
    data = {"format": BASELINE_FORMAT, "name": name, "created": now_iso(), **snapshot(view)}
    writable_dir(directory, "baselines folder")
    if images == "copy":
        for decoder in data["decoders"].values():
            for output in decoder["outputs"].values():  # both ends checked: a record names any path
                link_or_copy(inside(run_dir, output["image"]), inside(directory / name, output["image"]))
        data["images"] = {"mode": "copy", "dir": name}
    elif images == "link":
        data["images"] = {"mode": "link", "run_dir": str(run_dir.resolve())}
    else:
        data["images"] = {"mode": "none"}
    target = directory / f"{name}.json"
    atomic_write_text(target, json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")
    return target


def require_clean(view: RunView, what: str) -> None:
    """A baseline or a gate verdict is made from a run's own, complete records only: records that
    do not belong to the run, or units an environment failure stopped, are refused (resume first)."""
    resume = f"`decoderbench run --resume {view.run_dir}`"
    if view.set_aside:
        raise BaselineError(f"{view.run_dir}: {len(view.set_aside)} record(s) do not belong to this run "
                            f"({view.set_aside[0]}): no {what} from it until {resume} has moved them aside")
    stopped = sum(1 for record in view.decodes.values() if record["status"] == INFRASTRUCTURE_ERROR)
    if stopped:
        raise BaselineError(f"{view.run_dir}: {stopped} unit(s) were stopped by the environment "
                            f"(infrastructure_error): the run is incomplete; {resume} runs them, then make "
                            f"{what}")


def _check_outputs(view: RunView) -> None:
    """A baseline never claims an output image that is gone or is not what the run recorded."""
    from harness import images

    bad = [f"{path} (missing)" for path in view.missing_images]
    for record in view.decodes.values():
        path = inside(view.run_dir, record["image"]) if record["status"] == "ok" and record.get("image") \
            else None
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


MAX_BASELINE_BYTES = 1 << 30


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Output(_Loose):
    image: str
    sha256: str | None = None


class _MetricEntry(_Loose):
    values: dict[str, float | None] = Field(default_factory=dict)
    statuses: dict[str, int] = Field(default_factory=dict)
    messages: list[str] = Field(default_factory=list)


class _BaselineDecoder(_Loose):
    sizes: dict[str, dict[str, Any]]
    metrics: dict[str, _MetricEntry]
    outputs: dict[str, _Output] = Field(default_factory=dict)
    decode_statuses: dict[str, int] = Field(default_factory=dict)
    failures: list[str] = Field(default_factory=list)


class _Images(_Loose):
    mode: Literal["copy", "link", "none"]
    dir: str | None = None
    run_dir: str | None = None


class _SuiteRef(_Loose):
    name: str
    sha256: str


class _BaselineFile(_Loose):
    format: int
    name: str
    suite: _SuiteRef
    environment: dict[str, Any]
    decoders: dict[str, _BaselineDecoder]
    images: _Images = _Images(mode="none")


def load_baseline(path: Path) -> Baseline:
    """A baseline file, checked: what gates read is there, every stored path stays in its folder;
    BaselineError in one line naming the file (and the key) otherwise."""
    try:
        raw = read_regular(path, MAX_BASELINE_BYTES)
    except PathProblem as exc:
        if str(exc) == "not found":
            raise BaselineError(f"baseline {path} not found; create it with "
                                "`decoderbench baseline save RUN_DIR --name NAME`") from None
        raise BaselineError(f"baseline {path}: cannot read: {exc}") from None
    try:
        data = loads_finite(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BaselineError(f"{path}: not UTF-8 text: a baseline is the JSON `decoderbench baseline save` "
                            "writes") from None
    except NonFinite as exc:
        raise BaselineError(f"{path}: a number that is not finite ({exc}); restore the file") from None
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise BaselineError(f"{path}: expected a JSON object (a baseline), got {type(data).__name__}")
    if data.get("format") != BASELINE_FORMAT:
        raise BaselineError(f"{path}: baseline format {data.get('format')} is not supported "
                            f"(expected {BASELINE_FORMAT}); re-save it")
    try:
        _BaselineFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        what = "required key is missing" if error["type"] == "missing" else \
            error["msg"].replace("Input should be", "expected")
        raise BaselineError(f"{path}: {where}: {what}; re-save the baseline") from None
    _check_paths(path, data)
    return Baseline(path, data)


def _check_paths(path: Path, data: dict[str, Any]) -> None:
    """Every output image a baseline names, and its copy folder, stay inside the baseline's folders."""
    images = data.get("images") or {}
    if images.get("mode") == "copy":
        problem = stored_path_problem(images.get("dir"))
        if problem is not None:
            raise BaselineError(f"{path}: images.dir: {problem}")
    for decoder, entry in data["decoders"].items():
        for case, output in entry.get("outputs", {}).items():
            problem = stored_path_problem(output["image"])
            if problem is not None:
                raise BaselineError(f"{path}: decoders.{decoder}.outputs.{case}.image: {problem}")
