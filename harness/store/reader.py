"""The one loader of run directories (`read_run`): manifest, cases and records checked, strays set aside.

Every reader (show, report, export, gate, baseline, judge, resume) goes through it: a problem is
one line naming the file, the line and the key, never a KeyError three modules later; a torn last
line is reported and skipped; records that do not belong to the run are left out and named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import DecoderbenchError
from harness.records import (
    CASES,
    MANIFEST,
    RESULTS,
    RUN_FORMAT,
    SUITE_HASH_DIGITS,
    CaseLine,
    Manifest,
    Record,
    decodes,
)
from harness.store.files import RunDirError, stored_path_problem
from harness.store.schema import RECORD_KINDS, CaseModel, ManifestModel, SweepManifestModel, check_against


class NonFinite(DecoderbenchError, ValueError):
    """A JSON number that is not finite (1e999, Infinity, NaN)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise NonFinite(text)
    return value


def _no_constant(text: str) -> float:
    raise NonFinite(text)


# Every stored number is finite (records are written with allow_nan=False): 1e999 or NaN in a
# line is damage, refused with its line rather than carried into means and tables.
_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constant)


def loads_finite(text: str) -> Any:
    """json.loads, refusing numbers that are not finite (NonFinite)."""
    return _DECODER.decode(text)


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Parse a JSON-lines file of objects; a torn last line is skipped and described in the second
    value. Anything else that is not a JSON object raises RunDirError naming the line."""
    numbered, warning = numbered_jsonl(path)
    return [record for _, record in numbered], warning


def numbered_jsonl(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], str | None]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    tail = lines.pop()  # bytes after the last newline: empty unless the last write was cut
    records: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = _DECODER.decode(line.decode("utf-8"))
        except NonFinite as exc:
            raise RunDirError(f"{path}:{number}: a number that is not finite ({exc}): decoderbench never "
                              "writes one (JSON has no infinity); move the line out of the file, or restore "
                              "the file") from None
        except UnicodeDecodeError:
            raise RunDirError(f"{path}:{number}: not UTF-8 text ({len(line)} bytes of binary data); "
                              "move the line out of the file, or restore the file") from None
        except json.JSONDecodeError as exc:
            raise RunDirError(f"{path}:{number}: corrupt record ({exc}); move the line out of the "
                              "file, or restore the file") from None
        if not isinstance(record, dict):
            raise RunDirError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append((number, record))
    warning = None
    if tail.strip():
        warning = (f"{path.name}: ignored a truncated last line ({len(tail)} bytes) "
                   f"left by an interrupted write")
    return records, warning


def read_manifest(root: Path) -> Manifest:
    """manifest.json of a run (or sweep) directory, checked."""
    path = root / MANIFEST
    if not root.is_dir():
        what = "it does not exist" if not root.exists() else "it is a file"
        raise RunDirError(f"{root} is not a decoderbench run directory ({what})")
    if not path.is_file():
        raise RunDirError(f"{root} is not a decoderbench run directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise RunDirError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except OSError as exc:
        raise RunDirError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not isinstance(manifest, dict):
        raise RunDirError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != RUN_FORMAT:
        raise RunDirError(f"{path}: format: run format {manifest.get('format')!r} is not supported "
                          f"(expected {RUN_FORMAT})")
    model = SweepManifestModel if manifest.get("kind") == "sweep" else ManifestModel
    check_against(model, manifest, str(path))
    return manifest


@dataclass
class RunData:
    """What a run directory holds, checked: the manifest, its cases and its records."""

    root: Path
    manifest: Manifest
    cases: list[CaseLine]
    records: list[Record]
    torn: str | None = None  # a truncated last line that was skipped
    missing_images: list[str] = field(default_factory=list)  # ok decodes whose output file is gone
    set_aside: list[str] = field(default_factory=list)  # "results.jsonl:N: why" of records left out

    @property
    def set_aside_note(self) -> str | None:
        """What readers say about records that do not belong to this run (left out of every number)."""
        if not self.set_aside:
            return None
        shown = "; ".join(self.set_aside[:3]) + ("; …" if len(self.set_aside) > 3 else "")
        return (f"{len(self.set_aside)} record(s) in {RESULTS} do not belong to this run and are left out "
                f"of every number: {shown}. `decoderbench run --resume {self.root}` moves them to "
                f"{RESULTS}.superseded")

    @property
    def missing_note(self) -> str | None:
        if not self.missing_images:
            return None
        return (f"{len(self.missing_images)} output image(s) of ok decodes are missing (e.g. "
                f"{self.missing_images[0]}): values stay as recorded; `decoderbench run --resume "
                f"{self.root}` decodes them again")


def read_records(root: Path) -> tuple[list[Record], str | None]:
    """results.jsonl, every record checked against what readers rely on for its kind."""
    numbered, torn = checked_records(root / RESULTS)
    return [record for _, record in numbered], torn


def checked_records(path: Path) -> tuple[list[tuple[int, Record]], str | None]:
    numbered, torn = numbered_jsonl(path)
    for number, record in numbered:
        kind = record.get("kind")
        if kind not in RECORD_KINDS:
            what = "has no \"kind\"" if kind is None else f"has an unknown kind {kind!r}"
            raise RunDirError(f"{path}:{number}: record {what} (expected one of {', '.join(RECORD_KINDS)})")
        check_against(RECORD_KINDS[kind], record, f"{path}:{number}")
    return numbered, torn


def read_run(root: Path, results_required: bool = True,
             expect: Literal["run", "sweep", "any"] = "run") -> RunData:
    """The one loader of run directories. `results_required`: an empty results.jsonl is an error
    (every reader but resume, which is how such a run gets its first records). `expect`: a reader
    of runs is told clearly that it was given a memory-wall sweep (and the other way round)."""
    manifest = read_manifest(root)
    kind = manifest.get("kind", "run")
    if expect != "any" and kind != expect:
        what = {"sweep": "a memory-wall sweep (`decoderbench report` shows it)", "run": "a suite run"}[kind]
        raise RunDirError(f"{root / MANIFEST}: kind: this directory holds {what}, not a {expect}")
    numbered, _ = numbered_jsonl(root / CASES)
    for number, case in numbered:
        check_against(CaseModel, case, f"{root / CASES}:{number}")
    cases = [case for _, case in numbered]
    for number, case in numbered:
        _check_stored_path(case, "reference", f"{root / CASES}:{number}")
    numbered_records, torn = checked_records(root / RESULTS)
    for number, record in numbered_records:
        for key in ("image", "artifact"):
            _check_stored_path(record, key, f"{root / RESULTS}:{number}")
    kept, set_aside = members(manifest, cases, numbered_records, root / RESULTS) if kind == "run" \
        else (numbered_records, [])
    records = [record for _, record in kept]
    if results_required and not records:
        state = "is empty" if (root / RESULTS).exists() else "does not exist"
        raise RunDirError(f"{root / RESULTS}: {state}: no decoder has finished a case in this run yet; "
                          f"resume it with `decoderbench run --resume {root}`")
    missing = [r["image"] for r in decodes(records) if r["status"] == "ok"
               and r.get("image") and not (root / r["image"]).is_file()]
    return RunData(root, manifest, cases, records, torn, missing, set_aside)


def _check_stored_path(entry: dict[str, Any], key: str, where: str) -> None:
    value = entry.get(key)
    if value is None:
        return
    problem = stored_path_problem(value)
    if problem is not None:
        raise RunDirError(f"{where}: {key}: {problem}: a run directory names only files inside itself; "
                          "restore the file, or move the line out of it")


def members(manifest: Manifest, cases: list[CaseLine], numbered: list[tuple[int, Record]], path: Path
            ) -> tuple[list[tuple[int, Record]], list[str]]:
    """The records that belong to this run, and `FILE:LINE: why` for those that do not: a record of
    another suite's run (its suite hash), of a decoder the suite does not have, of a case cases.jsonl
    does not list (a source changed under a resumed run leaves such records), or a second record of
    a unit, metric value or set value (the first stays)."""
    suite = manifest["suite"]
    own_hash = str(suite["sha256"])[:SUITE_HASH_DIGITS]
    decoders = {row.get("label") or row["name"] for row in suite["resolved"]["decoder"]}
    known = {case["id"] for case in cases}
    seen: dict[tuple[Any, ...], int] = {}
    kept, set_aside = [], []
    for number, record in numbered:
        why = _foreign(record, own_hash, decoders, known)
        key = _unit_key(record)
        if why is None and key is not None:
            if key in seen:
                why = f"a second record of {_shown_unit(key)} (the first is line {seen[key]})"
            else:
                seen[key] = number
        if why is None:
            kept.append((number, record))
        else:
            set_aside.append(f"{path.name}:{number}: {why}")
    return kept, set_aside


def _foreign(record: Record, own_hash: str, decoders: set[str], known: set[str]) -> str | None:
    stamp = record.get("suite_hash")
    if stamp is not None and stamp != own_hash:
        return f"a record of another suite's run (suite hash {stamp}, this run's {own_hash})"
    kind = record["kind"]
    named = [record["a"], record["b"]] if kind == "judge" else [record["decoder"]]
    stranger = next((d for d in named if d not in decoders), None)
    if stranger is not None:
        return f"decoder {stranger!r} is not in this run's suite"
    case = record.get("case")
    if kind != "load" and case is not None and case not in known:
        return f"case {case!r} is not in {CASES}"
    return None


def _unit_key(record: Record) -> tuple[Any, ...] | None:
    """What a record is the one record of (None: kinds that may repeat, such as worker loads)."""
    kind = record["kind"]
    if kind == "decode":
        return ("decode", record["decoder"], record["case"])
    if kind == "metric" and record["case"] is not None:
        return ("metric", record["decoder"], record["case"], record["metric"])
    if kind == "metric":
        return ("set", record["decoder"], record["metric"], tuple(record.get("size") or ()))
    return None


def _shown_unit(key: tuple[Any, ...]) -> str:
    if key[0] == "decode":
        return f"the decode of ({key[1]}, {key[2]})"
    if key[0] == "metric":
        return f"{key[3]} of ({key[1]}, {key[2]})"
    size = "x".join(map(str, key[3])) or "every size"
    return f"the set value of {key[2]} for {key[1]} at {size}"
