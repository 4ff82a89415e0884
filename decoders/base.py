"""The protocol every decoder (and encoder) family implements.

This package is the lower layer: it knows nothing about suites, run stores,
metrics or reports. The harness imports it; it never imports the harness.

A decoder family is one module with one or more `Decoder` subclasses. Each
declares a static `spec` (what it consumes, whether it is stochastic, its
native scale) and a pydantic `Params` model (its suite parameters; unknown
keys are errors). Heavy libraries are imported inside `load()`, so that
listing and validating decoders stays cheap.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from decoders.lazy import torch
from decoders.plugins import NoParams, Params


class Consumes(StrEnum):
    """What a decoder takes as input."""

    LATENT = "latent"  # a tensor in a named latent space ("pixels" is one of them)
    PROMPT = "prompt"  # text-to-pixel generation from prompt and seed alone


@dataclass(frozen=True)
class DecoderSpec:
    name: str
    consumes: Consumes
    latent_spaces: tuple[str, ...] = ()
    stochastic: bool = False
    needs_prompt: bool = False
    # Output pixels per input-image pixel (a VAE: 1.0, PiD: 4.0). None means the
    # decoder produces whatever size it is asked for.
    native_scale: float | None = None
    size_multiple: int = 1  # output sides must be multiples of this (besides the latent factor)
    summary: str = ""
    requires_cuda: bool = False  # runs on a CUDA device only


@dataclass(frozen=True)
class EncoderSpec:
    name: str
    latent_space: str
    # True for cheap, weight-free encoders that may run in the runner process; learned
    # encoders run in a spawned source worker on the suite's device.
    in_process: bool = False
    summary: str = ""


@dataclass
class DecodeBatch:
    """One decode call. Tensors are already on the decoder's device and dtype."""

    latents: torch.Tensor | None  # [B, C, h, w]; None for prompt decoders
    input_size: tuple[int, int]  # (width, height) of the image the latents stand for
    output_size: tuple[int, int]  # (width, height) the harness asks for
    seeds: list[int]
    sigmas: list[float]
    prompts: list[str | None] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.seeds)


class DecoderUnavailable(RuntimeError):
    """A dependency or weight file is missing. The message says how to get it."""


class _Component(ABC):
    Params: ClassVar[type[Params]] = NoParams
    # Modules load() imports that a worker forkserver may import ahead (import only: a module
    # named here must not initialise a device when imported).
    preload: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Params | None = None) -> None:
        self.params = params if params is not None else self.Params()

    @abstractmethod
    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        """Load weights once. Raise DecoderUnavailable when something is missing."""

    def check(self) -> None:  # noqa: B027 (optional hook)
        """Raise DecoderUnavailable, with what to install or fetch, when something this component
        needs is missing here — a package, a checkout, a weight file — without loading anything,
        importing its heavy libraries or hashing files, and without touching the network
        (`decoderbench list decoders` and `doctor` ask; `load()` still checks for itself).
        Call it inside `decoders.weights.cache_only()`."""

    def weights(self) -> dict[str, str]:
        """Weight files (or ids) used, mapped to their sha256, for the manifest.

        Callable before `load()`: it resolves and hashes files without building a model,
        so that a cache key can name the weights without loading them.
        """
        return {}

    def facts(self) -> dict[str, Any]:
        """Extra facts worth recording with every result (tile grid, steps, ...)."""
        return {}


class Decoder(_Component):
    spec: ClassVar[DecoderSpec]

    @classmethod
    def spec_for(cls, params: Params) -> DecoderSpec:
        """The spec as configured by `params` (latent space, native scale); default: `spec`."""
        return cls.spec

    @classmethod
    def size_problem(cls, params: Params, size: tuple[int, int]) -> str | None:
        """Why this decoder cannot make an output of `size` = (width, height), beyond its spec's
        size multiple; None when it can. Suites check it before anything loads."""
        return None

    @abstractmethod
    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        """Return [B, 3, H, W] floats in [0, 1] on the decoder's device."""

    def stage_times_ms(self) -> dict[str, float]:
        """Per-stage wall times of the last decode, for multi-stage decoders."""
        return {}


class Encoder(_Component):
    spec: ClassVar[EncoderSpec]

    @classmethod
    def spec_for(cls, params: Params) -> EncoderSpec:
        """The spec as configured by `params` (e.g. which VAE); default: `spec`."""
        return cls.spec

    @abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Map [B, 3, H, W] images in [0, 1] to latents in the encoder's latent space."""
