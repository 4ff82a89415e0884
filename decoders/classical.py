"""The pixel family: an area-downsampling "encoder" and classical upsamplers.

The `pixels` latent is the input image itself in [-1, 1] (the images source
area-downsamples the reference to the input size). The four decoders
upsample it back with a fixed kernel; they are the floor every learned
decoder must beat, and the resampling stage of classical cascades.
"""

from __future__ import annotations

from typing import ClassVar

from decoders.base import (
    Consumes,
    DecodeBatch,
    Decoder,
    DecoderSpec,
    Encoder,
    EncoderSpec,
)
from decoders.lazy import torch
from decoders.resample import Method, resize


class PixelsEncoder(Encoder):
    spec = EncoderSpec(
        name="pixels",
        latent_space="pixels",
        in_process=True,
        summary="identity: the area-downsampled input image, mapped to [-1, 1]",
    )

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self._dtype = dtype

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return (images * 2 - 1).to(self._dtype)


class _Resampler(Decoder):
    method: ClassVar[Method]

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self._device, self._dtype = device, dtype

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        assert batch.latents is not None
        images = (batch.latents + 1) / 2
        return resize(images, batch.output_size, self.method).clamp_(0, 1)

    def facts(self) -> dict[str, str]:
        return {"kernel": self.method}


def _spec(name: str, summary: str) -> DecoderSpec:
    return DecoderSpec(
        name=name, consumes=Consumes.LATENT, latent_spaces=("pixels",), summary=summary
    )


class Nearest(_Resampler):
    method = "nearest"
    spec = _spec("nearest", "nearest-neighbour upsampling (pixel centres)")


class Bilinear(_Resampler):
    method = "bilinear"
    spec = _spec("bilinear", "bilinear upsampling (antialiased when downsampling)")


class Bicubic(_Resampler):
    method = "bicubic"
    spec = _spec("bicubic", "bicubic upsampling, a=-0.5 (PIL's kernel)")


class Lanczos(_Resampler):
    method = "lanczos"
    spec = _spec("lanczos", "Lanczos-3 upsampling (PIL's kernel and border handling)")
