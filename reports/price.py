"""What 1,000 decoded images cost in money, from a run's figures and the suite's [cost].

Two prices, each named for what it includes:

- device time: `gpu_hour` × the median latency per image × 1,000 — the decoder's own time on
  the timing device at the hourly price (no idle time, model loading, storage or host work);
- electricity: `kwh` × the energy per image × 1,000 — the energy the timing device's counter
  saw during the timed calls (the GPU board, or the CPU packages on a CPU run), idle draw
  included; where that energy was not measured there is no electricity price.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MS_PER_HOUR = 3_600_000.0
JOULES_PER_KWH = 3_600_000.0
IMAGES = 1000
NO_COST = ("the suite has no [cost] table: add gpu_hour (and kwh) to it, or pass --gpu-hour-price "
           "to `decoderbench run` or `show`")


def time_price(latency_ms_per_image: float, gpu_hour: float) -> float:
    """Price of 1,000 images of device time at `gpu_hour` per hour."""
    return gpu_hour * latency_ms_per_image / MS_PER_HOUR * IMAGES


def energy_price(joules_per_image: float, kwh: float) -> float:
    """Price of the electricity of 1,000 images at `kwh` per kilowatt-hour."""
    return kwh * joules_per_image / JOULES_PER_KWH * IMAGES


@dataclass(frozen=True)
class Price:
    value: float | None
    currency: str
    includes: str  # what the price counts, in words
    reason: str | None = None  # why there is no value


def device_time_price(cost: dict[str, Any] | None, latency_ms_per_image: float | None, device: str) -> Price:
    """`device`: the timing device ("cuda", "cuda:1", "cpu"), named in what the price includes."""
    device = "GPU" if device.startswith("cuda") else device.split(":")[0].upper()
    currency = (cost or {}).get("currency", "USD")
    gpu_hour = (cost or {}).get("gpu_hour")
    includes = (f"{gpu_hour:g} {currency} per {device} hour × median latency per image × 1,000: the "
                "decoder's time only (no idle, loading, storage or host)" if gpu_hour else "")
    if cost is None:
        return Price(None, currency, includes, NO_COST)
    if gpu_hour is None:
        return Price(None, currency, includes, "the suite's [cost] gives no gpu_hour")
    if latency_ms_per_image is None:
        return Price(None, currency, includes, "no latency was measured")
    return Price(time_price(latency_ms_per_image, gpu_hour), currency, includes)


def electricity_price(cost: dict[str, Any] | None, joules_per_image: float | None, what: str,
                      why_not: str) -> Price:
    """`what`: whose energy it is (the GPU board, the CPU packages); `why_not`: why it is missing."""
    currency = (cost or {}).get("currency", "USD")
    kwh = (cost or {}).get("kwh")
    includes = (f"{kwh:g} {currency} per kWh × energy per image × 1,000: {what} during the timed calls, "
                "idle draw included" if kwh else "")
    if kwh is None:
        return Price(None, currency, includes, "the suite's [cost] gives no kwh")
    if joules_per_image is None:
        return Price(None, currency, includes, f"energy not measured: {why_not}")
    return Price(energy_price(joules_per_image, kwh), currency, includes)


def with_gpu_hour(cost: dict[str, Any] | None, gpu_hour: float) -> dict[str, Any]:
    """A run's [cost] re-priced at `gpu_hour` (`show --gpu-hour-price`); ValueError in one line."""
    if not (math.isfinite(gpu_hour) and gpu_hour > 0):
        raise ValueError(f"--gpu-hour-price: expected a finite price > 0, got {gpu_hour!r}")
    return {"currency": "USD", **(cost or {}), "gpu_hour": gpu_hour}
