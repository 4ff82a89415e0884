"""Latent-space conventions, in one table.

Every encoder produces latents in one of these spaces and every latent
decoder declares which spaces it accepts. Normalisation constants, channel
counts, spatial factors and the form of added noise live here and nowhere
else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch


@dataclass(frozen=True)
class LatentSpace:
    name: str
    channels: int
    factor: int  # image pixels per latent pixel, per side
    noise: Literal["flow", "vp"]  # flow: (1-s)x + s*eps ; vp: sqrt(1-s^2)x + s*eps
    scaling_factor: float = 1.0  # normalized = scaling * (raw - shift)
    shift_factor: float = 0.0
    description: str = ""

    def latent_shape(self, image_size: tuple[int, int]) -> tuple[int, int, int]:
        width, height = image_size
        if width % self.factor or height % self.factor:
            raise ValueError(
                f"image size {width}x{height} is not a multiple of the {self.name} "
                f"latent factor {self.factor}"
            )
        return (self.channels, height // self.factor, width // self.factor)

    def add_noise(
        self, latent: torch.Tensor, sigma: float, generator: torch.Generator
    ) -> torch.Tensor:
        """Noise a normalized latent to level sigma, deterministically from `generator`."""
        if sigma == 0:
            return latent
        if not 0 < sigma <= 1:
            raise ValueError(f"sigma must be in [0, 1], got {sigma}")
        eps = torch.randn(latent.shape, generator=generator, dtype=torch.float32)
        eps = eps.to(latent.dtype)
        if self.noise == "flow":
            return (1 - sigma) * latent + sigma * eps
        return (1 - sigma**2) ** 0.5 * latent + sigma * eps


SPACES: dict[str, LatentSpace] = {
    "pixels": LatentSpace(
        name="pixels",
        channels=3,
        factor=1,
        noise="flow",
        description="RGB image in [-1, 1], area-downsampled from the reference",
    ),
}


def get_space(name: str) -> LatentSpace:
    try:
        return SPACES[name]
    except KeyError:
        raise KeyError(f"unknown latent space {name!r}; known: {', '.join(SPACES)}") from None
