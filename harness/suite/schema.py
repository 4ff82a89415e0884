"""The suite file's schema: every table and key, its type, default and limits (pydantic, strict)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_serializer,
    model_validator,
)

from decoders.resample import Method
from harness.gates.spec import GateSpec
from harness.judge.config import JudgeConfig
from harness.records import Size
from harness.suite.fields import (
    MAX_SIDE,
    MAX_THREADS,
    REFERENCE_BYTES_PER_PIXEL,
    ComponentEntry,
    Device,
    Seed,
    Strict,
    bytes_text,
    size_value,
)
from harness.suite.sources import Source
from harness.workers.meter import DEFAULT_MIN_BLOCK_S


class DecoderEntry(ComponentEntry):
    label: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64,
        description="unique id of this decoder row; defaults to name",
    )
    published: dict[str, float | str] = Field(
        default_factory=dict, description="published numbers this row compares with: metric name (or "
        "latency_ms, peak_memory) → value or a sentence; `source` names where they were published")

    @model_serializer(mode="wrap")
    def _omit_no_published(self, handler: Any) -> Any:
        """A row without published numbers dumps (and hashes) exactly as before the key existed."""
        data = handler(self)
        if isinstance(data, dict) and not data.get("published"):
            data.pop("published", None)
        return data

    @property
    def id(self) -> str:
        return self.label or self.name


class Resolution(Strict):
    input: list[tuple[int, int]] = Field(min_length=1)
    output_scale: float | None = Field(default=None, gt=0)
    output: list[tuple[int, int]] | None = None

    @field_validator("input", "output", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return [size_value(value)]
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return [tuple(value)]  # a single [width, height]
        return [size_value(v) for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _outputs(self) -> Resolution:
        for size in [*self.input, *(self.output or [])]:
            if min(size) < 1:
                raise ValueError(f"sizes must be positive, got {list(size)}")
        if (self.output_scale is None) == (self.output is None):
            raise ValueError("give exactly one of output_scale or output")
        if self.output is not None and len(self.output) != len(self.input):
            raise ValueError("output must list one size per input size")
        if self.output_scale is not None:
            for w, h in self.input:
                if not (w * self.output_scale).is_integer() or not (h * self.output_scale).is_integer():
                    raise ValueError(
                        f"input {w}x{h} times output_scale {self.output_scale} is not whole pixels"
                    )
        return self

    @model_validator(mode="after")
    def _bounded_outputs(self) -> Resolution:
        for size, output in self.pairs():
            if max(*size, *output) > MAX_SIDE:
                raise ValueError(_too_large(size, output))
        return self

    def pairs(self) -> list[tuple[Size, Size]]:
        """(input size, comparison size) pairs."""
        if self.output is not None:
            return list(zip(self.input, self.output, strict=True))
        scale = self.output_scale or 1.0
        return [((w, h), (int(w * scale), int(h * scale))) for w, h in self.input]


def _too_large(size: Size, output: Size) -> str:
    largest = max(size, output, key=lambda s: s[0] * s[1])
    need = largest[0] * largest[1] * REFERENCE_BYTES_PER_PIXEL
    return (f"input {size[0]}x{size[1]} (comparison size {output[0]}x{output[1]}) is beyond the "
            f"{MAX_SIDE}-pixel side decoderbench accepts: one {largest[0]}x{largest[1]} image alone "
            f"takes {bytes_text(need)} while it is prepared (float64 RGB)")


class Timing(Strict):
    device: Device = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    warmup: int = Field(default=1, ge=0)
    repeats: int | str = Field(
        default=5, description='timed calls per decode task, or "auto": until the median is known to '
        '± 2 % (95 % interval) or repeat_budget_s ends')
    repeat_budget_s: float = Field(default=10.0, gt=0, allow_inf_nan=False,
                                   description='time budget of one task\'s timed calls with repeats = "auto"')
    batch_size: int = Field(default=1, ge=1)
    timeout_s: float = Field(default=600.0, gt=0, description="per decode call batch")
    load_timeout_s: float = Field(default=1800.0, gt=0)
    threads: int | None = Field(default=None, ge=1, le=MAX_THREADS)
    gpus: Literal["all"] | list[Annotated[int, Field(ge=0)]] | None = Field(
        default=None, min_length=1, description="decode on these GPUs at once, one worker per GPU")
    overlap_io: bool | None = Field(
        default=None, description="store outputs while the next task decodes (default: on GPUs only)")
    energy: bool = Field(
        default=True, description="read the GPU's (NVML) and the CPU's (RAPL) energy counters around "
        "the timed calls where they are readable (docs/energy-and-price.md)")
    energy_min_block_s: float = Field(
        default=DEFAULT_MIN_BLOCK_S, gt=0, allow_inf_nan=False, description="a block of timed calls "
        "shorter than this is lengthened by more timed calls, so that the energy counter resolves it")

    @field_validator("repeats", mode="before")
    @classmethod
    def _repeats(cls, value: Any) -> Any:
        """A count ≥ 1 or "auto", in one message (not one per branch of a union)."""
        if value == "auto":
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'expected a valid integer or "auto", got {value!r}')
        if value < 1:
            raise ValueError(f'expected an integer greater than or equal to 1 or "auto", got {value}')
        return value

    @model_serializer(mode="wrap")
    def _omit_later_defaults(self, handler: Any) -> Any:
        """Keys added after runs existed dump (and hash) only when set away from their default, so
        older runs still resume."""
        data = handler(self)
        if isinstance(data, dict):
            for key in ("repeat_budget_s", "energy", "energy_min_block_s"):
                if data.get(key) == type(self).model_fields[key].default:
                    data.pop(key, None)
        return data


class Cost(Strict):
    """What a decode costs in money: price per 1,000 images from latency (and from energy)."""

    gpu_hour: float | None = Field(
        default=None, gt=0, allow_inf_nan=False,
        description="price of one hour of the timing device (e.g. 2.50), in `currency`")
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    kwh: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="price of one kilowatt-hour of electricity")

    @model_validator(mode="after")
    def _some_price(self) -> Cost:
        if self.gpu_hour is None and self.kwh is None:
            raise ValueError("a [cost] table needs gpu_hour (price of a device hour) and/or kwh "
                             "(price of a kilowatt-hour)")
        return self


class Compare(Strict):
    resampler: Method = "lanczos"


class Evaluation(Strict):
    device: Device | None = None
    batch_size: int = Field(default=8, ge=1)


COST_CRITERIA = ("latency", "memory", "energy")  # what a [summary] group may rank besides metrics


OVERALL_GROUP = "overall"  # the summary's column that averages the groups: no group may take its name


class SummaryEntry(Strict):
    metric: str = Field(description="a metric of the suite, or latency / memory / energy")
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)


class SummaryGroup(Strict):
    """A summary group with its own weight in "overall" (the list form weighs 1)."""

    weight: float = Field(default=1.0, ge=0, allow_inf_nan=False,
                          description="the group's weight in overall; 0: shown beside it")
    metrics: list[SummaryEntry] = Field(min_length=1)

    @field_validator("metrics", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        return [{"metric": e} if isinstance(e, str) else e for e in value]


def _summary_form(value: Any) -> str:
    """Which form a summary group takes: a list of metrics, or a table with its own weight."""
    return "table" if isinstance(value, dict | SummaryGroup) else "list"


SummarySpec = Annotated[Annotated[list[SummaryEntry], Tag("list")] | Annotated[SummaryGroup, Tag("table")],
                        Discriminator(_summary_form)]


class SuiteModel(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)
    description: str = ""
    source: Source
    resolution: Resolution
    seeds: list[Seed] = Field(default=[0], min_length=1, description="decoder seeds")
    input_seeds: list[Seed] = Field(
        default=[0], min_length=1,
        description="source seeds: latent noise at sigma > 0, text-to-image generation")
    sigmas: list[float] = Field(default=[0.0], min_length=1)
    decoder: list[DecoderEntry] = Field(min_length=1)
    metrics: list[ComponentEntry] = Field(default_factory=list)
    timing: Timing = Timing()
    evaluation: Evaluation = Evaluation()
    compare: Compare = Compare()
    gate: list[GateSpec] = Field(default_factory=list)
    judge: JudgeConfig | None = None
    summary: dict[str, SummarySpec] | None = Field(
        default=None, description="summary groups: group name → metrics (optionally weighted), or "
        "{weight, metrics} to weigh the group in overall; default: one group per metric family plus cost")
    cost: Cost | None = Field(default=None, description="prices: per device hour and per kWh")

    @model_serializer(mode="wrap")
    def _omit_absent_tables(self, handler: Any) -> Any:
        """A suite without [judge], [summary] or [cost] dumps (and hashes) as before the tables existed."""
        data = handler(self)
        if isinstance(data, dict):
            for table in ("judge", "summary", "cost"):
                if data.get(table) is None:
                    data.pop(table, None)
        return data

    @field_validator("summary", mode="before")
    @classmethod
    def _summary_entries(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {group: [{"metric": e} if isinstance(e, str) else e for e in entries]
                    if isinstance(entries, list) else entries for group, entries in value.items()}
        return value

    @model_validator(mode="after")
    def _summary_names_suite_metrics(self) -> SuiteModel:
        known = {m.name for m in self.metrics} | set(COST_CRITERIA)
        for group, spec in (self.summary or {}).items():
            entries = spec.metrics if isinstance(spec, SummaryGroup) else spec
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", group):
                raise ValueError(f"summary group {group!r}: use letters, digits, '_' and '-'")
            if group.lower() == OVERALL_GROUP:
                raise ValueError(f"summary group {group!r}: {OVERALL_GROUP!r} is the column that averages "
                                 "the groups; give this group another name")
            if not entries:
                raise ValueError(f"summary group {group!r} lists no metrics")
            unknown = [e.metric for e in entries if e.metric not in known]
            if unknown:
                raise ValueError(f"summary group {group!r} names {unknown}, which the suite does not "
                                 f"measure; known: {', '.join(sorted(known))}")
        return self

    @model_validator(mode="after")
    def _judge_pairs_name_decoders(self) -> SuiteModel:
        if self.judge is not None:
            self.judge.pair_list([d.id for d in self.decoder])
        return self

    @field_validator("metrics", mode="before")
    @classmethod
    def _metric_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("sigmas")
    @classmethod
    def _sigma_range(cls, value: list[float]) -> list[float]:
        bad = [s for s in value if not 0 <= s <= 1]
        if bad:
            raise ValueError(f"each sigma must be in [0, 1], got {bad}")
        return value

    @model_validator(mode="after")
    def _early_stop_brings_its_sigma(self) -> SuiteModel:
        pipeline = getattr(self.source, "pipeline", None)
        if pipeline is not None and pipeline.stop_at_step is not None and self.sigmas != [0.0]:
            raise ValueError("source.pipeline.stop_at_step captures x_t with its own sigma; "
                             "set sigmas = [0.0]")
        return self
