"""What each decoder worker is told: its job (decoder, device, timing) and its decode tasks.

A task is one call: up to `batch_size` cases of the same input and comparison size, each with its
input file (or prompt and seed) and the path its output is stored at. The runner and the
memory-wall sweep build jobs the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from decoders.base import Consumes
from decoders.registry import DECODERS
from harness.sources.prepare import PreparedCase
from harness.store import RunStore
from harness.suite import DecoderEntry, Suite
from harness.workers.channel import CaseInput, DecodeTask, WorkerJob


def worker_job(suite: Suite, entry: DecoderEntry, run_dir: Path) -> WorkerJob:
    """What a decoder's worker process is told (the runner's and the memory-wall sweep's)."""
    timing = suite.model.timing
    return WorkerJob(
        decoder_id=entry.id, decoder_name=entry.name,
        params=suite.decoder_params[entry.id].model_dump(mode="json"),
        device=timing.device, dtype=timing.dtype, warmup=timing.warmup,
        repeats=timing.repeats, repeat_budget_s=timing.repeat_budget_s, threads=timing.threads,
        compare_resampler=suite.model.compare.resampler,
        run_dir=str(run_dir), log_path=str(run_dir / "logs" / f"{entry.id}.log"),
        energy=timing.energy, energy_min_block_s=timing.energy_min_block_s,
    )


def decode_tasks(suite: Suite, entry: DecoderEntry, pending: list[PreparedCase]) -> Iterator[DecodeTask]:
    """The calls that decode `pending` with this decoder: cases grouped by (input, comparison) size,
    cut into batches of `timing.batch_size`; the decoder is asked for its native size when it has
    a native scale."""
    spec = DECODERS.get(entry.name).spec_for(suite.decoder_params[entry.id])
    batch_size = suite.model.timing.batch_size
    groups: dict[tuple[Any, ...], list[PreparedCase]] = {}
    for item in pending:
        groups.setdefault((item.case.input_size, item.case.output_size), []).append(item)
    for (input_size, output_size), members in groups.items():
        if spec.native_scale is None:
            request = output_size
        else:
            request = (round(input_size[0] * spec.native_scale),
                       round(input_size[1] * spec.native_scale))
        for start in range(0, len(members), batch_size):
            chunk = members[start:start + batch_size]
            yield DecodeTask(
                cases=tuple(case_input(entry, spec.consumes, p) for p in chunk),
                input_size=input_size, request_size=request, compare_size=output_size,
            )


def case_input(entry: DecoderEntry, consumes: Consumes, p: PreparedCase) -> CaseInput:
    """One case as a worker receives it: the latent file (latent decoders) or the prompt and seed."""
    latent = consumes == Consumes.LATENT and p.input_path is not None
    return CaseInput(
        case_id=p.case.id,
        input_path=str(p.input_path) if latent else None,
        input_sha256=p.input_sha256 if latent else None,
        seed=p.case.generation_seed if consumes == Consumes.PROMPT else p.case.seed,
        sigma=p.input_sigma, prompt=p.case.prompt,
        image_path=RunStore.image_relpath(entry.id, p.case.id),
    )
