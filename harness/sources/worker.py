"""The process that makes a suite's inputs: a learned encoder or a text-to-image pipeline.

It runs in its own process, on the suite's device, like a decoder worker (harness.workers.worker):
the runner process never initialises CUDA, and the model is gone before any
decoder is measured. The parent side (`SourceWorker`) starts it only when
the cache misses, sends one request at a time and turns every failure into
a `SourceWorkerFailed` with the reason.
"""

from __future__ import annotations

import faulthandler
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from decoders.base import DecoderUnavailable
from decoders.plugins import Params, unavailable_reason
from decoders.registry import ENCODERS
from decoders.t2i import PipelineParams, TextToLatent, pipeline_weights
from harness.sources.items import SourceError
from harness.suite import Suite
from harness.workers.channel import (
    EncodeRequest,
    GenerateRequest,
    Loaded,
    LoadFailed,
    SourceFailed,
    SourceJob,
    SourceOutput,
)
from harness.workers.measure import time_call
from harness.workers.process import (
    WorkerGone,
    WorkerProcess,
    device_facts,
    die_with_parent,
    excerpt,
    exits_fast,
    redirect_output,
    torch_state,
)


class SourceWorkerFailed(SourceError):
    pass


# =========================================================================== child side


def _load(job: SourceJob, device: torch.device) -> Any:
    if job.component == "pipeline":
        return TextToLatent(PipelineParams.model_validate(job.params), device)
    cls = ENCODERS.get(job.name)
    encoder = cls(cls.Params.model_validate(job.params))
    encoder.load(device, torch.float32)
    return encoder


def _answer(model: Any, request: Any, device: torch.device) -> SourceOutput:
    with torch.no_grad():
        if isinstance(request, EncodeRequest):
            return SourceOutput(model.encode(request.images.to(device)).float().cpu())
        if isinstance(request, GenerateRequest):
            latents, sigma = model.generate(list(request.prompts), request.seed, request.size)
            return SourceOutput(latents, sigma)
    raise TypeError(f"unexpected request {type(request).__name__}")


@exits_fast
def source_worker_main(conn: Any, job: SourceJob) -> None:
    redirect_output(Path(job.log_path))
    faulthandler.enable()
    die_with_parent()
    pid, device = os.getpid(), torch.device(job.device)
    if job.threads:
        torch.set_num_threads(job.threads)
    try:
        model, load_ms = time_call(lambda: _load(job, device), device)
    except DecoderUnavailable as exc:
        conn.send(LoadFailed(pid, "unavailable", str(exc)))
        return
    except ImportError as exc:
        conn.send(LoadFailed(pid, "unavailable", unavailable_reason(exc)))
        return
    except Exception as exc:
        conn.send(LoadFailed(pid, "error", f"{type(exc).__name__}: {exc}", excerpt(exc)))
        return
    facts = model.facts() if isinstance(model, TextToLatent) else {}
    conn.send(Loaded(pid=pid, import_ms=0.0, load_ms=load_ms, weights={}, facts=facts,
                     device=device_facts(device), torch_state=torch_state()))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        try:
            conn.send(_answer(model, request, device))
        except Exception as exc:
            conn.send(SourceFailed(f"{type(exc).__name__}: {exc}", excerpt(exc)))


# =========================================================================== parent side


class SourceWorker:
    """Spawn on construction, load, then answer requests; `close()` when done."""

    def __init__(self, job: SourceJob, load_timeout_s: float, timeout_s: float) -> None:
        self.job, self.timeout_s = job, timeout_s
        self.what = f"source {job.component} {job.name!r}"
        self._process = WorkerProcess(job, target=source_worker_main, name="decoderbench-source")
        reply = self._process.receive(load_timeout_s)
        if isinstance(reply, Loaded):
            self.loaded = reply
            return
        self._process.close()
        if isinstance(reply, LoadFailed):
            raise SourceWorkerFailed(f"{self.what} {reply.status}: {reply.message}")
        reason = reply.reason if isinstance(reply, WorkerGone) else f"protocol error: {reply!r}"
        raise SourceWorkerFailed(f"{self.what} failed to start: {reason}")

    def request(self, request: EncodeRequest | GenerateRequest) -> SourceOutput:
        try:
            self._process.send(request)
        except (BrokenPipeError, OSError):
            raise SourceWorkerFailed(f"{self.what}: worker process is gone") from None
        reply = self._process.receive(self.timeout_s)
        if isinstance(reply, SourceOutput):
            return reply
        if isinstance(reply, SourceFailed):
            raise SourceWorkerFailed(f"{self.what} failed: {reply.message}\n{reply.traceback}")
        reason = reply.reason if isinstance(reply, WorkerGone) else f"protocol error: {reply!r}"
        raise SourceWorkerFailed(f"{self.what}: {reason}")

    def close(self) -> None:
        self._process.close()


# =========================================================================== the handle


class SourceModel:
    """A suite's encoder or pipeline: in this process when cheap and weight-free, else spawned.

    Nothing is loaded until the first cache miss; `weights()` resolves and hashes the weight
    files without loading a model, for cache keys.
    """

    def __init__(self, suite: Suite, component: str, name: str, params: Params, in_process: bool,
                 weights: Callable[[], dict[str, str]], log_dir: Path) -> None:
        timing = suite.model.timing
        self.component, self.name, self.params, self.in_process = component, name, params, in_process
        self.device_type = torch.device(timing.device).type
        self._job = SourceJob(component=component, name=name, params=params.model_dump(mode="json"),
                              device=timing.device, threads=timing.threads,
                              log_path=str(log_dir / "source.log"))
        self._timeouts = (timing.load_timeout_s, timing.timeout_s)
        self._weights_fn, self._weights = weights, None
        self._local: Any = None
        self._worker: SourceWorker | None = None

    @classmethod
    def for_suite(cls, suite: Suite, log_dir: Path) -> SourceModel | None:
        source = suite.model.source
        if source.kind == "images":
            encoder = ENCODERS.get(source.encoder.name)
            params = suite.encoder_params
            return cls(suite, "encoder", source.encoder.name, params,
                       encoder.spec_for(params).in_process, lambda: encoder(params).weights(), log_dir)
        if source.kind == "prompts" and source.pipeline is not None:
            pipeline = source.pipeline
            return cls(suite, "pipeline", pipeline.family, pipeline, False,
                       lambda: pipeline_weights(pipeline), log_dir)
        return None

    def weights(self) -> dict[str, str]:
        if self._weights is None:
            try:
                self._weights = self._weights_fn()
            except DecoderUnavailable as exc:
                raise SourceError(f"source {self.component} {self.name!r} unavailable: {exc}") from None
        return self._weights

    def describe(self) -> dict[str, Any]:
        facts = {"component": self.component, "name": self.name,
                 "params": self.params.model_dump(mode="json"), "weights": self.weights(),
                 "device": "cpu" if self.in_process else self._job.device,
                 "process": "runner" if self.in_process else "source worker",
                 "pid": self._worker.loaded.pid if self._worker is not None else None,
                 "facts": self._worker.loaded.facts if self._worker is not None else {}}
        if facts["params"].get("weights") == "random":
            facts["quality_not_applicable"] = (
                f"random-weight {self.component} {self.name!r} upstream: the inputs are not those of a "
                "trained model, so no decoder's quality on them means anything (performance only)")
        return facts

    def _remote(self) -> SourceWorker:
        if self._worker is None:
            self._worker = SourceWorker(self._job, *self._timeouts)
        return self._worker

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if not self.in_process:
            return self._remote().request(EncodeRequest(images)).latents
        if self._local is None:
            self._local = _load(self._job, torch.device("cpu"))
        with torch.no_grad():
            return self._local.encode(images).float()

    def generate(self, prompt: str, seed: int, size: tuple[int, int]) -> tuple[torch.Tensor, float]:
        output = self._remote().request(GenerateRequest((prompt,), seed, size))
        return output.latents, float(output.sigma or 0.0)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.close()
            self._worker = None
