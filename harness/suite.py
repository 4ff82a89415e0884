"""Suite files: TOML data → a validated, hashed `Suite`.

A suite says what to feed (source, resolutions, seeds, noise levels), which
decoders and metrics to run, how to time them and which gates to apply. It
is data, never code: decoders, encoders and metrics are named through their
registries. Every problem is reported with the file, the key path
(`decoder[2].params.tile_size`, indices from 0) and what was expected; all
problems of a file are reported at once.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from decoders.base import Consumes
from decoders.compiled import requests_compile
from decoders.plugins import NoParams, Registry, UnknownName
from decoders.plugins import Params as ComponentParams
from decoders.registry import DECODERS, ENCODERS
from decoders.resample import Method
from decoders.spaces import SPACES, get_space
from decoders.t2i import FAMILIES, PipelineParams
from harness.cases import Case, Item, expand
from harness.errors import DecoderbenchError
from harness.gates.spec import GateSpec, gate_problems
from harness.judge.config import JudgeConfig
from harness.metrics import METRICS
from harness.store import PathProblem, read_regular
from harness.workers.energy import DEFAULT_MIN_BLOCK_S

Size = tuple[int, int]  # (width, height)
Loc = tuple[str | int, ...]
Problem = tuple[str, str, str]  # (file, key path, message)
BUILTIN_PREFIX = "builtin:"


class SuiteError(DecoderbenchError):
    """One or more problems in a suite; str() gives one 'file: key: message' per line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{f}: {k}: {m}" if k else f"{f}: {m}" for f, k, m in problems))


# --------------------------------------------------------------------------- schema


class _Strict(BaseModel):
    # strict: `repeats = true` or `batch_size = 2.0` is an error, not a silent 1 or 2;
    # finite: `timeout_s = inf` or `weight = nan` is an error, not a number JSON cannot hold
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


MAX_SEED = 2**63 - 1  # torch and numpy generators take 64-bit seeds; JSON readers keep int64 exact
# The largest image side a suite may ask for. One comparison reference is resized in float64
# (3 × 8 bytes per pixel): at 16384² that is 6.4 GB, the most a workstation can prepare;
# 100000² would be 240 GB, and 400000² (input 100000 at output_scale 4) 3.8 TB.
MAX_SIDE = 16384
REFERENCE_BYTES_PER_PIXEL = 3 * 8


def _seed(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"a seed must be an integer in [0, 2**63 - 1] (64-bit generators), got {value}")
    return value


Seed = Annotated[int, AfterValidator(_seed)]
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


def _device(value: str) -> str:
    if not DEVICE_PATTERN.fullmatch(value):
        raise ValueError(f"expected cpu, cuda or cuda:N (N a GPU index), got {value!r}")
    return value


Device = Annotated[str, AfterValidator(_device)]
# More threads than any machine has cores: a typo (100000 makes torch fail to start its pool).
MAX_THREADS = 1024


def _size(value: Any) -> Any:
    """Accept 512 for a square or [width, height]."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    return tuple(value) if isinstance(value, list) else value


def _bytes(count: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} bytes"


class ComponentEntry(_Strict):
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


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


class ImagesSource(_Strict):
    kind: Literal["images"]
    builtin: list[str] = Field(default_factory=list)
    folder: str | None = None
    manifest: str | None = None
    limit: int | None = Field(default=None, ge=1)
    encoder: ComponentEntry = ComponentEntry(name="pixels")

    @field_validator("encoder", mode="before")
    @classmethod
    def _encoder_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _some_images(self) -> ImagesSource:
        if not (self.builtin or self.folder or self.manifest):
            raise ValueError("an images source needs at least one of builtin, folder, manifest")
        return self


class LatentsSource(_Strict):
    """Latents users bring: safetensors files (tensor "latent", [C, h, w] normalized)."""

    kind: Literal["latents"]
    space: str = Field(description="latent space of the files (decoders.spaces)")
    folder: str | None = None  # every *.safetensors (prompt: sidecar .txt)
    manifest: str | None = None  # JSON lines {"latent", "id", "prompt", "reference"}
    synthetic: int | None = Field(
        default=None, ge=1, description="instead of files: N standard-normal latents per input size "
        "(performance suites: latency and memory do not depend on latent values)")
    limit: int | None = Field(default=None, ge=1)

    @field_validator("space")
    @classmethod
    def _known_space(cls, value: str) -> str:
        if value not in SPACES:
            raise ValueError(f"unknown latent space {value!r}; known: {', '.join(SPACES)}")
        return value

    @model_validator(mode="after")
    def _one_origin(self) -> LatentsSource:
        if bool(self.folder or self.manifest) == bool(self.synthetic):
            raise ValueError("a latents source needs folder and/or manifest, or synthetic (not both)")
        return self


class PromptsSource(_Strict):
    """The "from text" protocol: prompts, turned into latents by a text-to-image pipeline."""

    kind: Literal["prompts"]
    prompts: list[str] = Field(default_factory=list)
    file: str | None = None  # one prompt per line, or JSON lines {"prompt", "id"}
    benchmark: list[Literal["geneval", "dpg-bench"]] = Field(
        default_factory=list, description="official prompt sets by name, each prompt annotated with its "
        "benchmark metadata for the geneval / dpg_bench metrics (`decoderbench benchmarks fetch NAME`)")
    limit: int | None = Field(default=None, ge=1)
    pipeline: PipelineParams | None = Field(
        default=None, description="the text-to-image pipeline producing latents; without one, only "
        "decoders that take the prompt themselves (text-to-pixel) can run")

    @model_serializer(mode="wrap")
    def _omit_no_benchmark(self, handler: Any) -> Any:
        """A source without benchmarks dumps (and hashes) exactly as before the key existed."""
        data = handler(self)
        if isinstance(data, dict) and not data.get("benchmark"):
            data.pop("benchmark", None)
        return data

    @field_validator("benchmark", mode="before")
    @classmethod
    def _one_benchmark(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _some_prompts(self) -> PromptsSource:
        if not (self.prompts or self.file or self.benchmark):
            raise ValueError("a prompts source needs prompts, file and/or benchmark")
        return self


Source = Annotated[ImagesSource | LatentsSource | PromptsSource, Field(discriminator="kind")]
SOURCE_KINDS = ("images", "latents", "prompts")


class Resolution(_Strict):
    input: list[tuple[int, int]] = Field(min_length=1)
    output_scale: float | None = Field(default=None, gt=0)
    output: list[tuple[int, int]] | None = None

    @field_validator("input", "output", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return [_size(value)]
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
            return [tuple(value)]  # a single [width, height]
        return [_size(v) for v in value] if isinstance(value, list) else value

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
            f"takes {_bytes(need)} while it is prepared (float64 RGB)")


class Timing(_Strict):
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


class Cost(_Strict):
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


class Compare(_Strict):
    resampler: Method = "lanczos"


class Evaluation(_Strict):
    device: Device | None = None
    batch_size: int = Field(default=8, ge=1)


COST_CRITERIA = ("latency", "memory", "energy")  # what a [summary] group may rank besides metrics
OVERALL_GROUP = "overall"  # the summary's column that averages the groups: no group may take its name


class SummaryEntry(_Strict):
    metric: str = Field(description="a metric of the suite, or latency / memory / energy")
    weight: float = Field(default=1.0, gt=0, allow_inf_nan=False)


class SummaryGroup(_Strict):
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


class SuiteModel(_Strict):
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


def _requested_sizes(spec: Any, model: SuiteModel) -> list[tuple[float, float]]:
    """The output sizes a decoder will be asked for: its native scale's, else the comparison size."""
    return [output if spec.native_scale is None else (w * spec.native_scale, h * spec.native_scale)
            for (w, h), output in model.resolution.pairs()]


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Suite:
    """A validated suite: the model, where it came from and its hash."""

    model: SuiteModel
    path: Path
    texts: dict[str, str]  # every file read (include chain), name → text
    decoder_params: dict[str, ComponentParams]  # decoder id → validated params
    encoder_params: ComponentParams
    metric_params: dict[str, ComponentParams]

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @cached_property
    def sha256(self) -> str:
        """Hash of the resolved configuration (formatting and include layout do not count)."""
        canonical = json.dumps(self.model.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def expand(self, items: list[Item], source_protocol: dict[str, Any]) -> list[Case]:
        """The suite's cases for these items (harness.cases.expand with its sizes, sigmas, seeds)."""
        model = self.model
        try:
            return expand(items, model.resolution.pairs(), model.sigmas, model.seeds, source_protocol,
                          model.input_seeds)
        except ValueError as exc:  # the schema rejects repeated values; two equal items remain
            raise SuiteError([(str(self.path), "", str(exc))]) from None

    def resolve_path(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def with_overrides(self, **timing: Any) -> Suite:
        """A copy with timing settings replaced (--device, --dtype, --gpus from the command line),
        validated as the suite is: OverrideError names the option, before anything is written."""
        changed = {k: v for k, v in timing.items() if v is not None}
        if not changed:
            return self
        try:
            Timing.model_validate({**self.model.timing.model_dump(mode="json"), **changed})
        except ValidationError as exc:
            raise OverrideError([
                ("command line", OVERRIDE_OPTIONS.get(str(e["loc"][0]), f"timing.{e['loc'][0]}"),
                 _message(e, sorted(Timing.model_fields))) for e in exc.errors()]) from None
        raw = self.model.model_dump(mode="json")
        raw["timing"] = {**raw["timing"], **changed}
        return validate_raw(raw, self.path, self.texts)

    def with_price(self, gpu_hour: float | None) -> Suite:
        """A copy whose [cost] gpu_hour is `gpu_hour` (--gpu-hour-price); the rest of [cost] stays."""
        if gpu_hour is None:
            return self
        current = self.model.cost.model_dump() if self.model.cost else {}
        try:
            cost = Cost.model_validate({**current, "gpu_hour": gpu_hour})
        except ValidationError as exc:
            raise SuiteError([("--gpu-hour-price", "", _message(exc.errors()[0], []))]) from None
        return Suite(self.model.model_copy(update={"cost": cost}), self.path, self.texts,
                     self.decoder_params, self.encoder_params, self.metric_params)


OVERRIDE_OPTIONS = {"device": "--device", "dtype": "--dtype", "gpus": "--gpus"}


class OverrideError(SuiteError):
    """A command-line override the suite cannot take (`--device tpu`, `--dtype int8`)."""


def builtin_suites_dir() -> Path:
    packaged = resources.files("harness") / "builtin_suites"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "suites"  # source checkout


def resolve_suite_path(spec: str, relative_to: Path | None = None) -> Path:
    """`builtin:smoke`, a bare built-in name, or a path (relative to `relative_to`)."""
    if spec.startswith(BUILTIN_PREFIX):
        return builtin_suites_dir() / f"{spec.removeprefix(BUILTIN_PREFIX)}.toml"
    path = Path(spec).expanduser()
    if not path.is_absolute() and relative_to is not None:
        path = relative_to / path
    if not path.exists() and relative_to is None and "/" not in spec and not spec.endswith(".toml"):
        builtin = builtin_suites_dir() / f"{spec}.toml"
        if builtin.exists():
            return builtin
    return path


def load_suite(spec: str | Path) -> Suite:
    path = resolve_suite_path(str(spec))
    if not path.exists() and "/" not in str(spec) and not str(spec).endswith(".toml"):
        names = sorted(p.stem for p in builtin_suites_dir().glob("*.toml"))
        close = difflib.get_close_matches(str(spec).removeprefix(BUILTIN_PREFIX), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise SuiteError([(str(spec), "", f"no suite file and no built-in suite of this name; {hint}"
                                          f"built-in suites: {', '.join(names)}")])
    texts: dict[str, str] = {}
    raw, origins = _read_with_includes(path, texts, chain=())
    return validate_raw(raw, path, texts, origins)


def validate_raw(
    raw: dict[str, Any],
    path: Path,
    texts: dict[str, str] | None = None,
    origins: dict[Loc, str] | None = None,
) -> Suite:
    """Validate a suite's (include-merged) data; report every problem at once."""
    where = _Locator(str(path), origins or {})
    problems: list[Problem] = []
    model: SuiteModel | None = None
    try:
        model = SuiteModel.model_validate(raw)
    except ValidationError as exc:
        problems.extend(where.problem(_error_loc(e), _schema_message(e, raw)) for e in exc.errors())
    # Registry checks read the raw data, so they run (and report) even when the schema failed.
    checks = _ComponentChecks(where, problems)
    encoder_params, space = checks.source(raw, model)
    decoder_params = checks.decoders(raw, space, model)
    metric_params = checks.metrics(raw, model)
    problems.extend(where.problem(loc, message) for loc, message in gate_problems(raw))
    problems.extend(where.problem(loc, message) for loc, message in _duplicate_problems(raw))
    if problems or model is None or encoder_params is None:
        raise SuiteError(list(dict.fromkeys(problems)))
    return Suite(model, path, texts or {}, decoder_params, encoder_params, metric_params)


def _duplicate_problems(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """A value listed twice would make the same case twice: name the key, the index and the first."""
    lists: list[tuple[Loc, Any]] = [((key,), raw.get(key)) for key in ("seeds", "input_seeds", "sigmas")]
    source, resolution = raw.get("source"), raw.get("resolution")
    if isinstance(source, dict):
        lists.append((("source", "builtin"), source.get("builtin")))
    if isinstance(resolution, dict):
        inputs, outputs = _raw_sizes(resolution.get("input")), _raw_sizes(resolution.get("output"))
        if inputs is not None and outputs is not None and len(outputs) == len(inputs):
            inputs = list(zip(inputs, outputs, strict=True))  # a size may repeat with another output
        lists.append((("resolution", "input"), inputs))
    problems: list[tuple[Loc, str]] = []
    for loc, values in lists:
        seen: dict[Any, int] = {}
        for index, value in enumerate(values if isinstance(values, list) else []):
            key = (type(value) is bool, value) if isinstance(value, int | float | str | tuple) else None
            if key is None:
                continue
            if key in seen:
                first = _format_loc((*loc, seen[key]))
                problems.append(((*loc, index), f"{_shown(value)} is listed twice (first as {first}); "
                                 "a repeated value would make the same cases twice"))
            else:
                seen[key] = index
    return problems


def _raw_sizes(value: Any) -> list[Any] | None:
    """resolution.input / output as written, one entry per size (as Resolution reads them)."""
    def size(v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return (v, v)
        return tuple(v) if isinstance(v, list) and all(isinstance(x, int) for x in v) else None

    if isinstance(value, int) or (isinstance(value, list) and len(value) == 2 and
                                  all(isinstance(v, int) for v in value)):
        return [size(value)]
    return [size(v) for v in value] if isinstance(value, list) else None


def _shown(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], tuple):
        return f"{_shown(value[0])} → {_shown(value[1])}"
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return repr(value)


def _error_loc(error: dict[str, Any]) -> Loc:
    """Key path of a schema error: the source's kind tag is not a key of the file."""
    loc = tuple(error["loc"])
    if loc[:1] == ("source",) and len(loc) > 1 and loc[1] in SOURCE_KINDS:
        loc = (loc[0], *loc[2:])
    if loc[:1] == ("summary",) and len(loc) > 2 and loc[2] in ("list", "table"):  # a group's form
        loc = (*loc[:2], *loc[3:])
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "kind")
    return loc


MAX_SUITE_BYTES = 1 << 20  # a suite is a page of TOML; 1 MiB is far beyond any
MAX_INCLUDE_DEPTH = 32  # a chain of base suites this long is a loop in disguise, not a design
MAX_NESTING = 16  # tables and arrays inside each other; a suite's deepest key is 5 levels down


def _read_with_includes(
    path: Path, texts: dict[str, str], chain: tuple[Path, ...]
) -> tuple[dict[str, Any], dict[Loc, str]]:
    name = str(path)
    where = f"{chain[-1]}" if chain else name
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
        raise SuiteError([(where, "include" if chain else "", f"{path}: a symbolic link loop")]) from None
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise SuiteError([(name, "include", f"include cycle: {cycle}")])
    if len(chain) >= MAX_INCLUDE_DEPTH:
        raise SuiteError([(where, "include", f"include chain deeper than {MAX_INCLUDE_DEPTH} files "
                           f"(from {chain[0]})")])
    try:
        data = read_regular(path, MAX_SUITE_BYTES)
    except PathProblem as exc:
        problem = str(exc)
        if problem == "not found":
            raise SuiteError([(where, "include" if chain else "", f"suite file not found: {path}")]) from None
        raise SuiteError([(name, "", f"cannot read suite file: {problem}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError([(name, "", f"cannot read suite file: not UTF-8 text ({exc.reason} at byte "
                           f"{exc.start})")]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError([(name, "", f"invalid TOML: {exc}")]) from None
    except RecursionError:
        raise SuiteError([(name, "", f"invalid suite: tables or arrays nested too deeply (a suite "
                           f"nests at most {MAX_NESTING} levels)")]) from None
    deep = _too_deep(raw)
    if deep is not None:
        raise SuiteError([(name, _format_loc(deep), f"nested more than {MAX_NESTING} levels deep: "
                           "no suite key is")])
    texts[name] = text
    include = raw.pop("include", None)
    includes = [include] if isinstance(include, str) else include or []
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise SuiteError([(name, "include", "expected a suite path or a list of suite paths")])
    merged: dict[str, Any] = {}
    origins: dict[Loc, str] = {}
    for spec in includes:
        base_path = resolve_suite_path(spec, relative_to=path.parent)
        base, base_origins = _read_with_includes(base_path, texts, (*chain, resolved))
        merged = _deep_merge(merged, base)
        origins.update(base_origins)
    for loc in _leaf_locs(raw):
        origins = {k: v for k, v in origins.items() if k[: len(loc)] != loc}
        origins[loc] = name
    return _deep_merge(merged, raw), origins


def _too_deep(raw: Any) -> Loc | None:
    """The key path of a value nested deeper than MAX_NESTING, or None (iterative: no recursion)."""
    stack: list[tuple[Any, Loc]] = [(raw, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_NESTING:
            return loc[:MAX_NESTING + 1]
        if isinstance(value, dict):
            stack.extend((v, (*loc, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*loc, i)) for i, v in enumerate(value))
    return None


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; everything else (arrays of tables too) is replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _leaf_locs(raw: dict[str, Any], prefix: Loc = ()) -> list[Loc]:
    locs: list[Loc] = []
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            locs.extend(_leaf_locs(value, (*prefix, key)))
        else:
            locs.append((*prefix, key))
    return locs


class _Locator:
    """Names the file a key came from (the includer or an included base suite)."""

    def __init__(self, top: str, origins: dict[Loc, str]) -> None:
        self.top, self.origins = top, origins

    def problem(self, loc: Loc, message: str) -> Problem:
        for cut in range(len(loc), 0, -1):
            if loc[:cut] in self.origins:
                return (self.origins[loc[:cut]], _format_loc(loc), message)
        return (self.top, _format_loc(loc), message)


def _format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(error: dict[str, Any], known_keys: list[str]) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        table = ".".join(str(part) for part in error["loc"][:-1] if isinstance(part, str))
        elsewhere = [path for path in _SCHEMA_PATHS.get(key, []) if path.rpartition(".")[0] != table]
        if 0 < len(elsewhere) <= 2:  # a real key in the wrong table: say where it goes
            return f"unknown key {key!r} here; it belongs in {' or '.join(elsewhere)}"
        close = difflib.get_close_matches(key, [k for k in known_keys if k != key], n=1)
        hint = f"did you mean {close[0]!r}?" if close else "not a key of this table"
        return f"unknown key {key!r} ({hint})"
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "union_tag_invalid":
        return f"expected one of {error['ctx']['expected_tags']}, got {error['ctx']['tag']!r}"
    if kind == "union_tag_not_found":
        return f"required key is missing (one of {', '.join(map(repr, SOURCE_KINDS))})"
    for prefix, replacement in _PHRASES:
        if msg.startswith(prefix):
            msg = replacement + msg.removeprefix(prefix)
            break
    return f"{msg}, got {error['input']!r}"


_PHRASES = (
    ("Input should be ", "expected "),
    ("String should match pattern ", "expected a string matching pattern "),
    ("String should have ", "expected a string with "),
    ("List should have ", "expected a list with "),
    ("Field required", "required key is missing"),
)


def _field_names(model: type[BaseModel]) -> list[str]:
    names: list[str] = []
    for name, field in model.model_fields.items():
        names.append(name)
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                names.extend(_field_names(candidate))
    return sorted(set(names))


def _field_paths(model: type[BaseModel], prefix: str = "") -> dict[str, list[str]]:
    """Every key of the schema → the dotted paths where it is valid (`repeats` → timing.repeats)."""
    paths: dict[str, list[str]] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.setdefault(name, []).append(path)
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                for key, found in _field_paths(candidate, f"{path}.").items():
                    paths.setdefault(key, []).extend(p for p in found if p not in paths[key])
    return paths


_SCHEMA_KEYS = _field_names(SuiteModel)
_TOP_KEYS = sorted(SuiteModel.model_fields)


def _schema_message(error: dict[str, Any], raw: dict[str, Any]) -> str:
    """A schema error's message; at the top level, spelling hints come from the top-level keys, and
    a missing key names the misspelt one the file holds instead (`[[decoders]]` for `[[decoder]]`)."""
    loc = error["loc"]
    top = len(loc) == 1
    message = _message(error, _TOP_KEYS if top else _SCHEMA_KEYS)
    if top and error["type"] == "missing":
        unknown = [key for key in raw if key not in SuiteModel.model_fields and key != "include"]
        close = difflib.get_close_matches(str(loc[0]), unknown, n=1)
        if close:
            message += f" (the file has {close[0]!r}: did you mean {loc[0]!r}?)"
    return message


_SCHEMA_PATHS = _field_paths(SuiteModel)


class _ComponentChecks:
    """Look up named components in their registries and validate their params."""

    def __init__(self, where: _Locator, problems: list[Problem]) -> None:
        self.where, self.problems = where, problems

    def _report(self, loc: Loc, message: str) -> None:
        self.problems.append(self.where.problem(loc, message))

    def _lookup(self, registry: Registry, name: Any, loc: Loc) -> type | None:
        if not isinstance(name, str):
            return None  # the schema check reports it
        try:
            return registry.get(name)
        except UnknownName as exc:
            self._report((*loc, "name"), str(exc))
        except Exception as exc:  # a plug-in that fails to import is a suite problem too
            self._report((*loc, "name"), f"cannot import {name!r}: {exc}")
        return None

    def _params(self, cls: type, params: Any, loc: Loc) -> ComponentParams | None:
        if not isinstance(params, dict):
            return None  # the schema check reports it
        try:
            return cls.Params.model_validate(params)
        except ValidationError as exc:
            fields = list(cls.Params.model_fields)
            for e in exc.errors():
                message = _message(e, fields)
                if not fields:
                    component = getattr(getattr(cls, "spec", cls), "name", loc[0])
                    message = f"unknown key {e['loc'][-1]!r} ({component!r} takes no parameters)"
                self._report((*loc, "params", *e["loc"]), message)
        return None

    def source(self, raw: dict[str, Any], model: SuiteModel | None
               ) -> tuple[ComponentParams | None, str | None]:
        """(encoder params, latent space the source produces, None if it produces no latents)."""
        source = raw.get("source") if isinstance(raw.get("source"), dict) else {}
        kind = source.get("kind")
        if kind == "images":
            encoder_params, space = self._encoder(source)
        elif kind == "latents":
            encoder_params, space = NoParams(), source.get("space") if source.get("space") in SPACES else None
        elif kind == "prompts":
            pipeline = source.get("pipeline")
            family = FAMILIES.get(pipeline.get("family")) if isinstance(pipeline, dict) else None
            encoder_params, space = NoParams(), family.space if family else None
        else:
            return NoParams(), None
        self._check_factor(model, space)
        return encoder_params, space

    def _encoder(self, source: dict[str, Any]) -> tuple[ComponentParams | None, str | None]:
        entry = source.get("encoder", "pixels")
        entry = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict):
            return None, None
        loc: Loc = ("source", "encoder")
        cls = self._lookup(ENCODERS, entry.get("name"), loc)
        if cls is None:
            return None, None
        params = self._params(cls, entry.get("params", {}), loc)
        return params, cls.spec_for(params).latent_space if params is not None else None

    def _check_factor(self, model: SuiteModel | None, space: str | None) -> None:
        if space is None or model is None:
            return
        for i, size in enumerate(model.resolution.input):
            try:
                get_space(space).latent_shape(size)
            except ValueError as exc:
                self._report(("resolution", "input", i), str(exc))

    def decoders(self, raw: dict[str, Any], space: str | None,
                 model: SuiteModel | None = None) -> dict[str, ComponentParams]:
        params: dict[str, ComponentParams] = {}
        entries = raw.get("decoder")
        source = raw.get("source") if isinstance(raw.get("source"), dict) else {}
        seen: set[str] = set()
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict):
                continue
            loc: Loc = ("decoder", i)
            decoder_id = entry.get("label") or entry.get("name")
            if isinstance(decoder_id, str) and decoder_id in seen:
                self._report((*loc, "label"),
                             f"decoder id {decoder_id!r} is used twice; give each row a unique label")
            seen.add(str(decoder_id))
            cls = self._lookup(DECODERS, entry.get("name"), loc)
            if cls is None:
                continue
            validated = self._params(cls, entry.get("params", {}), loc)
            spec = cls.spec_for(validated) if validated is not None else cls.spec
            if spec.consumes == Consumes.LATENT:
                self._check_space(loc, spec, space, source)
            self._check_multiple(loc, spec, model)
            if validated is not None:
                self._check_decoder_params(loc, cls, spec, validated, model)
            if validated is not None and isinstance(decoder_id, str):
                params[decoder_id] = validated
        return params

    def _check_multiple(self, loc: Loc, spec: Any, model: SuiteModel | None) -> None:
        """Output sides the decoder will be asked for must be multiples it accepts."""
        if model is None or spec.size_multiple == 1:
            return
        for size in _requested_sizes(spec, model):
            if size[0] % spec.size_multiple or size[1] % spec.size_multiple:
                self._report((*loc, "name"), f"decoder {spec.name!r} makes sides in multiples of "
                             f"{spec.size_multiple}, not {size[0]:g}x{size[1]:g}")
                return

    def _check_decoder_params(self, loc: Loc, cls: Any, spec: Any, params: ComponentParams,
                              model: SuiteModel | None) -> None:
        """The decoder's own size rules, and compilation only where there is a warm-up to hold it."""
        if model is None:
            return
        if requests_compile(params) and model.timing.warmup == 0:
            self._report((*loc, "params", "compile"), "compile = true needs timing.warmup >= 1: "
                         "compilation happens in the warm-up calls, never in timed ones")
        for size in _requested_sizes(spec, model):
            problem = cls.size_problem(params, (int(size[0]), int(size[1])))
            if problem is not None:
                self._report((*loc, "name"), problem)
                return

    def _check_space(self, loc: Loc, spec: Any, space: str | None, source: dict[str, Any]) -> None:
        if source.get("kind") == "prompts" and source.get("pipeline") is None:
            self._report((*loc, "name"), f"decoder {spec.name!r} consumes latents, but the prompts "
                         "source has no pipeline to make them (add [source.pipeline])")
        elif space is not None and space not in spec.latent_spaces:
            self._report((*loc, "name"), f"decoder {spec.name!r} consumes latent spaces "
                         f"{list(spec.latent_spaces)}, but the source produces {space!r}")

    def metrics(self, raw: dict[str, Any], model: SuiteModel | None = None) -> dict[str, ComponentParams]:
        params: dict[str, ComponentParams] = {}
        entries = raw.get("metrics")
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            entry = {"name": entry} if isinstance(entry, str) else entry
            if not isinstance(entry, dict):
                continue
            loc: Loc = ("metrics", i)
            name = entry.get("name")
            if isinstance(name, str) and name in params:
                self._report((*loc, "name"), f"metric {name!r} is listed twice")
                continue
            cls = self._lookup(METRICS, name, loc)
            if cls is None:
                continue
            validated = self._params(cls, entry.get("params", {}), loc)
            if validated is not None:
                params[str(name)] = validated
                self._check_min_side(str(name), cls, validated, loc, model)
        return params

    def _check_min_side(self, name: str, cls: Any, params: ComponentParams, loc: Loc,
                        model: SuiteModel | None) -> None:
        """A metric that cannot score images this small would record an error on every value."""
        if model is None:
            return
        need = cls.min_side(params)
        small = [output for _, output in model.resolution.pairs() if min(output) < need]
        if small:
            w, h = small[0]
            self._report((*loc, "name"), f"{name} needs comparison images of at least {need} px per side; "
                         f"this suite compares at {w}x{h} (every value would be an error)")
