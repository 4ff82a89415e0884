"""Patch extraction for patch-FID: three named protocols, each hashed into the result.

FID on whole images downsampled to 299 px says nothing about the detail of a
2K or 4K output. Patch-FID computes FID over patches instead; how patches
are cut changes the number, so the protocol is named, its parameters are
recorded, and their sha256 identifies the result:

- `random_crops` (anyres-gan style): `crops_per_image` squares per image
  with side u·min(H, W), u ~ U[scale_min, scale_max], at a uniform random
  position, resized to `patch_px` (Lanczos-3, antialiased, then 8-bit).
  The random parameters come from a generator seeded by (seed, reference
  key), so a generated image and its reference are cut identically.
- `grid_halfshift` (HiFiC style): every `patch_px` square of the aligned
  non-overlapping grid, plus every square of the grid shifted by half a
  patch in both directions. No resampling.
- `native_crops`: `crops_per_image` squares of `patch_px` (default 299, the
  feature network's input: no resampling at all) at seeded random positions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from decoders.lazy import torch
from decoders.plugins import Params
from decoders.resample import resize
from harness.images import quantize

PatchProtocolName = Literal["random_crops", "grid_halfshift", "native_crops"]
DEFAULT_PATCH_PX = {"random_crops": 256, "grid_halfshift": 256, "native_crops": 299}


class PatchParams(Params):
    protocol: PatchProtocolName = "grid_halfshift"
    patch_px: int | None = Field(default=None, ge=16, description="patch side (default per protocol)")
    crops_per_image: int = Field(default=8, ge=1, description="random_crops, native_crops")
    scale_min: float = Field(default=0.25, gt=0, le=1, description="random_crops: smallest side ÷ min(H, W)")
    scale_max: float = Field(default=1.0, gt=0, le=1, description="random_crops: largest side ÷ min(H, W)")
    seed: int = Field(default=0, description="random_crops, native_crops")

    @model_validator(mode="after")
    def _scales(self) -> PatchParams:
        if self.scale_min > self.scale_max:
            raise ValueError("scale_min must not exceed scale_max")
        return self


def patch_protocol(params: PatchParams) -> dict[str, Any]:
    """The parameters that define the patches, without the ones this protocol ignores."""
    name = params.protocol
    protocol: dict[str, Any] = {"name": name, "patch_px": params.patch_px or DEFAULT_PATCH_PX[name]}
    if name in ("random_crops", "native_crops"):
        protocol.update(crops_per_image=params.crops_per_image, seed=params.seed)
    if name == "random_crops":
        protocol.update(scale=[params.scale_min, params.scale_max], resize="lanczos3 antialiased, 8-bit")
    return protocol


def protocol_sha256(protocol: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()


def _generator(seed: int, key: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def grid_origins(length: int, patch: int) -> tuple[list[int], list[int]]:
    """Starts of the aligned grid and of the grid shifted by half a patch."""
    aligned = list(range(0, length - patch + 1, patch))
    shifted = list(range(patch // 2, length - patch + 1, patch))
    return aligned, shifted


def extract(image: torch.Tensor, key: str, protocol: dict[str, Any]) -> torch.Tensor:
    """uint8 [3, H, W] → uint8 [N, 3, P, P] patches; `key` seeds the random protocols."""
    height, width = image.shape[-2:]
    patch = protocol["patch_px"]
    name = protocol["name"]
    if name == "grid_halfshift":
        (ax, sx), (ay, sy) = grid_origins(width, patch), grid_origins(height, patch)
        origins = [(x, y) for y in ay for x in ax] + [(x, y) for y in sy for x in sx]
        boxes = [(x, y, patch) for x, y in origins]
    else:
        rng = _generator(protocol["seed"], key)
        boxes = []
        for _ in range(protocol["crops_per_image"]):
            if name == "random_crops":
                low, high = protocol["scale"]
                side = max(1, round(rng.uniform(low, high) * min(height, width)))
            else:
                side = patch
            if side > min(height, width):
                raise ValueError(f"{name}: a {side} px patch does not fit a {width}x{height} image")
            x, y = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
            boxes.append((x, y, side))
    if not boxes:
        raise ValueError(f"{name}: a {width}x{height} image holds no {patch} px patch")
    crops = []
    for x, y, side in boxes:
        crop = image[:, y:y + side, x:x + side]
        if side != patch:
            crop = quantize(resize(crop[None].double() / 255, (patch, patch), "lanczos"))[0]
        crops.append(crop)
    return torch.stack(crops)
