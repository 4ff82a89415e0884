"""A real run writes exactly the typed records of harness/records.py: no key they do not declare,
every key they say is always there (ok decodes, failures of each kind, loads, metric values)."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import decoder_tables, suite_text

from harness.records import RECORDS, CaseLine, Invocation, Manifest, fields
from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.suite import load_suite


def _problems(record: dict, cls: type) -> tuple[set[str], set[str]]:
    declared = fields(cls)
    required = {key for key, (_, always, _) in declared.items() if always}
    return set(record) - set(declared), required - set(record)


def test_a_run_writes_only_declared_keys(write_suite, image_folder: Path, tmp_path: Path) -> None:
    text = suite_text(image_folder, decoder_tables(
        'name = "nearest"', 'name = "fault"\nlabel = "raises"\nparams = {mode = "raise"}',
        'name = "fault"\nlabel = "nan"\nparams = {mode = "nan"}',
        'name = "fault"\nlabel = "no-load"\nparams = {mode = "unavailable"}'))
    suite = load_suite(write_suite(text))
    run_dir = Runner.new(suite, tmp_path / "run", TensorCache(tmp_path / "cache")).run().run_dir
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    statuses = {(r["kind"], r["status"]) for r in records}
    assert {("decode", "ok"), ("decode", "error"), ("decode", "invalid_output"), ("load", "ok"),
            ("metric", "ok")} <= statuses, statuses
    assert any(kind == "load" and status != "ok" for kind, status in statuses), statuses
    for record in records:
        assert _problems(record, RECORDS[record["kind"]]) == (set(), set()), record
    for line in (run_dir / "cases.jsonl").read_text().splitlines():
        assert _problems(json.loads(line), CaseLine) == (set(), set())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert _problems(manifest, Manifest) == (set(), set())
    for invocation in manifest["phases"]:
        assert _problems(invocation, Invocation) == (set(), set())
