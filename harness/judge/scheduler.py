"""Run many judge requests: cache first, then at most `concurrency` in flight.

Cached questions are answered from disk and never reach the backend; the
backend is started only when something is left to ask (so re-reading a
fully judged run needs no key and no model); a question asked by several
requests is sent once. Outcomes come back as they complete; the caller
records them. `ok` and `invalid` outcomes are cached as soon as they arrive.
An interrupt or a fatal failure stops what has not been sent yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from harness.judge.budget import Budget, Pricing
from harness.judge.cache import VerdictCache
from harness.judge.config import JudgeConfig
from harness.judge.prompts import Prompt
from harness.judge.protocol import Backend, BackendUnavailable
from harness.judge.retry import BackoffPolicy, Outcome, StopSignal, execute


@dataclass(frozen=True)
class Job:
    tag: Any  # the caller's identity of this request
    key_fields: dict[str, Any]  # everything that determines the question (the cache key)
    build_prompt: Callable[[], Prompt]  # images are read only when the request is sent

    @property
    def key(self) -> str:
        return VerdictCache.key(self.key_fields)


@dataclass(frozen=True)
class Done:
    job: Job
    outcome: Outcome
    cached: bool


class Scheduler:
    def __init__(self, config: JudgeConfig, cache: VerdictCache, budget: Budget,
                 start_backend: Callable[[JudgeConfig], Backend]) -> None:
        self.config, self.cache, self.budget, self.start_backend = config, cache, budget, start_backend
        self.policy = BackoffPolicy(config.retries, config.backoff_initial_s, config.backoff_max_s)

    def run(self, jobs: Iterable[Job]) -> Iterator[Done]:
        pending: list[Job] = []
        for job in jobs:
            entry = self.cache.get(job.key)
            if entry is None:
                pending.append(job)
                continue
            yield Done(job, Outcome(entry["status"], entry["verdict"], entry["reason"], 0, 0.0), True)
        if not pending:
            return
        try:
            backend = self.start_backend(self.config)
        except BackendUnavailable as exc:
            for job in pending:
                yield Done(job, Outcome("failed", None, f"judge backend unavailable: {exc}", 0, 0.0,
                                        "unavailable"), False)
            return
        yield from self._ask(pending, backend)

    def _ask(self, jobs: list[Job], backend: Backend) -> Iterator[Done]:
        pricing = Pricing.of(self.config, backend.priced)
        stop = StopSignal()
        workers = min(self.config.concurrency, backend.max_concurrency or self.config.concurrency)
        twins: dict[str, list[Job]] = {}  # one question (e.g. identical outputs of two seeds) is asked once
        for job in jobs:
            twins.setdefault(job.key, []).append(job)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge")
        try:
            futures: dict[Future[Outcome], list[Job]] = {
                pool.submit(self._one, group[0], backend, pricing, stop): group for group in twins.values()
            }
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    first, *others = futures.pop(future)
                    outcome = future.result()
                    yield Done(first, outcome, False)
                    reused = replace(outcome, attempts=0, cost_usd=0.0)
                    for job in others:
                        yield Done(job, reused, outcome.status != "failed")
        finally:
            stop.set("the judge phase was interrupted")
            pool.shutdown(wait=True, cancel_futures=True)

    def _one(self, job: Job, backend: Backend, pricing: Pricing, stop: StopSignal) -> Outcome:
        try:
            prompt = job.build_prompt()
        except Exception as exc:
            return Outcome("failed", None, f"cannot build the prompt: {type(exc).__name__}: {exc}", 0, 0.0,
                           "input")
        outcome = execute(prompt, backend, self.budget, pricing, self.policy, stop)
        if outcome.status != "failed":  # cached at once: an answer paid for is kept even if the run dies now
            self.cache.put(job.key, {"status": outcome.status, "verdict": outcome.verdict,
                                     "reason": outcome.reason, "fields": job.key_fields})
        return outcome
