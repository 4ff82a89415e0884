"""The suite's optional [judge] table: which judge, which criteria, which pairs, what it may spend."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.judge.prompts import BUILTIN_CRITERIA, Criterion

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class CustomCriterion(_Strict):
    """A criterion of the user's own: the question the judge answers."""

    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    instruction: str = Field(min_length=10, description="e.g. 'Which image renders faces more naturally?'")
    reference: bool = Field(default=False, description="also show the case's reference image")


class JudgeConfig(_Strict):
    backend: Literal["gemini", "local"] = "gemini"
    model: str = Field(min_length=1, description="Gemini model name, or HF id / local folder of a VLM")
    criteria: list[str | CustomCriterion] = Field(default=["overall_quality"], min_length=1)
    pairs: Literal["all"] | list[tuple[str, str]] = "all"
    reference: str | None = Field(default=None, description="judge each decoder against this one")
    max_side: int = Field(default=1024, ge=16, description="longer image side sent to the judge")
    concurrency: int = Field(default=4, ge=1, le=64)
    max_requests: int = Field(default=1000, ge=1, description="backend calls per run, retries included")
    cost_cap_usd: float = Field(default=5.0, ge=0, description="estimated spend per run")
    price_input_per_mtok: float = Field(default=0.50, ge=0, description="USD per million input tokens")
    price_output_per_mtok: float = Field(default=3.00, ge=0, description="USD per million output tokens")
    tokens_per_image: int = Field(default=1120, ge=1, description="input tokens assumed per image")
    max_output_tokens: int = Field(default=2048, ge=16)
    temperature: float | None = Field(default=None, ge=0, le=2,
                                      description="unset: the model's default (Gemini); greedy (local)")
    thinking_level: Literal["minimal", "low", "medium", "high"] | None = Field(
        default=None, description="Gemini 3 thinking level; thinking tokens are billed as output")
    timeout_s: float = Field(default=60.0, gt=0, description="per request")
    retries: int = Field(default=4, ge=0, description="retries after 429, 5xx, timeouts, lost connections")
    backoff_initial_s: float = Field(default=1.0, ge=0)
    backoff_max_s: float = Field(default=60.0, ge=0)
    base_url: str | None = Field(default=None, description="API endpoint (a proxy, a test server)")
    api_version: str | None = None
    device: str = Field(default="cuda", pattern=r"^(cpu|cuda(:\d+)?)$", description="local backend")
    dtype: Literal["float32", "bfloat16", "float16"] = "bfloat16"
    bootstrap: int = Field(default=1000, ge=0, description="bootstrap resamples of the cases")
    bootstrap_seed: int = 0

    @field_validator("pairs", mode="before")
    @classmethod
    def _pairs_as_tuples(cls, value: Any) -> Any:
        """TOML and JSON have arrays, not tuples (the model is strict)."""
        if isinstance(value, list):
            return [tuple(pair) if isinstance(pair, list) else pair for pair in value]
        return value

    @field_validator("criteria")
    @classmethod
    def _known_criteria(cls, value: list[Any]) -> list[Any]:
        names = [c if isinstance(c, str) else c.name for c in value]
        unknown = [n for n, c in zip(names, value, strict=True) if isinstance(c, str)
                   and n not in BUILTIN_CRITERIA]
        if unknown:
            raise ValueError(f"unknown criterion {unknown[0]!r}; built-in: {', '.join(BUILTIN_CRITERIA)} "
                             "(or give {name, instruction, reference} for your own)")
        if len(set(names)) != len(names):
            raise ValueError(f"criteria must be unique, got {names}")
        return value

    @model_validator(mode="after")
    def _pairs_or_reference(self) -> JudgeConfig:
        if self.reference is not None and self.pairs != "all":
            raise ValueError("give either pairs or reference, not both")
        if isinstance(self.pairs, list):
            if not self.pairs:
                raise ValueError("pairs must list at least one [a, b] pair")
            if any(a == b for a, b in self.pairs):
                raise ValueError("a pair needs two different decoders")
        return self

    def criterion_list(self) -> list[Criterion]:
        return [BUILTIN_CRITERIA[c] if isinstance(c, str) else
                Criterion(c.name, c.instruction, c.reference) for c in self.criteria]

    def pair_list(self, decoder_ids: list[str]) -> list[tuple[str, str]]:
        """The judged (a, b) pairs; a problem message per unknown decoder id is raised as ValueError."""
        if self.reference is not None:
            pairs = [(d, self.reference) for d in decoder_ids if d != self.reference]
        elif self.pairs == "all":
            pairs = [(a, b) for i, a in enumerate(decoder_ids) for b in decoder_ids[i + 1:]]
        else:
            pairs = list(self.pairs)
        named = [self.reference] if self.reference is not None else [d for p in pairs for d in p]
        unknown = sorted({d for d in named if d not in decoder_ids})
        if unknown:
            raise ValueError(f"judge: unknown decoder id(s) {unknown}; the suite's decoders: "
                             f"{', '.join(decoder_ids)}")
        if not pairs:
            raise ValueError("judge: no pair to judge (the suite needs at least two decoders)")
        if len(set(map(frozenset, pairs))) != len(pairs):
            raise ValueError("judge: a pair is listed twice")
        return pairs
