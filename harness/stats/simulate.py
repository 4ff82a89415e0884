"""The error rates and the power of decoderbench's verdicts, by seeded simulation.

    python -m harness.stats.simulate            # the tables of docs/statistics.md

tests/unit/test_statistics.py asserts the same rates. Decoders "that do not differ" share a per-case
effect (some images are harder for every decoder) and add independent noise of one distribution
(normal, or right-skewed lognormal); a decision is a rejection of the sign-flip test at 5 %, a
family is every pair of D decoders on one criterion with Holm's correction, and a gate passes when
its one-sided 95 % t bound of the mean worsening is within the tolerance.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from itertools import combinations

import numpy as np

from harness.stats.bounds import min_detectable
from harness.stats.distributions import t_quantile
from harness.stats.paired import ALPHA, sign_flip_pvalues

NS = (2, 3, 5, 8, 13, 30)
TRIALS = 2000
SEED = 2026
Noise = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=shape)


def gamma(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Right-skewed (gamma with shape 4: skewness 1), standardised to mean 0 and variance 1."""
    return (rng.gamma(4.0, size=shape) - 4.0) / 2.0


def lognormal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Heavily right-skewed (lognormal σ = 1: skewness ≈ 6), standardised to mean 0, variance 1."""
    mean, var = math.exp(0.5), (math.e - 1) * math.e
    return (rng.lognormal(size=shape) - mean) / math.sqrt(var)


NOISES: dict[str, Noise] = {"normal": normal, "skewed (gamma, skewness 1)": gamma,
                            "heavily skewed (lognormal, skewness 6)": lognormal}


def _decoders(rng: np.random.Generator, n: int, count: int, trials: int, noise: Noise) -> np.ndarray:
    """[count, n, trials] values of decoders that do not differ."""
    case = 3.0 * rng.normal(size=(1, n, trials))
    return case + noise(rng, (count, n, trials))


def false_decision_rate(n: int, trials: int = TRIALS, noise: Noise = normal, seed: int = SEED) -> float:
    """How often one pair of equal decoders is separated."""
    values = _decoders(np.random.default_rng([seed, n]), n, 2, trials, noise)
    return float((sign_flip_pvalues(values[0] - values[1]) <= ALPHA).mean())


def family_error_rate(n: int, decoders: int, trials: int = TRIALS, noise: Noise = normal,
                      seed: int = SEED) -> float:
    """How often any pair among `decoders` equal decoders is separated, with Holm over the pairs
    (Holm rejects something exactly when the smallest p-value is within α / pairs)."""
    values = _decoders(np.random.default_rng([seed, n, decoders]), n, decoders, trials, noise)
    pairs = list(combinations(range(decoders), 2))
    smallest = np.min([sign_flip_pvalues(values[i] - values[j]) for i, j in pairs], axis=0)
    return float((smallest <= ALPHA / len(pairs)).mean())


def power(n: int, effect: float, trials: int = TRIALS, seed: int = SEED) -> float:
    """How often a true difference of `effect` standard deviations of the paired difference is
    separated (one pair, normal noise)."""
    rng = np.random.default_rng([seed, n, int(effect * 1000)])
    diffs = effect + rng.normal(size=(n, trials))
    return float((sign_flip_pvalues(diffs) <= ALPHA).mean())


def gate_pass_rate(n: int, worsening: float, trials: int = TRIALS, noise: Noise = normal,
                   confidence: float = 0.95, seed: int = SEED) -> float:
    """How often a mean_delta gate with tolerance 1 passes a decoder whose true mean worsening is
    `worsening` (per-case spread 1): at worsening = 1 this is the gate's error rate."""
    if n < 2:
        return 0.0
    w = worsening + noise(np.random.default_rng([seed, n, int(worsening * 1000)]), (n, trials))
    bound = w.mean(axis=0) + t_quantile(confidence, n - 1) * w.std(axis=0, ddof=1) / math.sqrt(n)
    return float((bound <= 1.0).mean())


def mc_margin(rate: float, trials: int = TRIALS) -> float:
    """Three standard errors of a simulated rate."""
    return 3 * math.sqrt(rate * (1 - rate) / trials)


def _row(label: str, values: list[float], digits: int = 1) -> str:
    return f"| {label} | " + " | ".join(f"{v:.{digits}%}" for v in values) + " |"


def tables(trials: int = TRIALS) -> str:
    head = "| n | " + " | ".join(str(n) for n in NS) + " |\n|---|" + "---:|" * len(NS)
    lines = ["False decisions between two decoders that do not differ (one pair, sign-flip test at 5 %):",
             "", head]
    lines += [_row(name, [false_decision_rate(n, trials, noise) for n in NS])
              for name, noise in NOISES.items()]
    lines += ["", "Any false decision among D decoders that do not differ (all pairs, Holm at 5 %):", "",
              head]
    lines += [_row(f"D = {d}", [family_error_rate(n, d, trials) for n in NS]) for d in (3, 4, 6)]
    lines += ["", "Power: how often a true paired difference of d standard deviations is separated "
              "(one pair, normal):", "", head]
    lines += [_row(f"d = {e:g}", [power(n, e, trials) for n in NS], 0) for e in (0.5, 1.0, 2.0)]
    lines += ["", "Gates: how often a mean_delta gate passes a decoder whose true mean worsening equals "
              "its tolerance (must be ≤ 5 %), and one with no worsening at all (tolerance = 1 spread):",
              "", head]
    lines += [_row(f"at tolerance, {name}", [gate_pass_rate(n, 1.0, trials, noise) for n in NS])
              for name, noise in NOISES.items()]
    lines.append(_row("unchanged, normal", [gate_pass_rate(n, 0.0, trials) for n in NS], 0))
    detectable = [min_detectable(1.0, n) for n in NS]
    lines.append("| smallest worsening detected at 80 % power (× spread) | "
                 + " | ".join("—" if math.isinf(d) else f"{d:.2f}" for d in detectable) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=TRIALS)
    print(tables(parser.parse_args().trials), end="")


if __name__ == "__main__":
    main()
