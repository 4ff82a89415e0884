"""The `[source]` table of a suite: images, latents users bring, or prompts (docs/suites.md).

One table, told apart by `kind`; each kind says what it needs (at least one origin of its items).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_serializer,
    model_validator,
)

from decoders.spaces import SPACES
from decoders.t2i import PipelineParams
from harness.suite.fields import ComponentEntry, Strict


class ImagesSource(Strict):
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


class LatentsSource(Strict):
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


class PromptsSource(Strict):
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
