"""The memory wall: the largest output size a decoder decodes before memory runs out.

A bisection on the square output side, each size in a fresh worker, writing a sweep directory of
its own (docs/memory-wall.md).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from decoders.base import Consumes, DecoderSpec
from decoders.registry import DECODERS
from decoders.spaces import LatentSpace
from harness import __version__
from harness.env import fingerprint
from harness.errors import DecoderbenchError
from harness.images import pixels_sha256
from harness.progress import Reporter
from harness.records import SweepRecord
from harness.runner import OK
from harness.sources.cache import tensor_sha256
from harness.sources.listing import list_items
from harness.sources.prepare import source_space
from harness.store import RunStore, now_iso
from harness.suite import MAX_SIDE, Suite
from harness.view import MEMORY_KINDS, format_bytes
from harness.workers.channel import CaseInput, DecodeTask, Loaded, LoadFailed, TaskDone
from harness.workers.execution import preload_modules
from harness.workers.forkserver import start_forkserver, start_method_problem
from harness.workers.jobs import worker_job
from harness.workers.process import WorkerGone, WorkerProcess
from harness.workers.worker import worker_main
from reports.sweep import deciding_memory

OOM = "oom"
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
INPUT_SEED = 0
MAX_BYTES = 2**60  # an exbibyte: any larger "budget" is a typo (1e999 is infinite)


def parse_bytes(text: str) -> int:
    """'24GiB', '512 MB', '1e9' → bytes."""
    match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise ValueError(f"cannot read {text!r} as a size in bytes (e.g. 24GiB, 512MB, 1000000)")
    try:
        value = float(match.group(1)) * UNITS[match.group(2).lower()]
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a size in bytes (e.g. 24GiB, 512MB, 1000000)") from None
    if not math.isfinite(value) or value < 1 or value > MAX_BYTES:
        raise ValueError(f"{text!r} is not a memory size: expected 1 byte to {MAX_BYTES // 2**50} PiB")
    return int(value)


@dataclass
class SweepOutcome:
    run_dir: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    largest_ok: int | None = None
    smallest_failed: int | None = None
    plot: Path | None = None


class SweepError(DecoderbenchError, ValueError):
    pass


class Sweep:
    def __init__(self, suite: Suite, decoder_id: str, run_dir: Path,
                 memory_budget: int | None = None, reporter: Reporter | None = None) -> None:
        entries = {entry.id: entry for entry in suite.model.decoder}
        if decoder_id not in entries:
            raise SweepError(f"decoder {decoder_id!r} is not in suite {suite.name!r}; "
                             f"its decoders: {', '.join(entries)}")
        self.suite, self.entry, self.budget = suite, entries[decoder_id], memory_budget
        self.spec: DecoderSpec = DECODERS.get(self.entry.name).spec_for(suite.decoder_params[decoder_id])
        self.space: LatentSpace | None = None
        if self.spec.consumes == Consumes.LATENT:
            self.space = source_space(suite)
            if self.space is None:
                raise SweepError(f"decoder {decoder_id!r} needs latents, but the suite's source makes none")
        self.prompt = self._prompt()
        self.reporter = reporter
        self.run_dir = run_dir
        self.store: RunStore | None = None

    # ------------------------------------------------------------------ sizes

    @property
    def scale(self) -> float:
        """Output pixels per input pixel: the decoder's native scale, else the suite's ratio."""
        if self.spec.native_scale is not None:
            return self.spec.native_scale
        (input_w, _), (output_w, _) = self.suite.model.resolution.pairs()[0]
        return output_w / input_w

    @property
    def step(self) -> int:
        step = self.spec.size_multiple
        if self.space is not None:
            latent_step = self.space.factor * self.scale
            if not float(latent_step).is_integer():
                raise SweepError(f"{self.entry.id}: latent factor {self.space.factor} × scale "
                                 f"{self.scale:g} is not whole pixels")
            step = math.lcm(step, int(latent_step))
        return self._accepted_step(step)

    def _accepted_step(self, step: int) -> int:
        """The smallest multiple of `step` whose squares the decoder's own size rule accepts
        (L2P 1K: (side/16)² must be a multiple of 32, so its squares step by 128)."""
        cls, params = DECODERS.get(self.entry.name), self.suite.decoder_params[self.entry.id]
        for multiple in range(1, 65):
            if cls.size_problem(params, (multiple * step, multiple * step)) is None:
                return multiple * step
        return step

    def input_size(self, side: int) -> tuple[int, int]:
        inner = round(side / self.scale)
        return (inner, inner)

    def _prompt(self) -> str | None:
        if not self.spec.needs_prompt:
            return None
        prompts = [entry.item.prompt for entry in list_items(self.suite) if entry.item.prompt]
        if not prompts:
            raise SweepError(f"decoder {self.entry.id!r} needs a prompt; the suite's source has none")
        return prompts[0]

    # ------------------------------------------------------------------ the search

    def run(self, start: int, stop: int, coarser: int | None = None) -> SweepOutcome:
        """Search [start, stop]; `coarser` makes the step a multiple of it (fewer sizes to try)."""
        for option, value in (("--from", start), ("--to", stop), ("--step", coarser)):
            if value is not None and value < 1:
                raise SweepError(f"{option} {value}: expected a positive number of pixels")
        problem = start_method_problem()
        if problem is not None:
            raise SweepError(problem)
        if stop > MAX_SIDE:
            raise SweepError(f"--to {stop} is beyond the {MAX_SIDE}-pixel side decoderbench accepts "
                             "(the same bound as a suite's sizes)")
        step = math.lcm(self.step, coarser) if coarser else self.step
        low, high = math.ceil(start / step) * step, (stop // step) * step
        if low < step or high < low:
            raise SweepError(f"no size between {start} and {stop} is a multiple of {step} "
                             f"(what {self.entry.id} accepts)")
        self.store = RunStore.create(self.run_dir, self._manifest(start, stop, step))
        start_forkserver(preload_modules(self.suite))  # every size's fresh worker forks from it
        outcome = SweepOutcome(self.run_dir)
        try:
            self._search(low, high, step, outcome)
        finally:
            self._finish(outcome)
        return outcome

    def _search(self, low: int, high: int, step: int, outcome: SweepOutcome) -> None:
        if not self._fits(low, outcome):
            outcome.smallest_failed = low
            return
        outcome.largest_ok = low
        if low == high:
            return
        if self._fits(high, outcome):
            outcome.largest_ok = high
            return
        outcome.smallest_failed = high
        while high - low > step:
            middle = low + ((high - low) // 2 // step) * step
            if self._fits(middle, outcome):
                low = outcome.largest_ok = middle
            else:
                high = outcome.smallest_failed = middle

    def _fits(self, side: int, outcome: SweepOutcome) -> bool:
        if self.reporter is not None:
            self.reporter.note(f"{self.entry.id}: trying {side}×{side}")
        record = self._attempt(side)
        assert self.store is not None
        self.store.append(record)
        outcome.records.append(record)
        if record["status"] not in (OK, OOM) and record.get("load_failed"):
            raise SweepError(f"{self.entry.id} cannot load: {record['message']}")
        return record["status"] == OK

    def _attempt(self, side: int) -> SweepRecord:
        """One size in a fresh worker: spawn, load, warm up, time, stop."""
        job = worker_job(self.suite, self.entry, self.run_dir)
        task = DecodeTask(cases=(self._case(side),), input_size=self.input_size(side),
                          request_size=(side, side), compare_size=(side, side))
        record = SweepRecord(kind="sweep", decoder=self.entry.id, size=[side, side],  # status: below
                             input_size=list(task.input_size), latency=None, memory=None, message=None)
        timing = self.suite.model.timing
        worker = WorkerProcess(job, worker_main)
        try:
            loaded = worker.receive(timing.load_timeout_s)
            if not isinstance(loaded, Loaded):
                status = loaded.status if isinstance(loaded, LoadFailed | WorkerGone) else "error"
                message = loaded.message if isinstance(loaded, LoadFailed) else getattr(loaded, "reason", "")
                return {**record, "status": status, "message": message, "load_failed": True}
            worker.send(task)
            reply = worker.receive(timing.timeout_s)
        finally:
            worker.close()
        if isinstance(reply, WorkerGone):
            return {**record, "status": reply.status, "message": reply.reason}
        assert isinstance(reply, TaskDone)
        decoded = reply.records[0]
        pixels = reply.images[0] if reply.images else None  # about memory: the hash, not the pixels
        if pixels is not None:
            decoded["image_sha256"] = pixels_sha256(pixels)
        record.update(status=decoded["status"], message=decoded.get("message"),
                      latency=decoded.get("latency"), memory=decoded.get("memory"),
                      energy=decoded.get("energy"),
                      stage_ms=decoded.get("stage_ms"), warmup=decoded.get("warmup"),
                      image_sha256=decoded.get("image_sha256"), worker_pid=decoded.get("worker_pid"),
                      input_sha256=decoded.get("input_sha256"))
        return self._apply_budget(record)

    def _apply_budget(self, record: dict[str, Any]) -> dict[str, Any]:
        kind, peak = deciding_memory(record.get("memory"))
        record["peak_bytes"], record["peak_kind"] = peak, kind
        if self.budget is not None and record["status"] == OK and peak is not None and peak > self.budget:
            figure = MEMORY_KINDS[kind][0] if kind else "peak"
            record.update(status=OOM, message=f"{figure} {format_bytes(peak)} > budget "
                          f"{format_bytes(self.budget)}: counted as out of memory")
        return record

    def _case(self, side: int) -> CaseInput:
        path, sha = None, None
        if self.space is not None:
            latent = torch.randn(self.space.latent_shape(self.input_size(side)),
                                 generator=torch.Generator().manual_seed(INPUT_SEED))
            file = self.run_dir / "inputs" / f"{side}.safetensors"
            file.parent.mkdir(parents=True, exist_ok=True)
            save_file({"latent": latent}, str(file))
            path, sha = str(file), tensor_sha256(latent)
        return CaseInput(case_id=f"{side}x{side}", input_path=path, input_sha256=sha, seed=INPUT_SEED,
                         sigma=0.0, prompt=self.prompt,
                         image_path=RunStore.image_relpath(self.entry.id, f"{side}x{side}"))

    # ------------------------------------------------------------------ bookkeeping

    def _manifest(self, start: int, stop: int, step: int) -> dict[str, Any]:
        timing = self.suite.model.timing
        return {
            "kind": "sweep", "decoderbench": __version__, "status": "running",
            "suite": {"name": self.suite.name, "sha256": self.suite.sha256, "path": str(self.suite.path),
                      "texts": self.suite.texts, "resolved": self.suite.model.model_dump(mode="json")},
            "decoder": {"id": self.entry.id, "name": self.entry.name,
                        "params": self.suite.decoder_params[self.entry.id].model_dump(mode="json")},
            "sweep": {"from": start, "to": stop, "step": step, "scale": self.scale,
                      "memory_budget_bytes": self.budget, "device": timing.device, "dtype": timing.dtype,
                      "warmup": timing.warmup, "repeats": timing.repeats,
                      "inputs": "standard-normal latents, seed 0" if self.space else "prompt only",
                      "latent_space": self.space.name if self.space else None, "prompt": self.prompt,
                      "search": "bisection on the square output side; fresh worker per size"},
            "environment": fingerprint(),
        }

    def _finish(self, outcome: SweepOutcome) -> None:
        from reports.memory_wall import plot_memory_wall

        assert self.store is not None
        if outcome.records:
            timing = self.suite.model.timing
            outcome.plot = plot_memory_wall(
                outcome.records, self.run_dir / "memory_wall.png", budget=self.budget,
                title=f"{self.entry.id} · {timing.device} · {timing.dtype}")
        self.store.update_manifest(
            status="finished", finished=now_iso(),
            result={"largest_ok": outcome.largest_ok, "smallest_failed": outcome.smallest_failed,
                    "sizes_tried": [r["size"][0] for r in outcome.records],
                    "plot": outcome.plot.name if outcome.plot else None})
        self.store.close()


def default_run_dir(suite: Suite, decoder_id: str) -> Path:
    return Path("runs") / f"sweep-{suite.name}-{decoder_id}-{time.strftime('%Y%m%d-%H%M%S')}"
