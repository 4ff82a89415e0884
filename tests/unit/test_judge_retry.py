"""One request's life with a scripted backend: money accounting, stops, and backend bugs."""

from __future__ import annotations

import json

import pytest

from harness.judge.budget import Budget, Pricing
from harness.judge.media import JudgeImage
from harness.judge.prompts import BUILTIN_CRITERIA, build_prompt
from harness.judge.protocol import Reply, RequestFailed, TransientError
from harness.judge.retry import BackoffPolicy, StopSignal, execute

IMAGE = JudgeImage(b"", (8, 8))
PROMPT = build_prompt(BUILTIN_CRITERIA["overall_quality"], IMAGE, IMAGE, None, None)
PRICING = Pricing(input_usd_per_mtok=1.0, output_usd_per_mtok=10.0, tokens_per_image=100,
                  max_output_tokens=50)
GOOD = Reply(json.dumps({"verdict": "tie", "reason": "same"}), input_tokens=300, output_tokens=20)


class Scripted:
    judge_model, priced, max_concurrency, secrets = "scripted", True, None, ("s3cret",)

    def __init__(self, *script: object, on_call=None) -> None:
        self.script, self.calls, self.on_call = list(script), 0, on_call

    def ask(self, prompt):
        self.calls += 1
        if self.on_call:
            self.on_call(self.calls)
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


def _run(backend: Scripted, budget: Budget | None = None, stop: StopSignal | None = None, retries: int = 3):
    delays: list[float] = []
    outcome = execute(PROMPT, backend, budget or Budget(100, 10.0), PRICING, BackoffPolicy(retries, 0.1, 0.4),
                      stop or StopSignal(), sleep=delays.append)
    return outcome, delays


def test_money_is_reserved_at_the_worst_case_and_settled_at_the_reported_tokens() -> None:
    estimate = PRICING.estimate(PROMPT)
    assert estimate == pytest.approx(((PROMPT.text_chars + 3) // 4 + 200) * 1e-6 + 50 * 10e-6)
    budget = Budget(100, 10.0)
    timeout = TransientError("no answer", "timeout", maybe_billed=True)
    outcome, delays = _run(Scripted(TransientError("busy", "rate_limited"), timeout, GOOD), budget)
    assert (outcome.status, outcome.verdict, outcome.attempts) == ("ok", "tie", 3)
    answered = PRICING.cost(300, 20)
    assert outcome.cost_usd == pytest.approx(estimate + answered)  # the timeout may have been billed
    assert budget.spent_usd == pytest.approx(outcome.cost_usd) and budget.requests == 3
    assert len(delays) == 2 and 0.05 <= delays[0] <= 0.1 and 0.1 <= delays[1] <= 0.2


def test_a_stop_during_retries_ends_the_request_with_its_history() -> None:
    stop = StopSignal()
    backend = Scripted(TransientError("HTTP 503", "server_error"), GOOD,
                       on_call=lambda n: stop.set("an earlier request failed: HTTP 403"))
    outcome, _ = _run(backend, stop=stop)
    assert (outcome.status, outcome.failure, outcome.attempts) == ("failed", "stopped", 1)
    assert outcome.reason == ("stopped after 1 call(s): an earlier request failed: HTTP 403 "
                              "(last problem: HTTP 503)")
    assert backend.calls == 1


def test_a_fatal_failure_stops_the_others_and_secrets_are_redacted() -> None:
    stop = StopSignal()
    outcome, _ = _run(Scripted(RequestFailed("HTTP 403: key s3cret refused", "auth", fatal=True)), stop=stop)
    assert (outcome.status, outcome.failure) == ("failed", "auth")
    assert outcome.reason == "HTTP 403: key [redacted] refused"
    assert stop.reason == "an earlier request failed: HTTP 403: key [redacted] refused"
    assert _run(Scripted(GOOD), stop=stop)[0].reason.startswith("not sent: an earlier request failed")


def test_a_backend_bug_is_a_failed_result_not_a_crash() -> None:
    outcome, _ = _run(Scripted(ZeroDivisionError("oops")))
    assert (outcome.status, outcome.failure, outcome.reason) == ("failed", "error", "ZeroDivisionError: oops")


def test_caps_refuse_before_sending() -> None:
    budget = Budget(max_requests=1, cost_cap_usd=10.0)
    backend = Scripted(TransientError("HTTP 500", "server_error"), GOOD)
    outcome, _ = _run(backend, budget)
    assert (outcome.status, outcome.failure, backend.calls) == ("failed", "budget", 1)
    assert outcome.reason == "stopped after 1 call(s): max_requests (1) reached (last problem: HTTP 500)"
    poor = Budget(max_requests=10, cost_cap_usd=PRICING.estimate(PROMPT) / 2)
    outcome, _ = _run(Scripted(GOOD), poor)
    assert outcome.reason.startswith("not sent: cost cap $0.00 reached") and poor.requests == 0
