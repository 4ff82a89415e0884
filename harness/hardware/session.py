"""A bench session's folder read back, and the verdict that makes the session green or red.

The verdict reads the run directories, never the exit codes of the commands that wrote them: green
only when every suite and sweep declared finished and measured what it declares
(docs/hardware-runners.md, exit codes).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.errors import DecoderbenchError
from harness.store import RunDirError, read_manifest, read_records, read_run

SESSION_JSON = "session.json"
PREFLIGHT_JSON = "preflight.json"
SUMMARY_JSON = "summary.json"
OK, OOM, UNAVAILABLE = "ok", "oom", "unavailable"
FINE_METRIC_STATUSES = {OK, "not_applicable"}


class SessionError(DecoderbenchError, ValueError):
    """The folder is not a bench session (no or unreadable session.json)."""


@dataclass
class Row:
    """One decoder of a suite run: the status of the last record of each of its cases."""

    decoder: str
    cases: int
    counts: Counter[str] = field(default_factory=Counter)
    why: dict[str, str] = field(default_factory=dict)  # status → its first message

    @property
    def missing(self) -> int:
        """Cases without a decode record (a run that stopped before it reached them)."""
        return self.cases - sum(self.counts.values())

    def failed(self, wall: bool) -> int:
        allowed = {OK, UNAVAILABLE, OOM} if wall else {OK, UNAVAILABLE}
        return self.missing + sum(n for status, n in self.counts.items() if status not in allowed)


@dataclass
class Part:
    """One suite run, or one memory-wall sweep, of a session."""

    name: str
    kind: str  # "run" or "sweep"
    path: Path
    wall: bool = False  # a memory-wall suite: its out-of-memory cases are results
    problem: str = ""  # absent, unreadable or unfinished
    rows: list[Row] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # metrics, judge: could not run here
    failures: list[str] = field(default_factory=list)  # metrics that failed for another reason
    sizes: dict[int, str] = field(default_factory=dict)  # sweeps: side → status
    size_messages: dict[int, str] = field(default_factory=dict)
    finished: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)  # the run's fingerprint

    @property
    def measured_rows(self) -> int:
        return sum(not row.failed(self.wall) and not row.counts[UNAVAILABLE] for row in self.rows)

    @property
    def decoded(self) -> int:
        if self.kind == "sweep":
            return sum(status == OK for status in self.sizes.values())
        return sum(row.counts[OK] for row in self.rows)

    @property
    def largest_ok(self) -> int | None:
        return max((side for side, status in self.sizes.items() if status == OK), default=None)

    @property
    def smallest_oom(self) -> int | None:
        return min((side for side, status in self.sizes.items() if status == OOM), default=None)


@dataclass
class Verdict:
    problems: list[str]  # red whatever was allowed, one line each
    missing: list[str]  # could not run here: red unless --allow-missing, which lists them
    allow_missing: bool

    @property
    def green(self) -> bool:
        return not self.problems and (self.allow_missing or not self.missing)


# --------------------------------------------------------------------------- reading


NOT_MADE = "no run directory: the command that makes it stopped before it could (see the session's log)"


def read_run_part(path: Path, name: str, wall: bool = False) -> Part:
    part = Part(name, "run", path, wall=wall)
    if not path.exists():
        part.problem = NOT_MADE
        return part
    try:
        data = read_run(path, expect="run")
    except RunDirError as exc:
        part.problem = str(exc)
        return part
    manifest = data.manifest
    part.finished = manifest.get("finished")
    part.environment = manifest.get("environment") or {}
    if manifest.get("status") != "finished":
        part.problem = (f"the run is {manifest.get('status')!r}, not finished: resume it with "
                        f"`decoderbench run --resume {path}`")
    case_ids = {case["id"] for case in data.cases}
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for record in data.records:
        if record["kind"] == "decode" and record["case"] in case_ids:
            last[(record["decoder"], record["case"])] = record
    for entry in manifest["suite"]["resolved"]["decoder"]:
        row = Row(entry.get("label") or entry["name"], len(case_ids))
        for (decoder, _), record in last.items():
            if decoder == row.decoder:
                row.counts[record["status"]] += 1
                if record["status"] != OK and record.get("message"):
                    row.why.setdefault(record["status"], _first_line(record["message"]))
        part.rows.append(row)
    _metrics_and_judge(part, manifest, data.records)
    return part


def _metrics_and_judge(part: Part, manifest: dict[str, Any], records: list[dict[str, Any]]) -> None:
    unavailable: dict[str, str] = {}
    failed: dict[str, Counter[str]] = {}
    for name, info in (manifest.get("metrics") or {}).items():
        if isinstance(info, dict) and info.get("status") == UNAVAILABLE:
            unavailable[name] = _first_line(info.get("message") or "unavailable")
    judge_failures: Counter[str] = Counter()
    for record in records:
        if record["kind"] == "metric" and record["status"] not in FINE_METRIC_STATUSES:
            if record["status"] == UNAVAILABLE:
                unavailable.setdefault(record["metric"], _first_line(record.get("message") or UNAVAILABLE))
            else:
                failed.setdefault(record["metric"], Counter())[record["status"]] += 1
        elif record["kind"] == "judge" and record["status"] == "failed":
            judge_failures[_first_line(str(record.get("failure") or record.get("message") or "failed"))] += 1
    part.unavailable += [f"metric {name}: {why}" for name, why in unavailable.items()]
    part.failures += [f"metric {name}: " + ", ".join(f"{n} {status}" for status, n in counts.items())
                      for name, counts in failed.items()]
    part.unavailable += [f"judge: {n} request(s) failed: {why}" for why, n in judge_failures.items()]


def read_sweep_part(path: Path, name: str) -> Part:
    part = Part(name, "sweep", path)
    if not path.exists():
        part.problem = NOT_MADE
        return part
    try:
        manifest = read_manifest(path)
        records, _ = read_records(path)
    except (RunDirError, OSError) as exc:
        part.problem = str(exc)
        return part
    if manifest.get("kind") != "sweep":
        part.problem = f"{path} holds a suite run, not a memory-wall sweep"
        return part
    part.finished = manifest.get("finished")
    if manifest.get("status") != "finished":
        part.problem = f"the sweep is {manifest.get('status')!r}, not finished"
    for record in records:
        if record["kind"] == "sweep":
            side = int(record["size"][0])
            part.sizes[side] = record["status"]
            if record.get("message"):
                part.size_messages[side] = _first_line(record["message"])
    return part


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def read_plan(folder: Path) -> dict[str, Any]:
    path = folder / SESSION_JSON
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SessionError(f"{folder} is not a bench session folder (no {SESSION_JSON}; `nox -s "
                           "bench-h100` or `nox -s bench-gb200` makes one)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SessionError(f"{path}: cannot read: {exc}") from None
    if not isinstance(plan, dict) or not isinstance(plan.get("suites"), list):
        raise SessionError(f"{path}: suites: expected a list of suite names")
    return plan


def read_parts(folder: Path, plan: dict[str, Any]) -> list[Part]:
    """Every suite and sweep the session declared, read from the folder (absent ones included)."""
    walls = set(plan.get("wall_suites") or [])
    parts = [read_run_part(folder / suite, suite, suite in walls) for suite in plan["suites"]]
    for sweep in plan.get("sweeps") or []:
        parts.append(read_sweep_part(folder / sweep["dir"], f"sweep {sweep['decoder']}"))
    return parts


def read_preflight(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / PREFLIGHT_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------- the verdict


def decide(parts: list[Part], allow_missing: bool) -> Verdict:
    problems: list[str] = []
    missing: list[str] = []
    for part in parts:
        if part.problem:
            problems.append(f"{part.name}: {part.problem}")
        if part.kind == "sweep":
            problems += _sweep_problems(part)
            continue
        if not part.problem and part.decoded == 0:
            problems.append(f"{part.name}: decoded nothing (no row measured a single case)")
        for row in part.rows:
            if row.failed(part.wall):
                problems.append(f"{part.name} · {row.decoder}: {_failure_text(row, part.wall)}")
            if row.counts[UNAVAILABLE]:
                missing.append(f"{part.name} · {row.decoder}: {row.why.get(UNAVAILABLE, UNAVAILABLE)}")
        problems += [f"{part.name} · {failure}" for failure in part.failures]
        missing += [f"{part.name} · {line}" for line in part.unavailable]
    return Verdict(problems, missing, allow_missing)


def _failure_text(row: Row, wall: bool) -> str:
    shown = {status: n for status, n in row.counts.items() if status not in (OK, UNAVAILABLE)}
    if wall:
        shown.pop(OOM, None)
    parts = [f"{n} {status}" + (f" ({row.why[status]})" if status in row.why else "")
             for status, n in sorted(shown.items())]
    if row.missing:
        parts.append(f"{row.missing} without a record")
    note = "; out of memory is a result only in a memory-wall suite" if OOM in shown else ""
    return f"of {row.cases} case(s), {', '.join(parts)}{note}"


def _sweep_problems(part: Part) -> list[str]:
    if part.problem and not part.sizes:
        return []
    problems = []
    if part.decoded == 0:
        tried = ", ".join(f"{side} px {status}" for side, status in sorted(part.sizes.items())) or "nothing"
        problems.append(f"{part.name}: decoded nothing (tried: {tried})")
    for side, status in sorted(part.sizes.items()):
        if status not in (OK, OOM):
            message = part.size_messages.get(side, "")
            problems.append(f"{part.name}: {side} px {status}" + (f" ({message})" if message else ""))
    return problems


# --------------------------------------------------------------------------- the numbers


def machine(preflight: dict[str, Any], parts: list[Part]) -> dict[str, Any]:
    """The machine as the preflight saw it (GPUs, driver, torch, CUDA build); without a preflight
    record, as the first run's fingerprint did."""
    if preflight.get("machine"):
        return preflight["machine"]
    environment = next((part.environment for part in parts if part.environment), {})
    gpus = environment.get("gpus") or []
    return {"torch": environment.get("torch"), "torch_cuda": environment.get("torch_cuda"),
            "driver": gpus[0].get("driver") if gpus else None, "python": environment.get("python"),
            "machine": environment.get("platform"),
            "gpus": [{"name": gpu.get("name"), "memory": gpu.get("memory")} for gpu in gpus]}


def wall_seconds(plan: dict[str, Any], parts: list[Part]) -> float | None:
    """From the session's start to the last suite or sweep that finished."""
    try:
        started = datetime.fromisoformat(str(plan["started"]))
        ends = [datetime.fromisoformat(p.finished) for p in parts if p.finished]
    except (KeyError, ValueError, TypeError):
        return None
    seconds = (max(ends) - started).total_seconds() if ends else None
    return seconds if seconds is not None and seconds >= 0 else None  # a clock or a hand-made plan


def summary_json(plan: dict[str, Any], parts: list[Part], verdict: Verdict,
                 preflight: dict[str, Any]) -> dict[str, Any]:
    suites = []
    for part in parts:
        entry: dict[str, Any] = {"name": part.name, "kind": part.kind, "dir": part.path.name,
                                 "problem": part.problem or None}
        if part.kind == "run":
            entry.update(wall=part.wall, rows=[
                {"decoder": row.decoder, "cases": row.cases, "statuses": dict(row.counts),
                 "without_record": row.missing, "why": row.why} for row in part.rows],
                unavailable=part.unavailable, failures=part.failures)
        else:
            entry.update(sizes={str(side): status for side, status in sorted(part.sizes.items())},
                         largest_ok=part.largest_ok, smallest_oom=part.smallest_oom)
        suites.append(entry)
    return {"session": plan.get("session"), "started": plan.get("started"),
            "wall_s": wall_seconds(plan, parts), "allow_missing": verdict.allow_missing,
            "machine": machine(preflight, parts), "green": verdict.green, "problems": verdict.problems,
            "missing": verdict.missing, "parts": suites}
