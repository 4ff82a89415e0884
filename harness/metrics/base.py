"""One protocol for every metric: `update()` with batches, `compute()` the values, `reset()`.

Metrics know nothing about decoders: they see images in [0, 1], their keys (case ids) and an
`ImageContext` per image; `protocol()` (everything that determines the numbers) is recorded and
hashed with every value; `scope` says what a value belongs to (docs/metrics.md, the protocol).
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from decoders.lazy import torch
from decoders.plugins import NoParams, Params, Registry, UnknownName
from harness.errors import DecoderbenchError
from harness.metrics.direction import Direction


class Family(StrEnum):
    FULL_REFERENCE = "full_reference"
    NO_REFERENCE = "no_reference"
    DISTRIBUTION = "distribution"
    TEXT_ALIGNMENT = "text_alignment"
    SEED_VARIATION = "seed_variation"


# The summary group a family's metrics count towards by default (HELM-style win rates per group);
# a metric class may name another group, or None for a diagnostic that is shown but not ranked.
FAMILY_GROUPS: dict[str, str | None] = {
    "full_reference": "fidelity", "no_reference": "no_reference", "distribution": "distribution",
    "text_alignment": "text", "seed_variation": None,
}
FROM_FAMILY = "<the family's group>"


class Scope(StrEnum):
    IMAGE = "image"
    SEED_GROUP = "seed_group"
    SET = "set"


class MetricUnavailable(DecoderbenchError, RuntimeError):
    """A dependency or weight file is missing; the message says how to get it."""


class MetricWeightsMissing(MetricUnavailable):
    """A weight file of the lock table is not here: `decoderbench weights fetch` (or a run where
    the network is reachable) gets it. A run names such metrics in one line."""


@dataclass(frozen=True)
class ImageContext:
    """What a metric may know about one image besides its pixels."""

    case_id: str
    item_id: str
    prompt: str | None
    seed: int  # the decoder seed
    seed_group: str  # equal for cases that differ only in their decoder seed
    reference_key: str  # content hash of the case's reference image
    output_size: tuple[int, int]  # comparison size (width, height) of the image fed
    native_size: tuple[int, int] | None  # the decoder's output size before resampling
    facts: Mapping[str, Any] = field(default_factory=dict)  # decoder facts, e.g. "tile_grid"
    annotations: Mapping[str, Any] = field(default_factory=dict)  # source facts, e.g. "text_lines"
    input_sha256: str | None = None  # what the decoder's worker received (None: a prompt only)
    input_seed: int = 0  # the source's seed (latent noise, text-to-image generation)


@dataclass(frozen=True)
class ReferenceSet:
    """The reference images of one comparison size, for distribution metrics.

    `dataset_sha256` identifies the set's content (it hashes the content-addressed
    reference keys), so statistics computed from it can be cached on disk.
    """

    size: tuple[int, int]
    dataset_sha256: str
    count: int
    # batch size → (reference keys, uint8 [B, 3, H, W]) batches, in a fixed order
    batches: Callable[[int], Iterator[tuple[list[str], torch.Tensor]]] = field(repr=False)
    cache_dir: Path | None = None


@dataclass
class MetricValues:
    per_key: dict[str, float] = field(default_factory=dict)
    aggregate: float | None = None  # one value for the whole set (distribution metrics, GenEval, ...)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # key → extra record fields
    aggregate_details: dict[str, Any] = field(default_factory=dict)
    not_applicable: dict[str, str] = field(default_factory=dict)  # key → why it has no value
    artifacts: dict[str, torch.Tensor] = field(default_factory=dict)  # key → uint8 [3, H, W] image
    warnings: list[str] = field(default_factory=list)


class Metric(ABC):
    name: ClassVar[str]
    family: ClassVar[Family]
    # The direction is declared with these two (plug-ins written for earlier releases keep working);
    # everything that compares values asks `direction()`.
    higher_is_better: ClassVar[bool]
    target: ClassVar[float | None] = None  # when closest-to-target is best (e.g. a ratio to the reference)
    scope: ClassVar[Scope] = Scope.IMAGE
    summary_group: ClassVar[str | None] = FROM_FAMILY  # None: a diagnostic, shown but not ranked
    aggregates: ClassVar[bool] = False  # Scope.IMAGE: compute() also gives one value per set
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    unit: ClassVar[str] = ""  # what a value is measured in: "dB", "0–1", "distance (≈0–1)", ...
    Params: ClassVar[type[Params]] = NoParams
    requires: ClassVar[tuple[str, ...]] = ()  # Python packages load() imports (see check())

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()
        self.device = torch.device("cpu")
        self.weights_sha256: dict[str, str] = {}  # weight file → sha256, filled by load()

    @classmethod
    def direction(cls) -> Direction:
        direction = Direction.of(getattr(cls, "higher_is_better", None), cls.target)
        if direction is None:
            raise TypeError(f"metric {cls.__name__} declares no direction (higher_is_better or target)")
        return direction

    @classmethod
    def group(cls) -> str | None:
        """The summary group this metric counts towards (None: a diagnostic, not ranked)."""
        if cls.summary_group == FROM_FAMILY:
            return FAMILY_GROUPS.get(str(cls.family))
        return cls.summary_group

    @classmethod
    def min_side(cls, params: Params) -> int:
        """The smallest image side (px) this metric can score; suites comparing at smaller sizes
        are refused by `validate` instead of recording an error on every value."""
        return 1

    @classmethod
    def needs_targets(cls) -> bool:
        """Whether `update()` needs the reference image of every prediction."""
        return cls.family == Family.FULL_REFERENCE

    def load(self, device: torch.device) -> None:
        """Load models once. Raise MetricUnavailable when something is missing."""
        self.device = device

    def check(self) -> None:
        """Raise MetricUnavailable, saying how to get it, when something `load()` needs is missing
        here — a package in `requires`, a weight file of the lock table — without loading,
        hashing or the network (`decoderbench doctor` asks; `load()` still checks for itself)."""
        import importlib.util

        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                raise MetricUnavailable(f"{self.name} needs the Python package {module!r}: "
                                        "pip install 'decoderbench[metrics]'")
        from harness.metrics import weights

        try:
            weights.require(self.name)
        except weights.WeightsMissing as exc:
            raise MetricWeightsMissing(str(exc)) from None

    def protocol(self) -> dict[str, Any]:
        """Everything that determines this metric's numbers."""
        protocol: dict[str, Any] = {"name": self.name, "version": self.version,
                                    "params": self.params.model_dump(mode="json")}
        if self.weights_sha256:
            protocol["weights_sha256"] = dict(sorted(self.weights_sha256.items()))
        return protocol

    def protocol_sha256(self) -> str:
        canonical = json.dumps(self.protocol(), sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def set_reference(self, reference: ReferenceSet) -> None:  # noqa: B027 (optional hook)
        """Given the set's reference images before a `Scope.SET` metric is fed; others ignore it."""

    @abstractmethod
    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        """Add a batch: preds (and targets for full-reference) are [B, 3, H, W] in [0, 1]."""

    @abstractmethod
    def compute(self) -> MetricValues: ...

    @abstractmethod
    def reset(self) -> None: ...


class PerImageMetric(Metric):
    """A metric with one value per image; subclasses implement `score`."""

    def __init__(self, params: Params | None = None) -> None:
        super().__init__(params)
        self._values: dict[str, float] = {}

    @abstractmethod
    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """Return [B] values."""

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None,
               contexts: list[ImageContext] | None = None) -> None:
        if self.needs_targets() and targets is None:
            raise ValueError(f"{self.name} is full-reference and needs targets")
        values = self.score(preds, targets).double().cpu().tolist()
        self._values.update(zip(keys, values, strict=True))

    def compute(self) -> MetricValues:
        return MetricValues(per_key=dict(self._values))

    def reset(self) -> None:
        self._values.clear()


def check_gaps(metric: Metric, problems: list[str], lock_table: bool) -> None:
    """Raise one MetricUnavailable naming every gap found: `problems` (benchmark data, ...) and,
    when the metric runs the lock table's models (`lock_table`), its packages and weight files —
    so a check never passes a metric whose models or data are missing."""
    weights_missing = False
    if lock_table:
        try:
            Metric.check(metric)
        except MetricWeightsMissing as exc:
            problems, weights_missing = [*problems, str(exc)], True
    if problems:
        kind = MetricWeightsMissing if weights_missing and len(problems) == 1 else MetricUnavailable
        raise kind("\n".join(problems))


def require_weights(metric: Metric) -> dict[str, Path]:
    """Paths of the weight files `metric` loads (see harness/metrics/weights.py); records their sha256.

    Raises MetricUnavailable — without touching the network — when a file is missing
    or contradicts the lock table.
    """
    from harness.metrics import weights

    try:
        paths = weights.require(metric.name)
    except weights.WeightsMissing as exc:
        raise MetricWeightsMissing(str(exc)) from None
    try:
        metric.weights_sha256 = weights.checked_sha256(metric.name, paths)
    except weights.WeightsMissing as exc:  # present, but not the file of the lock table
        raise MetricUnavailable(str(exc)) from None
    return paths


def load_backend(registry: Registry, name: str, device: torch.device,
                 options: Mapping[str, Any] | None = None) -> Any:
    """Create and load a plug-in backend (a detector, a VQA model) by name; an unknown name or
    missing plug-in makes the metric unavailable rather than failing the run. A backend with a
    `Params` model gets the metric's `backend_options` validated by it (see `backend_params`)."""
    try:
        cls = registry.get(name)
    except UnknownName as exc:
        raise MetricUnavailable(str(exc)) from None
    try:
        params = backend_params(cls, name, options or {})
    except ValueError as exc:
        raise MetricUnavailable(str(exc)) from None
    backend = cls(params) if params is not None else cls()
    backend.load(device)
    return backend


def backend_params(cls: type, name: str, options: Mapping[str, Any]) -> Params | None:
    """A backend's validated options (None for a backend without a `Params` model); ValueError
    with every problem when they do not fit."""
    model = getattr(cls, "Params", None)
    if model is None:
        if options:
            raise ValueError(f"backend {name!r} takes no options, got {sorted(options)}")
        return None
    from pydantic import ValidationError

    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        known = ", ".join(model.model_fields)
        problems = [f"unknown key {'.'.join(map(str, e['loc']))!r} (known: {known})"
                    if e["type"] == "extra_forbidden" else f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                    for e in exc.errors()]
        raise ValueError(f"backend {name!r} options: {'; '.join(problems)}") from None


def check_backend_options(params: Any, registry: Registry) -> Any:
    """For a metric's Params validator: `backend_options` must fit the named backend's Params
    where the backend can be imported (an unknown backend is reported when the metric loads)."""
    try:
        cls = registry.get(params.backend)
    except Exception:  # unknown, or a plug-in that fails to import: load() says so
        return params
    backend_params(cls, params.backend, params.backend_options)
    return params


def pixel_chunks(images: torch.Tensor, max_pixels: int) -> Iterator[slice]:
    """Slices of a batch [B, C, H, W] with at most `max_pixels` pixels each (at least one image):
    how a metric with a network bounds its memory on large images."""
    per_chunk = max(1, max_pixels // (images.shape[-2] * images.shape[-1]))
    for start in range(0, images.shape[0], per_chunk):
        yield slice(start, start + per_chunk)
