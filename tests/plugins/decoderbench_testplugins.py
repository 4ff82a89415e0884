"""Test-only decoders, found through a real entry point (see the .dist-info next to this file).

`fault` behaves like a bilinear upsampler unless told to fail: on every case,
or only on cases whose seed is listed in `fail_seeds`.
"""

from __future__ import annotations

import ctypes
import time
from typing import Literal

import torch
import torch.nn.functional as F

from decoders.base import Consumes, DecodeBatch, Decoder, DecoderSpec, DecoderUnavailable
from decoders.plugins import Params


class FaultParams(Params):
    mode: Literal["ok", "oom", "nan", "crash", "sleep", "raise", "range", "unavailable",
                  "load_crash", "grad_probe"] = "ok"
    fail_seeds: list[int] | None = None  # None: every case
    sleep_s: float = 0.0
    set_global_state: bool = False
    hog_bytes_per_pixel: int = 0  # touch this much memory per output pixel (memory-wall tests)


class FaultDecoder(Decoder):
    spec = DecoderSpec(name="fault", consumes=Consumes.LATENT, latent_spaces=("pixels",),
                       summary="test decoder that fails on demand")
    Params = FaultParams

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        if self.params.mode == "unavailable":
            raise DecoderUnavailable("fault-weights.safetensors not found: put it in /nowhere")
        if self.params.mode == "load_crash":
            ctypes.string_at(0)
        if self.params.set_global_state:  # what PiD does on load
            torch.manual_seed(0)
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.set_float32_matmul_precision("high")

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        assert batch.latents is not None
        width, height = batch.output_size
        out = F.interpolate((batch.latents + 1) / 2, size=(height, width), mode="bilinear")
        out = out.clamp(0, 1)
        failing = self.params.fail_seeds is None or any(
            s in self.params.fail_seeds for s in batch.seeds)
        mode = self.params.mode if failing else "ok"
        if mode == "oom":
            torch.empty(2**50, dtype=torch.uint8)  # a real allocation failure
        if mode == "nan":
            out[:, :, 0, 0] = float("nan")
        if mode == "range":
            out = out * 2 - 1
        if mode == "crash":
            ctypes.string_at(0)  # segmentation fault
        if mode == "sleep":
            time.sleep(self.params.sleep_s)
        if mode == "raise":
            raise ValueError("decoder exploded on purpose")
        if self.params.hog_bytes_per_pixel:
            hog = torch.ones(width * height * self.params.hog_bytes_per_pixel, dtype=torch.uint8)
            out = out + float(hog[-1]) * 0  # keep the allocation alive until here
        self._grad_enabled = torch.is_grad_enabled()
        return out

    def facts(self) -> dict[str, object]:
        return {"mode": self.params.mode, "grad_enabled": getattr(self, "_grad_enabled", None)}


class SeededNoiseDecoder(Decoder):
    """Stochastic: bilinear plus seed-dependent noise (drawn from the batch seeds)."""

    spec = DecoderSpec(name="seeded-noise", consumes=Consumes.LATENT, latent_spaces=("pixels",),
                       stochastic=True, summary="test decoder whose output depends on the seed")

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        assert batch.latents is not None
        width, height = batch.output_size
        out = F.interpolate((batch.latents + 1) / 2, size=(height, width), mode="bilinear")
        noise = torch.stack([
            torch.rand(out.shape[1:], generator=torch.Generator().manual_seed(seed))
            for seed in batch.seeds
        ])
        return (0.9 * out + 0.1 * noise.to(out)).clamp(0, 1)
