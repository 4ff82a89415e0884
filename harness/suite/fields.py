"""The building blocks of the suite schema: strict models, the limits a value must keep, value types.

Strict: `repeats = true` or `batch_size = 2.0` is an error, not a silent 1 or 2; finite:
`timeout_s = inf` is an error, not a number JSON cannot hold.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
)


class Strict(BaseModel):
    # strict: `repeats = true` or `batch_size = 2.0` is an error, not a silent 1 or 2;
    # finite: `timeout_s = inf` or `weight = nan` is an error, not a number JSON cannot hold
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


MAX_SEED = 2**63 - 1  # torch and numpy generators take 64-bit seeds; JSON readers keep int64 exact


# The largest image side a suite may ask for. One comparison reference is resized in float64
# (3 × 8 bytes per pixel): at 16384² that is 6.4 GB, the most a workstation can prepare;
# 100000² would be 240 GB, and 400000² (input 100000 at output_scale 4) 3.8 TB.
MAX_SIDE = 16384


REFERENCE_BYTES_PER_PIXEL = 3 * 8


def seed_value(value: int) -> int:
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"a seed must be an integer in [0, 2**63 - 1] (64-bit generators), got {value}")
    return value


Seed = Annotated[int, AfterValidator(seed_value)]


DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


def device_value(value: str) -> str:
    if not DEVICE_PATTERN.fullmatch(value):
        raise ValueError(f"expected cpu, cuda or cuda:N (N a GPU index), got {value!r}")
    return value


Device = Annotated[str, AfterValidator(device_value)]


# More threads than any machine has cores: a typo (100000 makes torch fail to start its pool).
MAX_THREADS = 1024


def size_value(value: Any) -> Any:
    """Accept 512 for a square or [width, height]."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    return tuple(value) if isinstance(value, list) else value


def bytes_text(count: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} bytes"


class ComponentEntry(Strict):
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
