"""How far a memory-wall sweep searches on a device: from the device's memory.

A decoder's peak memory grows with the output's area (the FLUX.1 VAE's peak reserved memory
grows 4× from 1024² to 2048² and again to 4096², in bf16 and in fp32), so one measured point —
a side and the peak there — puts the wall of a device near side × √(device memory / peak).
A sweep searches up to that side with headroom in area (allocators and library versions move
a peak by 10–20 %), rounded up to `grain`, within [floor, cap]: an 80 GB H100 and a 186 GB
GB200 get different bounds, and the wall of neither is cut off by a fixed 4096.
"""

from __future__ import annotations

import math

HEADROOM = 1.5  # in area: the bound's side is √1.5 ≈ 1.22× the extrapolated wall
CAP = 8192


def sweep_stop(memory_bytes: int, anchor_side: int, anchor_bytes: int, *, headroom: float = HEADROOM,
               grain: int = 512, floor: int = 1024, cap: int = CAP) -> int:
    """The `--to` of a sweep on a device of `memory_bytes`, from a peak of `anchor_bytes` measured
    at `anchor_side`² (same decoder, same dtype)."""
    if memory_bytes <= 0 or anchor_bytes <= 0 or anchor_side <= 0:
        raise ValueError("memory, anchor side and anchor peak must be positive")
    side = anchor_side * math.sqrt(headroom * memory_bytes / anchor_bytes)
    return max(floor, min(cap, math.ceil(side / grain) * grain))
