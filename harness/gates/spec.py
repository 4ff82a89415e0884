"""The `[[gate]]` tables of a suite: what a regression gate checks, validated up front.

Generative decoders never reproduce pixels, so pixel-exact gates (hash equality, PSNR) are refused
unless the gate says `pixel_exact = true` (docs/gates.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Statistic = Literal["mean_delta", "fraction_exceeding", "latency_ratio", "memory_ratio", "energy_ratio",
                    "hash_equal"]
QUALITY_STATISTICS = ("mean_delta", "fraction_exceeding")
COST_STATISTICS = ("latency_ratio", "memory_ratio", "energy_ratio")
# Metrics that are a function of the pixel error alone: a gate on them is a pixel-exact gate.
PIXEL_EXACT_METRICS = frozenset({"psnr"})
PIXEL_EXACT_EXPLANATION = (
    "generative decoders (pixel diffusion, diffusion upscalers, GANs) invent plausible detail "
    "and never reproduce the baseline's pixels, so this gate would fail every healthy checkpoint; "
    "gate on a perceptual metric (lpips, dists, a no-reference IQA score) instead, or set "
    "pixel_exact = true if this decoder is deterministic and must reproduce its pixels"
)
_ONLY_FOR = {
    "tolerance": ("mean_delta",), "tolerance_relative": ("mean_delta",),
    "confidence": ("mean_delta", "fraction_exceeding"),
    "direction": QUALITY_STATISTICS, "metric": QUALITY_STATISTICS,
    "tau": ("fraction_exceeding",), "max_fraction": ("fraction_exceeding",),
    "max_ratio": COST_STATISTICS, "allow_environment_mismatch": COST_STATISTICS,
}


class GateSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._:-]*$", max_length=80)
    statistic: Statistic = "mean_delta"
    metric: str = Field(default="lpips", min_length=1)
    direction: Literal["higher_is_better", "lower_is_better"] | None = None
    tolerance: float | None = Field(default=None, ge=0)
    tolerance_relative: float | None = Field(default=None, ge=0)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    tau: float | None = Field(default=None, ge=0, description="a distance: 0 or more")
    max_fraction: float | None = Field(default=None, gt=0, le=1)
    max_ratio: float | None = Field(default=None, gt=0)
    decoders: list[str] | None = Field(default=None, min_length=1)
    optional: bool = False
    allow_environment_mismatch: bool = False
    pixel_exact: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> GateSpec:
        for key, statistics in _ONLY_FOR.items():
            # A key counts as given when it differs from its default, so that a dumped suite
            # (the run manifest, `run --resume`) validates to the same gates.
            given = getattr(self, key) != type(self).model_fields[key].default
            if given and self.statistic not in statistics:
                raise ValueError(f"{key!r} applies to {' / '.join(statistics)} gates, "
                                 f"not to a {self.statistic} gate")
        if self.statistic == "mean_delta" and (self.tolerance is None) == (self.tolerance_relative is None):
            raise ValueError("a mean_delta gate needs exactly one of tolerance (metric units) "
                             "or tolerance_relative (fraction of the baseline mean)")
        if self.statistic == "fraction_exceeding" and (self.tau is None or self.max_fraction is None):
            raise ValueError("a fraction_exceeding gate needs tau (the per-case distance limit) "
                             "and max_fraction (the share of cases allowed beyond it)")
        if self.statistic in COST_STATISTICS and self.max_ratio is None:
            raise ValueError(f"a {self.statistic} gate needs max_ratio (e.g. 1.10: at most 10% over "
                             "the baseline)")
        if self.is_pixel_exact and not self.pixel_exact:
            raise ValueError(f"{self.label} is a pixel-exact gate and is refused: {PIXEL_EXACT_EXPLANATION}")
        if self.pixel_exact and not self.is_pixel_exact:
            raise ValueError("pixel_exact = true marks a pixel-exact gate (hash_equal, or a gate on "
                             f"{', '.join(sorted(PIXEL_EXACT_METRICS))}); this gate is not one")
        return self

    @property
    def is_pixel_exact(self) -> bool:
        return self.statistic == "hash_equal" or (
            self.statistic in QUALITY_STATISTICS and self.metric in PIXEL_EXACT_METRICS)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.statistic in QUALITY_STATISTICS:
            return f"{self.metric} {self.statistic}"
        return self.statistic


def gate_problems(raw: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks that need the rest of the suite and the metric registry: (key path, message).

    Reads the raw (include-merged) suite so that these problems are reported together with
    schema problems elsewhere in the file; gates that fail the schema are reported by it.
    """
    gates = raw.get("gate")
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for index, entry in enumerate(gates if isinstance(gates, list) else []):
        try:
            gate = GateSpec.model_validate(entry)
        except ValidationError:
            continue
        problems.extend((("gate", index, *loc), message) for loc, message in _gate_problems(gate, raw))
    return problems


def _names(entries: Any, key: str, default_key: str | None = None) -> list[str]:
    names = []
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, dict):
            value = entry.get(key) or (entry.get(default_key) if default_key else None)
            if isinstance(value, str):
                names.append(value)
    return names


def _gate_problems(gate: GateSpec, raw: dict[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    from harness.metrics import METRICS
    from harness.metrics.base import Family

    measured = _names(raw.get("metrics"), "name")
    decoder_ids = _names(raw.get("decoder"), "label", "name")
    problems: list[tuple[tuple[str, ...], str]] = []
    for decoder in gate.decoders or []:
        if decoder not in decoder_ids:
            problems.append((("decoders",), f"no decoder {decoder!r} in this suite; "
                             f"decoders: {', '.join(decoder_ids)}"))
    if gate.statistic == "mean_delta" and gate.metric not in measured:
        problems.append((("metric",), f"metric {gate.metric!r} is not measured by this suite "
                         f"(metrics: {', '.join(measured) or 'none'}); add it to `metrics`"))
        return problems
    if gate.statistic not in QUALITY_STATISTICS:
        return problems
    try:
        cls: Any = METRICS.get(gate.metric)
    except Exception as exc:  # unknown name, or a plug-in that cannot be imported
        return [*problems, (("metric",), str(exc))]
    if gate.statistic == "fraction_exceeding" and cls.family != Family.FULL_REFERENCE:
        problems.append((("metric",), f"{gate.metric!r} is {cls.family}; fraction_exceeding compares "
                         "this run's output with the baseline's and needs a full-reference metric "
                         "(e.g. lpips)"))
    elif gate.statistic == "fraction_exceeding" and cls.direction().better != "lower":
        problems.append((("metric",), f"{gate.metric!r} is best {cls.direction().label}: "
                         "fraction_exceeding counts the cases whose distance to the baseline's output is "
                         "beyond tau and needs a distance (lower is better, e.g. lpips, dists); on a "
                         "similarity such as ssim a small tau is never exceeded and the gate could not "
                         "fail"))
    declared = {"higher_is_better": "higher", "lower_is_better": "lower"}.get(gate.direction or "")
    actual = cls.direction()
    if declared is not None and declared != actual.better:
        problems.append((("direction",), f"{gate.metric} is best {actual.label}; "
                         f"direction {gate.direction!r} contradicts it"))
    return problems
