"""The judge phase of a run: after the metrics, over the stored outputs.

For each case, each declared pair (a, b) whose two decoders both produced an
`ok` output, each criterion, and both orders ("ab": a shown as Image A; "ba":
b shown as Image A), one request. Each ends as one record

    {"kind": "judge", "case", "a", "b", "order", "criterion", "judge_model",
     "template_version", "status": "ok"|"invalid"|"failed",
     "verdict": "a"|"b"|"tie"|null (decoder terms), "reason", "cached",
     "calls", "cost_usd", "failure" (failed only)}

and RUN_DIR/judge.json is rewritten from all records (aggregate.py). A
request with an `ok` or `invalid` record is finished and never asked again;
a `failed` one is asked again by the next judge phase (resume, or
`decoderbench judge`), and its newer record supersedes the failed one.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.judge.aggregate import summarize
from harness.judge.backends import create_backend
from harness.judge.budget import Budget, Pricing
from harness.judge.cache import VerdictCache
from harness.judge.config import JudgeConfig
from harness.judge.media import RESIZE_PROTOCOL, JudgeImage, load_for_judge
from harness.judge.prompts import ANSWER_SCHEMA, Criterion, build_prompt, template_version
from harness.judge.protocol import Backend
from harness.judge.scheduler import Done, Job, Scheduler
from harness.progress import Reporter
from harness.records import JudgeRecord, judges
from harness.store import RunStore, atomic_write_text, inside
from harness.suite import Suite

JUDGE_JSON = "judge.json"
ORDERS = ("ab", "ba")
SCREEN_TO_DECODER = {"ab": {"A": "a", "B": "b", "tie": "tie"}, "ba": {"A": "b", "B": "a", "tie": "tie"}}


@dataclass(frozen=True)
class Request:
    case: str
    a: str
    b: str
    order: str
    criterion: str
    judge_model: str
    template_version: str


@dataclass
class JudgeOutcome:
    counts: Counter[str] = field(default_factory=Counter)  # status → requests this phase
    cached: int = 0
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    spent_usd: float = 0.0
    estimate_usd: float = 0.0  # dry run: worst case of what is left to ask


def run_judge(suite: Suite, store: RunStore, cache_root: Path, reporter: Reporter,
              start_backend: Callable[[JudgeConfig], Backend] = create_backend,
              dry_run: bool = False) -> JudgeOutcome:
    config = suite.model.judge
    assert config is not None, "run_judge needs a suite with a [judge] table"
    pairs = config.pair_list([d.id for d in suite.model.decoder])
    records, _ = store.records()
    previous = judges(records)
    outcome = JudgeOutcome()
    jobs = list(_plan(config, pairs, store, records, previous, outcome.notes))
    cache = VerdictCache(cache_root / "judge")
    budget = Budget(config.max_requests, config.cost_cap_usd,
                    requests=sum(r.get("calls", 0) for r in previous),
                    spent_usd=sum(r.get("cost_usd", 0.0) for r in previous))
    if dry_run:
        outcome.estimate_usd = _worst_case(config, [j for j in jobs if cache.get(j.key) is None])
        outcome.cached = sum(cache.get(j.key) is not None for j in jobs)
        outcome.counts["to_ask"] = len(jobs) - outcome.cached
        return outcome
    reporter.phase("judge", len(jobs))
    failures: Counter[str] = Counter()
    for done in Scheduler(config, cache, budget, start_backend).run(jobs):
        store.append(_record(done))
        outcome.counts[done.outcome.status] += 1
        outcome.cached += done.cached
        if done.outcome.status == "failed":
            failures[done.outcome.reason] += 1
        reporter.advance()
    outcome.notes += [f"judge: {n} request(s) failed: {reason}" for reason, n in failures.most_common(3)]
    outcome.spent_usd = budget.spent_usd
    outcome.summary = write_summary(store, config, pairs)
    store.update_manifest(judge=protocol(config, budget))
    return outcome


def _plan(config: JudgeConfig, pairs: list[tuple[str, str]], store: RunStore, records: list[dict[str, Any]],
          previous: list[dict[str, Any]], notes: list[str]) -> Iterator[Job]:
    finished = {_request_of(r) for r in previous if r["status"] != "failed"}
    outputs: dict[tuple[str, str], dict[str, Any]] = {}
    not_applicable: set[str] = set()
    for record in records:
        if record["kind"] == "decode" and record["status"] == "ok":
            if (record.get("facts") or {}).get("quality_not_applicable"):
                not_applicable.add(record["decoder"])
            else:
                outputs[(record["decoder"], record["case"])] = record
    upstream = (store.manifest().get("source_model") or {}).get("quality_not_applicable")
    if upstream:
        notes.append(f"judge: nothing asked: {upstream}")
        return
    criteria = config.criterion_list()
    missing: Counter[str] = Counter()
    for case in store.cases():
        # a source without references: criteria that show one find no file (their requests say so)
        reference = inside(store.root, case["reference"] or "references/none.png")
        for a, b in pairs:
            if (a, case["id"]) not in outputs or (b, case["id"]) not in outputs:
                missing.update(d for d in (a, b) if (d, case["id"]) not in outputs)
                continue
            for criterion in criteria:
                for order in ORDERS:
                    request = Request(case["id"], a, b, order, criterion.name, config.model,
                                      template_version(criterion))
                    if request not in finished:
                        first, second = (a, b) if order == "ab" else (b, a)
                        yield _job(config, criterion, request, outputs[(first, case["id"])],
                                   outputs[(second, case["id"])], store.root, reference, case.get("prompt"))
    for decoder, n in sorted(missing.items()):
        why = "its quality is not applicable (random weights)" if decoder in not_applicable else \
            "it has no ok output"
        notes.append(f"judge: {n} (case, pair) combination(s) with {decoder!r} not judged: {why}")


def _job(config: JudgeConfig, criterion: Criterion, request: Request, first: dict[str, Any],
         second: dict[str, Any], root: Path, reference: Path, caption: str | None) -> Job:
    fields = {
        "backend": config.backend, "judge_model": config.model, "criterion": criterion.name,
        "template_version": request.template_version, "first": first["image_sha256"],
        "second": second["image_sha256"], "caption": caption, "max_side": config.max_side,
        "resize": RESIZE_PROTOCOL, "temperature": config.temperature,
        "thinking_level": config.thinking_level, "max_output_tokens": config.max_output_tokens,
        "reference": _file_sha256(reference) if criterion.reference else None,
    }

    def prompt() -> Any:
        ref = load_for_judge(reference, config.max_side) if criterion.reference else None
        return build_prompt(criterion, load_for_judge(inside(root, first["image"]), config.max_side),
                            load_for_judge(inside(root, second["image"]), config.max_side), ref, caption)

    return Job(request, fields, prompt)


@lru_cache(maxsize=64)  # references are content-addressed: a path's bytes never change
def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None  # the request will fail as it cannot build its prompt


def _worst_case(config: JudgeConfig, jobs: list[Job]) -> float:
    pricing = Pricing.of(config, priced=config.backend == "gemini")
    placeholder = JudgeImage(b"", (0, 0))
    total = 0.0
    for job in jobs:
        request: Request = job.tag
        criterion = next(c for c in config.criterion_list() if c.name == request.criterion)
        prompt = build_prompt(criterion, placeholder, placeholder, placeholder, job.key_fields["caption"])
        total += pricing.estimate(prompt)
    return total


def _request_of(record: dict[str, Any]) -> Request:
    return Request(record["case"], record["a"], record["b"], record["order"], record["criterion"],
                   record["judge_model"], record["template_version"])


def _record(done: Done) -> JudgeRecord:
    request: Request = done.job.tag
    outcome = done.outcome
    record = JudgeRecord(
        kind="judge", case=request.case, a=request.a, b=request.b, order=request.order,
        criterion=request.criterion, judge_model=request.judge_model,
        template_version=request.template_version, status=outcome.status,
        verdict=SCREEN_TO_DECODER[request.order][outcome.verdict] if outcome.verdict else None,
        reason=outcome.reason, cached=done.cached, calls=outcome.attempts, cost_usd=outcome.cost_usd,
    )
    if outcome.failure is not None:
        record["failure"] = outcome.failure
    return record


def write_summary(store: RunStore, config: JudgeConfig, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Aggregate the run's latest judge records of the current configuration into judge.json."""
    records, _ = store.records()
    latest: dict[Request, dict[str, Any]] = {}
    for record in records:
        if record["kind"] == "judge":
            latest[_request_of(record)] = record
    wanted = set(pairs)
    summary: dict[str, Any] = {"criteria": {}}
    for criterion in config.criterion_list():
        version = template_version(criterion)
        mine = [r for r in latest.values() if r["criterion"] == criterion.name and r["judge_model"] ==
                config.model and r["template_version"] == version and (r["a"], r["b"]) in wanted]
        summary["criteria"][criterion.name] = {
            "judge_model": config.model, "template_version": version,
            **summarize(mine, pairs, config.bootstrap, config.bootstrap_seed),
        }
    atomic_write_text(store.root / JUDGE_JSON, json.dumps(summary, indent=2, sort_keys=True, allow_nan=False))
    return summary


def protocol(config: JudgeConfig, budget: Budget) -> dict[str, Any]:
    """What determines the judge's numbers, for the manifest (no key, no endpoint address)."""
    return {
        "backend": config.backend, "model": config.model,
        "criteria": {c.name: {"instruction": c.instruction, "reference": c.reference,
                              "template_version": template_version(c)} for c in config.criterion_list()},
        "resize": {**RESIZE_PROTOCOL, "max_side": config.max_side},
        "generation": {"temperature": config.temperature, "thinking_level": config.thinking_level,
                       "max_output_tokens": config.max_output_tokens, "answer_schema": ANSWER_SCHEMA},
        "debiasing": "both orders asked; orders that disagree count as a tie and as inconsistent",
        "endpoint": "custom base_url" if config.base_url else "default",
        "caps": {"max_requests": config.max_requests, "cost_cap_usd": config.cost_cap_usd},
        "pricing_usd_per_mtok": {"input": config.price_input_per_mtok, "output": config.price_output_per_mtok,
                                 "tokens_per_image": config.tokens_per_image},
        "spent": {"calls": budget.requests, "estimated_cost_usd": budget.spent_usd},
        "bootstrap": {"samples": config.bootstrap, "seed": config.bootstrap_seed},
    }
