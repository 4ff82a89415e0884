"""One judge request, from first call to its end: a verdict, `invalid`, or `failed` with the reason.

- 429, 5xx, timeouts and lost connections are retried up to `retries` times
  with exponential back-off and jitter (a 429's RetryInfo delay is honoured,
  up to the back-off maximum);
- a reply that is not a valid answer (not JSON, wrong verdict, empty
  candidate) is asked again once, with a correction; a second bad reply is
  `invalid`;
- anything else (a refused key, a bad request, a cap reached, an earlier
  fatal error) ends the request as `failed`. Every call counts against the
  budget before it is sent.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from harness.judge.budget import Budget, Pricing
from harness.judge.prompts import MalformedAnswer, Prompt, parse_answer
from harness.judge.protocol import Backend, RequestFailed, TransientError, redact

MALFORMED_RETRIES = 1


@dataclass(frozen=True)
class BackoffPolicy:
    retries: int
    initial_s: float
    max_s: float

    def delay(self, retry_index: int, retry_after_s: float | None = None) -> float:
        """Equal jitter: half the exponential step fixed, half random; never above max_s."""
        step = min(self.max_s, self.initial_s * 2 ** retry_index)
        delay = step / 2 + random.uniform(0, step / 2)
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.max_s))
        return delay


class StopSignal:
    """Set after a fatal failure: requests not yet sent end as failed with this reason."""

    def __init__(self) -> None:
        self._reason: str | None = None
        self._lock = threading.Lock()

    def set(self, reason: str) -> None:
        with self._lock:
            self._reason = self._reason or reason

    @property
    def reason(self) -> str | None:
        return self._reason


@dataclass(frozen=True)
class Outcome:
    status: Literal["ok", "invalid", "failed"]
    verdict: Literal["A", "B", "tie"] | None  # screen positions
    reason: str
    attempts: int  # backend calls made
    cost_usd: float
    failure: str | None = None  # failed only: a short category


def execute(prompt: Prompt, backend: Backend, budget: Budget, pricing: Pricing, policy: BackoffPolicy,
            stop: StopSignal, sleep: Callable[[float], None] = time.sleep) -> Outcome:
    attempts, cost, transient_retries, malformed_left = 0, 0.0, 0, MALFORMED_RETRIES
    current, last_problem = prompt, ""

    def failed(reason: str, failure: str) -> Outcome:
        return Outcome("failed", None, redact(reason, backend.secrets), attempts, cost, failure)

    def stopped(why: str) -> str:
        if attempts == 0:
            return f"not sent: {why}"
        last = f" (last problem: {last_problem})" if last_problem else ""
        return f"stopped after {attempts} call(s): {why}{last}"

    while True:
        if stop.reason is not None:
            return failed(stopped(stop.reason), "stopped")
        estimate = pricing.estimate(current)
        refusal = budget.reserve(estimate)
        if refusal is not None:
            return failed(stopped(refusal), "budget")
        attempts += 1
        try:
            reply = backend.ask(current)
        except TransientError as exc:
            charged = estimate if exc.maybe_billed else 0.0
            budget.settle(estimate, charged)
            cost += charged
            last_problem = str(exc)
            if transient_retries >= policy.retries:
                return failed(f"{exc} (gave up after {attempts} call(s))", exc.failure)
            sleep(policy.delay(transient_retries, exc.retry_after_s))
            transient_retries += 1
            continue
        except RequestFailed as exc:
            budget.settle(estimate, 0.0)
            if exc.fatal:
                stop.set(f"an earlier request failed: {redact(str(exc), backend.secrets)}")
            return failed(str(exc), exc.failure)
        except Exception as exc:  # a backend bug must still end as a recorded result
            budget.settle(estimate, 0.0)
            return failed(f"{type(exc).__name__}: {exc}", "error")
        spent = estimate
        if reply.input_tokens is not None and reply.output_tokens is not None:
            spent = pricing.cost(reply.input_tokens, reply.output_tokens)
        budget.settle(estimate, spent)
        cost += spent
        try:
            answer = parse_answer(reply.text)
        except MalformedAnswer as exc:
            problem = f"{exc} (finish: {reply.finish})" if not reply.text.strip() else str(exc)
            if malformed_left == 0:
                return Outcome("invalid", None, redact(problem, backend.secrets), attempts, cost)
            malformed_left -= 1
            current = prompt.with_correction(problem)
            continue
        return Outcome("ok", answer.verdict, redact(answer.reason, backend.secrets), attempts, cost)
