"""One decoder in one spawned process.

Why a process per decoder: loading some decoders changes process-wide torch
state (PiD sets manual_seed, cudnn.benchmark and TF32 on load), and a
segfault, OOM or hang must cost one case, not the run. The worker loads the
decoder once, then answers one `DecodeTask` at a time: inputs are read from
the latent cache (or arrive as bytes) and moved to the device, warm-up runs
once per input shape, `measure()` times the repeats, and only then — outside
every timed region — the output is checked, brought to the comparison size
and quantized; the 8-bit pixels go back to the runner, whose background
writer encodes and stores them (harness.workers.writer). A process loads one
decoder, ever (`load_decoder` refuses a second).

The parent side is harness.workers.process.WorkerProcess with `worker_main`
as its target.
"""

from __future__ import annotations

import faulthandler
import math
import os
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, load_file

from decoders.base import DecodeBatch, Decoder, DecoderUnavailable
from decoders.plugins import unavailable_reason
from decoders.registry import DECODERS
from decoders.resample import resize
from harness import images
from harness.records import DecodeRecord
from harness.sources.cache import tensor_sha256
from harness.workers.channel import (
    CaseInput,
    DecodeTask,
    Loaded,
    LoadFailed,
    TaskDone,
    WorkerJob,
)
from harness.workers.energy import meter_for
from harness.workers.measure import (
    is_oom,
    measure,
    memory_at_failure,
    release_memory,
    resident_bytes,
    time_call,
)
from harness.workers.process import (
    device_facts,
    die_with_parent,
    excerpt,
    exits_fast,
    placement,
    redirect_output,
    torch_state,
)

RANGE_TOLERANCE = 1e-3  # decoders must return [0, 1]; float noise beyond this is a bug


@exits_fast
def worker_main(conn: Any, job: WorkerJob) -> None:
    redirect_output(Path(job.log_path))
    faulthandler.enable()
    die_with_parent()
    decoder, reply, loaded_rss_bytes = load_decoder(job)
    conn.send(reply)
    if decoder is None:
        return
    warmed: set[Any] = set()
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(serve_task(decoder, job, task, warmed, loaded_rss_bytes))


_loaded_in_this_process: str | None = None  # isolation: one decoder per process, ever


def load_decoder(job: WorkerJob) -> tuple[Decoder | None, Loaded | LoadFailed, int | None]:
    """Load the job's decoder in this process: (decoder, Loaded, loaded RSS) or (None, LoadFailed).

    The same code for every executor (a local worker process, a Ray actor)."""
    global _loaded_in_this_process
    pid = os.getpid()
    if _loaded_in_this_process is not None:  # a reused process would leak global torch state
        return None, LoadFailed(pid, "error", f"process {pid} already loaded decoder "
                                f"{_loaded_in_this_process!r}: refusing to reuse it"), None
    _loaded_in_this_process = job.decoder_id
    if job.device.startswith("cuda") and torch.cuda._is_in_bad_fork():
        return None, LoadFailed(pid, "error", "this worker was forked from a process that had "
                                "initialised CUDA (a module the forkserver preloads?); run with "
                                "DECODERBENCH_START_METHOD=spawn and report the module"), None
    try:
        begin = time.perf_counter()
        cls = DECODERS.get(job.decoder_name)
        import_ms = (time.perf_counter() - begin) * 1e3
        decoder = cls(cls.Params.model_validate(job.params))
        device, dtype = torch.device(job.device), getattr(torch, job.dtype)
        if job.threads:
            torch.set_num_threads(job.threads)
        begin = time.perf_counter()
        decoder.load(device, dtype)
        load_ms = (time.perf_counter() - begin) * 1e3
        loaded_rss_bytes = resident_bytes() if device.type == "cpu" else None
        loaded = Loaded(  # describing the device asks the driver: no NVIDIA driver fails here
            pid=pid, import_ms=import_ms, load_ms=load_ms,
            weights=decoder.weights(), facts=decoder.facts(),
            device=device_facts(device), torch_state=torch_state(), placement=placement(device),
        )
    except DecoderUnavailable as exc:
        return None, LoadFailed(pid, "unavailable", str(exc)), None
    except ImportError as exc:  # a library the decoder needs is missing: what to install
        return None, LoadFailed(pid, "unavailable", unavailable_reason(exc)), None
    except Exception as exc:
        status = "oom" if is_oom(exc) else "error"
        return None, LoadFailed(pid, status, f"{type(exc).__name__}: {exc}", excerpt(exc)), None
    return decoder, loaded, loaded_rss_bytes


def serve_task(decoder: Decoder, job: WorkerJob, task: DecodeTask, warmed: set[Any],
               loaded_rss_bytes: int | None) -> TaskDone:
    """One task, answered as the runner wants it: records plus the ok outputs' pixels."""
    with torch.inference_mode():  # no autograd graph: it would inflate memory and latency
        records, pixels = run_task(decoder, job, task, warmed, loaded_rss_bytes)
    images = tuple(image.numpy() if image is not None else None for image in pixels)
    return TaskDone(tuple(records), images)


Outputs = tuple[list[DecodeRecord], list[torch.Tensor | None]]


def run_task(
    decoder: Decoder, job: WorkerJob, task: DecodeTask, warmed: set[Any],
    loaded_rss_bytes: int | None = None,
) -> Outputs:
    """Decode one task: its records, and each ok output as uint8 [3, H, W] on the CPU (None for a
    case without an output). Nothing is written here: the runner's writer stores the images."""
    device, dtype = torch.device(job.device), getattr(torch, job.dtype)
    where = placement(device)
    began = time.perf_counter()
    records = [_record(case, task, job, where) for case in task.cases]
    try:
        latents, received = _load_inputs(task, device, dtype)
    except Exception as exc:
        return _failed(records, "error", f"cannot load inputs: {exc}", excerpt(exc))
    for record, sha in zip(records, received, strict=True):
        record["input_sha256"] = sha
        record["input_shape"] = list(latents.shape[1:]) if latents is not None else None
    batch = DecodeBatch(
        latents=latents, input_size=task.input_size, output_size=task.request_size,
        seeds=[c.seed for c in task.cases], sigmas=[c.sigma for c in task.cases],
        prompts=[c.prompt for c in task.cases],
    )
    try:
        meter = meter_for(device, job.energy_min_block_s) if job.energy else None
        warm = _warm_up(decoder, batch, job, device, warmed)
        measured = measure(lambda: decoder.decode(batch), job.repeats, device, loaded_rss_bytes,
                           job.repeat_budget_s, meter, len(task.cases))
    except Exception as exc:
        failed_after_ms = (time.perf_counter() - began) * 1e3
        status = "oom" if is_oom(exc) else "error"
        failed = _failed(records, status, f"{type(exc).__name__}: {exc}", excerpt(exc))
        # The traceback's frames hold the failed call's tensors: drop them before releasing memory,
        # or the allocator keeps what the OOM was about and the next case inherits it.
        traceback.clear_frames(exc.__traceback__)
        del exc, batch, latents
        release_memory(device)
        if status == "oom":
            after = memory_at_failure(device)
            for record in failed[0]:
                record.update(failed_size=list(task.request_size), failed_after_ms=failed_after_ms,
                              memory_after_release=after)
        return failed
    shared = {
        "latency": measured.latency.as_dict(), "memory": measured.memory, "warmup": warm,
        "stage_ms": decoder.stage_times_ms(), "facts": decoder.facts(),
    }
    if measured.energy is not None:
        shared["energy"] = measured.energy
    for record in records:
        record.update(shared)
    output, measured.output = measured.output, None
    return _finish_outputs(output, task, job, records)


def _warm_up(
    decoder: Decoder, batch: DecodeBatch, job: WorkerJob, device: torch.device, warmed: set[Any]
) -> dict[str, Any] | None:
    shape = tuple(batch.latents.shape) if batch.latents is not None else batch.size
    key = (shape, batch.output_size)
    worker_first_call = not warmed  # the first call this process makes: part of its cold start
    if key in warmed or job.warmup == 0:
        warmed.add(key)
        return None
    calls_ms = []
    for _ in range(job.warmup):
        output, elapsed_ms = time_call(lambda: decoder.decode(batch), device)
        del output
        calls_ms.append(elapsed_ms)
    warmed.add(key)
    return {"n": job.warmup, "first_call_ms": calls_ms[0], "total_ms": sum(calls_ms),
            "worker_first_call": worker_first_call}


def _load_inputs(
    task: DecodeTask, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor | None, list[str | None]]:
    if all(case.input_path is None for case in task.cases):
        return None, [None] * len(task.cases)
    tensors, received = [], []
    for case in task.cases:
        if case.input_data is not None:
            tensor = load(case.input_data)["latent"]
        else:
            tensor = load_file(case.input_path)["latent"]
        sha = tensor_sha256(tensor)
        if case.input_sha256 is not None and sha != case.input_sha256:
            raise ValueError(f"cached input for {case.case_id} changed on disk (sha256 {sha})")
        tensors.append(tensor)
        received.append(sha)
    return torch.stack(tensors).to(device=device, dtype=dtype), received


def _finish_outputs(output: Any, task: DecodeTask, job: WorkerJob, records: list[dict[str, Any]]) -> Outputs:
    """Check the output, bring it to the comparison size, quantize it (outside the timed region)."""
    problem = _output_problem(output, len(task.cases)) or _size_problem(output, task)
    if problem is not None:
        return _failed(records, "invalid_output", problem, "", keep_measurements=True)
    output = output.float()
    native = (output.shape[-1], output.shape[-2])
    resampled = None
    if native != task.compare_size:
        output = resize(output, task.compare_size, job.compare_resampler)  # type: ignore[arg-type]
        resampled = {"from": list(native), "method": job.compare_resampler}
    pixels = images.quantize(output).cpu()
    for record, case in zip(records, task.cases, strict=True):
        record.update(status="ok", native_size=list(native), resampled=resampled, image=case.image_path)
    return records, list(pixels)


def _output_problem(output: Any, batch_size: int) -> str | None:
    if not isinstance(output, torch.Tensor):
        return f"decoder returned {type(output).__name__}, expected a tensor"
    if output.ndim != 4 or output.shape[0] != batch_size or output.shape[1] != 3:
        return f"decoder returned shape {list(output.shape)}, expected [{batch_size}, 3, H, W]"
    if not output.is_floating_point():
        return f"decoder returned dtype {output.dtype}, expected floats in [0, 1]"
    low, high = (float(v) for v in torch.aminmax(output))  # one pass; NaN and ±Inf show in it
    if not (math.isfinite(low) and math.isfinite(high)):
        bad = int((~torch.isfinite(output)).sum())
        return f"decoder output has {bad} non-finite values (NaN/Inf) of {output.numel()}"
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        return f"decoder output spans [{low:.4g}, {high:.4g}]; the protocol requires [0, 1]"
    return None


def _size_problem(output: torch.Tensor, task: DecodeTask) -> str | None:
    """An output is the size the decoder was asked for (its native size for this input) or the
    comparison size; anything else — a 10×10 image for a 256×256 request, a changed aspect ratio —
    is no output of this case, and resampling it would rank what was never decoded."""
    size = (int(output.shape[-1]), int(output.shape[-2]))
    if size in (task.request_size, task.compare_size):
        return None
    asked = f"{task.request_size[0]}×{task.request_size[1]}"
    if task.compare_size != task.request_size:
        asked += f" (or the comparison size {task.compare_size[0]}×{task.compare_size[1]})"
    return (f"decoder returned {size[0]}×{size[1]} images; it was asked for {asked} from a "
            f"{task.input_size[0]}×{task.input_size[1]} input")


def _record(case: CaseInput, task: DecodeTask, job: WorkerJob, where: dict[str, Any]) -> DecodeRecord:
    """A case's decode record before its status is known (every path below sets it)."""
    return DecodeRecord(
        kind="decode", decoder=job.decoder_id, case=case.case_id, status=None,  # type: ignore[typeddict-item]
        batch_size=len(task.cases), batch_id=f"{os.getpid()}:{task.cases[0].case_id}",
        request_size=list(task.request_size), output_size=list(task.compare_size),
        worker_pid=os.getpid(), placement=where,
    )


def _failed(
    records: list[dict[str, Any]], status: str, message: str, trace: str,
    keep_measurements: bool = False,
) -> Outputs:
    for record in records:
        record.update(status=status, message=message, traceback=trace or None)
        if not keep_measurements:
            record.update(latency=None, memory=None)
    return records, [None] * len(records)
