"""What readers rely on in a run directory, checked once: the manifest, each case, each record kind.

Models are loose (unknown keys are kept); a problem is `FILE[:LINE]: key: what is wrong`. The
typed records every writer builds are harness/records.py; tests/unit/test_records.py keeps the two
in step.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.records import (
    Size,
)
from harness.store.files import RunDirError

# Every reader of a run directory (show, report, export, gate, baseline, judge, resume) goes through
# `read_run`: what it needs is checked here once, and a problem is one line naming the file, the
# line and the key, never a KeyError three modules later.


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class _DecoderRow(_Loose):
    name: str
    label: str | None = None


class _Resolved(_Loose):
    decoder: list[_DecoderRow] = Field(min_length=1)
    metrics: list[dict[str, Any]] = Field(default_factory=list)
    timing: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    gate: list[dict[str, Any]] = Field(default_factory=list)


class _SuiteName(_Loose):
    name: str


class _SuiteInfo(_SuiteName):
    sha256: str
    path: str
    resolved: _Resolved
    texts: dict[str, str] = Field(default_factory=dict)


class SweepManifestModel(_Loose):
    format: Literal[1]
    kind: Literal["sweep"]
    status: str
    suite: _SuiteName


class ManifestModel(_Loose):
    format: Literal[1]
    kind: Literal["run"] = "run"
    status: str
    suite: _SuiteInfo
    cache_dir: str | None = None
    notes: list[str] = Field(default_factory=list)
    phases: list[dict[str, Any]] = Field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    decoders: dict[str, dict[str, Any]] = Field(default_factory=dict)
    environment: dict[str, Any] = Field(default_factory=dict)
    resumed: list[str] = Field(default_factory=list)


class CaseModel(_Loose):
    id: str
    item_id: str
    seed: int
    sigma: float
    input_size: Size
    output_size: Size
    reference: str | None = None


class _Record(_Loose):
    decoder: str
    status: str
    message: str | None = None


class _Decode(_Record):
    case: str
    output_size: Size | None = None
    batch_size: int | None = None
    image: str | None = None
    latency: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    warmup: dict[str, Any] | None = None
    facts: dict[str, Any] | None = None


class _Metric(_Record):
    case: str | None
    metric: str
    value: float | None = None
    size: Size | None = None


class _Judge(_Loose):
    case: str
    a: str
    b: str
    criterion: str
    status: str


class _Sweep(_Record):
    size: Size


RECORD_KINDS: dict[str, type[BaseModel]] = {
    "load": _Record, "decode": _Decode, "metric": _Metric, "judge": _Judge, "sweep": _Sweep}


def _problem(error: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    if error["type"] == "missing":
        message = "required key is missing"
    elif error["type"] in ("dict_type", "model_type", "model_attributes_type"):
        message = "expected a JSON object"
    else:
        message = error["msg"].replace("Input should be", "expected")
    shown = "" if error["type"] == "missing" else f", got {error['input']!r}"[:120]
    return f"{loc}: {message}{shown}" if loc else f"{message}{shown}"


def check_against(model: type[BaseModel], data: Any, where: str) -> None:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise RunDirError(f"{where}: {_problem(exc.errors()[0])}") from None
