"""Latent-space conventions, in one table.

Every encoder produces latents in one of these spaces and every latent
decoder declares which spaces it accepts. Normalisation constants, channel
counts, spatial factors, packing and the form of added noise live here and
nowhere else.

Latents are always stored *normalized*, in the space the diffusion model
works in (diffusers' `output_type="latent"` convention): for affine spaces
`z = scaling_factor * (raw - shift_factor)` where `raw` is the VAE's own
latent. FLUX.2 is different: its VAE latent (32 channels at /8) is folded
2×2 into 128 channels at /16 and normalized per channel with the running
statistics of the VAE's BatchNorm layer, so the constants are part of the
VAE weights, not of this table. `flux2-unpacked` holds the very same
normalized values unfolded to 32 channels at /8 (the tiny TAEF2 works
there); folding is a permutation, so noise commutes with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from decoders.lazy import torch


@dataclass(frozen=True)
class LatentSpace:
    name: str
    channels: int
    factor: int  # image pixels per latent pixel, per side
    noise: Literal["flow", "vp"]  # flow: (1-s)x + s*eps ; vp: sqrt(1-s^2)x + s*eps
    scaling_factor: float = 1.0  # normalized = scaling * (raw - shift)
    shift_factor: float = 0.0
    normalization: Literal["affine", "per-channel", "batchnorm", "encoder"] = "affine"
    channel_mean: tuple[float, ...] = ()  # per-channel: normalized = (raw - mean_c) / std_c
    channel_std: tuple[float, ...] = ()
    packing: int = 1  # side of the square of VAE latent pixels folded into channels
    sibling: str | None = None  # the same values folded/unfolded (flux2 <-> flux2-unpacked)
    image_size: tuple[int, int] | None = None  # the one (width, height) a fixed-interface encoder takes
    description: str = ""

    @property
    def forms(self) -> tuple[str, ...]:
        """The names a decoder of this space accepts: the space and its folded/unfolded sibling."""
        return (self.name, self.sibling) if self.sibling else (self.name,)

    def latent_shape(self, image_size: tuple[int, int]) -> tuple[int, int, int]:
        width, height = image_size
        if self.image_size is not None and tuple(image_size) != self.image_size:
            fixed = "x".join(map(str, self.image_size))
            raise ValueError(f"the {self.name} space has one image size, {fixed} (its encoder resizes "
                             f"every image to that interface), not {width}x{height}")
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

    def to_raw(self, latent: torch.Tensor) -> torch.Tensor:
        """Normalized → the VAE's own latent (affine and per-channel spaces only)."""
        if self._per_channel():
            mean, std = self._channel_stats(latent)
            return latent * std + mean
        return latent / self.scaling_factor + self.shift_factor

    def from_raw(self, raw: torch.Tensor) -> torch.Tensor:
        """The VAE's own latent → normalized (affine and per-channel spaces only)."""
        if self._per_channel():
            mean, std = self._channel_stats(raw)
            return (raw - mean) / std
        return self.scaling_factor * (raw - self.shift_factor)

    def _channel_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, *([1] * (like.ndim - 2)))
        mean = torch.tensor(self.channel_mean, dtype=like.dtype, device=like.device).view(shape)
        std = torch.tensor(self.channel_std, dtype=like.dtype, device=like.device).view(shape)
        return mean, std

    def _per_channel(self) -> bool:
        """True for per-channel spaces, False for affine ones; other spaces have no constants."""
        if self.normalization == "batchnorm":
            raise ValueError(f"the {self.name} space is normalized with the VAE's BatchNorm "
                             "running statistics; use them (decoders.vae) instead of constants")
        if self.normalization == "encoder":
            raise ValueError(f"the {self.name} space holds encoder features normalized by the "
                             "encoder itself (decoders.rae); it has no raw VAE latent")
        return self.normalization == "per-channel"


def fold(latent: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, C, H, W] → [B, C·p², H/p, W/p], channel order (c, row, column) as diffusers and PiD."""
    b, c, h, w = latent.shape
    x = latent.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(b, c * patch * patch, h // patch, w // patch)


def unfold(latent: torch.Tensor, patch: int) -> torch.Tensor:
    """Inverse of `fold`."""
    b, c, h, w = latent.shape
    x = latent.reshape(b, c // (patch * patch), patch, patch, h, w)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(b, c // (patch * patch), h * patch, w * patch)


# diffusers AutoencoderKLQwenImage config defaults (= Qwen/Qwen-Image vae/config.json, Wan 2.1).
QWENIMAGE_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134,
                  -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
QWENIMAGE_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526,
                 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)

SPACES: dict[str, LatentSpace] = {
    space.name: space
    for space in (
        LatentSpace(
            name="pixels", channels=3, factor=1, noise="flow",
            description="RGB image in [-1, 1], area-downsampled from the reference",
        ),
        LatentSpace(
            name="sd", channels=4, factor=8, noise="vp", scaling_factor=0.18215,
            description="Stable Diffusion 1.x/2.x VAE (TAESD)",
        ),
        LatentSpace(
            name="sdxl", channels=4, factor=8, noise="vp", scaling_factor=0.13025,
            description="SDXL VAE (TAESDXL); noise in the variance-preserving form, as PiD's SDXL student",
        ),
        LatentSpace(
            name="sd3", channels=16, factor=8, noise="flow", scaling_factor=1.5305,
            shift_factor=0.0609, description="SD3 VAE (TAESD3)",
        ),
        LatentSpace(
            name="flux1", channels=16, factor=8, noise="flow", scaling_factor=0.3611,
            shift_factor=0.1159,
            description="FLUX.1 VAE, also Z-Image, HiDream and Boogu-Image (TAEF1)",
        ),
        LatentSpace(
            name="flux2", channels=128, factor=16, noise="flow", normalization="batchnorm",
            packing=2, sibling="flux2-unpacked",
            description="FLUX.2 VAE latent folded 2×2 and BatchNorm-normalized: what the "
            "FLUX.2 transformer and PiD's flux2 decoders see",
        ),
        LatentSpace(
            name="flux2-unpacked", channels=32, factor=8, noise="flow", normalization="batchnorm",
            sibling="flux2",
            description="the normalized FLUX.2 latent unfolded to 32 channels at /8 (TAEF2)",
        ),
        LatentSpace(
            name="qwenimage", channels=16, factor=8, noise="flow", normalization="per-channel",
            channel_mean=QWENIMAGE_MEAN, channel_std=QWENIMAGE_STD,
            description="Qwen-Image / Qwen-Image-2512 VAE (Wan 2.1), per-channel mean/std",
        ),
        LatentSpace(
            name="dinov2", channels=768, factor=16, noise="flow", normalization="encoder",
            image_size=(512, 512),
            description="RAE: DINOv2-B-with-registers patch tokens (448² input, 32×32 grid), "
            "RAE's per-(C, H, W) ImageNet-512 statistics",
        ),
        LatentSpace(
            name="siglip", channels=1152, factor=16, noise="flow", normalization="encoder",
            image_size=(256, 256),
            description="Scale-RAE: SigLIP-2 So400M patch tokens (224² input, 16×16 grid), "
            "affine-free LayerNorm",
        ),
    )
}


def get_space(name: str) -> LatentSpace:
    try:
        return SPACES[name]
    except KeyError:
        raise KeyError(f"unknown latent space {name!r}; known: {', '.join(SPACES)}") from None


def as_space(latents: torch.Tensor, space: LatentSpace) -> torch.Tensor:
    """Bring [B, C, h, w] latents of `space` or of its folded/unfolded sibling into `space`."""
    channels = latents.shape[1]
    if channels == space.channels:
        return latents
    sibling = SPACES[space.sibling] if space.sibling else None
    if sibling is not None and channels == sibling.channels:
        if space.packing > 1:
            return fold(latents, space.packing)
        return unfold(latents, sibling.packing)
    raise ValueError(f"latents with {channels} channels are not in the {space.name} space "
                     f"({space.channels} channels)")
