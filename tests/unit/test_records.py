"""The run format has one source (harness/records.py): the loader's checks agree with it, the docs
page's tables are generated from it, and the test fixtures write nothing it does not declare."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synthetic_runs import SynthDecoder, write_judge, write_run, write_sweep

from harness.records import RECORDS, CaseLine, Manifest, fields, markdown
from harness.store.schema import RECORD_KINDS, CaseModel, ManifestModel

REPO = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- records:begin -->\n", "<!-- records:end -->\n"


def undeclared(record: dict[str, Any], cls: type) -> tuple[set[str], set[str]]:
    """(keys the record has that the type does not declare, required keys it lacks)."""
    declared = fields(cls)
    required = {key for key, (_, always, _) in declared.items() if always}
    return set(record) - set(declared), required - set(record)


def test_the_loader_checks_only_what_the_records_declare() -> None:
    """Every key harness/store/schema.py checks is a key of the typed record, and a key the loader
    requires is one the type says is always there."""
    pairs = [*((RECORD_KINDS[kind], cls) for kind, cls in RECORDS.items()), (CaseModel, CaseLine),
             (ManifestModel, Manifest)]
    assert set(RECORD_KINDS) == set(RECORDS)
    for model, cls in pairs:
        declared = fields(cls)
        for name, info in model.model_fields.items():
            assert name in declared, f"{model.__name__} checks {name!r}: {cls.__name__} does not declare it"
            if info.is_required():
                assert declared[name][1], f"{cls.__name__}.{name} is required by the loader"
    for kind, cls in RECORDS.items():
        annotation, always, _ = fields(cls)["kind"]
        assert always and annotation.__args__ == (kind,)


def test_every_key_is_explained() -> None:
    for cls in (*RECORDS.values(), CaseLine, Manifest):
        assert cls.__doc__, cls
        assert all(doc for _, _, doc in fields(cls).values()), cls


def test_the_run_format_page_is_generated_from_the_records() -> None:
    page = (REPO / "docs" / "run-format.md").read_text(encoding="utf-8")
    assert BEGIN in page and END in page
    generated = page.split(BEGIN, 1)[1].split(END, 1)[0]
    assert generated == markdown(), "docs/run-format.md is stale: python -m harness.records writes the tables"


def test_the_synthetic_runs_write_only_declared_records(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [SynthDecoder("a", metrics={"psnr": lambda i: 30.0 + i}),
                                       SynthDecoder("b", failures={1: ("oom", "out of memory")})],
                    3, {"psnr": True})
    write_judge(run, ["a", "b"], [json.loads((run / "cases.jsonl").read_text().splitlines()[0])["id"]])
    sweep = write_sweep(tmp_path / "sweep", "a", [256, 512, 1024], oom_from=1024)
    lines = [json.loads(line) for root in (run, sweep)
             for line in (root / "results.jsonl").read_text().splitlines()]
    assert {record["kind"] for record in lines} == {"load", "decode", "metric", "judge", "sweep"}
    for record in lines:
        assert undeclared(record, RECORDS[record["kind"]]) == (set(), set()), record
    for line in (run / "cases.jsonl").read_text().splitlines():
        assert undeclared(json.loads(line), CaseLine) == (set(), set())
