"""The typed messages between the runner and a decoder worker process.

The parent sends a `WorkerJob` at start, then `DecodeTask`s (None to stop;
a task may be queued while the previous one runs); the worker answers
`Loaded` or `LoadFailed` once, then one `TaskDone` per task, in order.
Messages are frozen dataclasses sent over a multiprocessing pipe (or as
Ray actor calls); anything else arriving is a protocol error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class WorkerJob:
    decoder_id: str
    decoder_name: str
    params: dict[str, Any]
    device: str
    dtype: str
    warmup: int
    repeats: int | str  # a count, or "auto" (until the median is known to ± 2 % or the budget ends)
    threads: int | None
    compare_resampler: str
    run_dir: str
    log_path: str
    repeat_budget_s: float = 10.0  # repeats = "auto": the time budget of one task's timed calls
    energy: bool = True  # read the energy counters around the timed calls (harness.workers.energy)
    energy_min_block_s: float = 1.0  # a shorter block of timed calls is lengthened


@dataclass(frozen=True)
class CaseInput:
    case_id: str
    input_path: str | None  # cached latent (safetensors); None for prompt decoders
    input_sha256: str | None
    seed: int
    sigma: float
    prompt: str | None
    image_path: str  # relative to the run dir
    input_data: bytes | None = None  # the cached file's bytes, where workers cannot read the cache (Ray)


@dataclass(frozen=True)
class DecodeTask:
    cases: tuple[CaseInput, ...]
    input_size: tuple[int, int]
    request_size: tuple[int, int]
    compare_size: tuple[int, int]


@dataclass(frozen=True)
class Loaded:
    pid: int
    import_ms: float
    load_ms: float
    weights: dict[str, str]
    facts: dict[str, Any]
    device: dict[str, Any]
    torch_state: dict[str, Any]
    placement: dict[str, Any] = field(default_factory=dict)  # host, GPU index and model


@dataclass(frozen=True)
class LoadFailed:
    pid: int
    status: str
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class TaskDone:
    """The task's records and, aligned with them, each ok output as uint8 [3, H, W] at the
    comparison size (None where there is none): the runner's writer encodes and stores them."""

    records: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    images: tuple[Any, ...] = field(default_factory=tuple)


FromWorker = Loaded | LoadFailed | TaskDone


# --------------------------------------------------------------------------- source worker
# The encoder or text-to-image pipeline that makes a suite's inputs runs in its own spawned
# process on the suite's device (the runner never initialises CUDA). It answers `Loaded` or
# `LoadFailed` once, then one `SourceOutput` or `SourceFailed` per request.


@dataclass(frozen=True)
class SourceJob:
    component: str  # "encoder" (registry name in `name`) or "pipeline" (text-to-image)
    name: str
    params: dict[str, Any]
    device: str
    threads: int | None
    log_path: str


@dataclass(frozen=True)
class EncodeRequest:
    images: Any  # float32 [B, 3, H, W] in [0, 1], CPU


@dataclass(frozen=True)
class GenerateRequest:
    prompts: tuple[str, ...]
    seed: int
    size: tuple[int, int]  # (width, height) of the generated image


@dataclass(frozen=True)
class SourceOutput:
    latents: Any  # float32 [B, C, h, w], CPU
    sigma: float | None = None  # noise level of a latent captured before the last step


@dataclass(frozen=True)
class SourceFailed:
    message: str
    traceback: str = ""
