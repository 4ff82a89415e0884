"""One protocol for every metric.

A metric has a name, a family, a direction and a version; it is loaded once
per run on the evaluation device, fed batches with `update()` and asked for
its values with `compute()`. Its `protocol()` (everything that determines
its numbers: data range, resize, crop, weights) is recorded and hashed with
every value. Metrics know nothing about decoders: they see image tensors in
[0, 1] and the keys (case ids) those images belong to.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import torch

from decoders.plugins import NoParams, Params


class Family(StrEnum):
    FULL_REFERENCE = "full_reference"
    NO_REFERENCE = "no_reference"
    DISTRIBUTION = "distribution"


class MetricUnavailable(RuntimeError):
    """A dependency or weight file is missing; the message says how to get it."""


@dataclass
class MetricValues:
    per_key: dict[str, float] = field(default_factory=dict)
    aggregate: float | None = None  # distribution metrics: one value for the whole set


class Metric(ABC):
    name: ClassVar[str]
    family: ClassVar[Family]
    higher_is_better: ClassVar[bool]
    version: ClassVar[str] = "1"
    summary: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = NoParams

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()
        self.device = torch.device("cpu")

    def load(self, device: torch.device) -> None:
        """Load models once. Raise MetricUnavailable when something is missing."""
        self.device = device

    def protocol(self) -> dict[str, Any]:
        """Everything that determines this metric's numbers."""
        return {"name": self.name, "version": self.version, "params": self.params.model_dump()}

    def protocol_sha256(self) -> str:
        canonical = json.dumps(self.protocol(), sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @abstractmethod
    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None) -> None:
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

    def update(self, keys: list[str], preds: torch.Tensor, targets: torch.Tensor | None) -> None:
        if self.family == Family.FULL_REFERENCE and targets is None:
            raise ValueError(f"{self.name} is full-reference and needs targets")
        values = self.score(preds, targets).double().cpu().tolist()
        self._values.update(zip(keys, values, strict=True))

    def compute(self) -> MetricValues:
        return MetricValues(per_key=dict(self._values))

    def reset(self) -> None:
        self._values.clear()
