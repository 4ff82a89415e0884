"""Feature networks for distribution metrics, with clean-fid's named resize modes.

The default is clean-fid's TorchScript Inception-v3 (2048-d pool features); `clean`,
`legacy_pytorch` and `legacy_tensorflow` resize as clean-fid does; `torchscript:/path/net.pt`
names any other network (docs/metrics.md, protocols and policies).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from decoders.lazy import F, no_grad, torch

ResizeMode = Literal["clean", "legacy_tensorflow", "legacy_pytorch"]
INCEPTION = "inception-v3-tf"
INPUT_PX = 299
RESIZE_VERSION = 2  # part of cached feature keys; 2: `clean` clips to [0, 255] like clean-fid
TORCHSCRIPT_PREFIX = "torchscript:"


def resize_for_features(images: torch.Tensor, mode: ResizeMode) -> torch.Tensor:
    """uint8 [B, 3, H, W] → float32 [B, 3, 299, 299] in [0, 255] (or unchanged for legacy_tensorflow)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"feature extraction takes 8-bit images, got {images.dtype}")
    if mode == "legacy_tensorflow":
        return images.float()
    if mode == "legacy_pytorch":
        resized = F.interpolate(images.float(), size=(INPUT_PX, INPUT_PX), mode="bilinear",
                                align_corners=False)
        return resized.clamp(0, 255)
    if mode == "clean":
        if images.shape[-2:] == (INPUT_PX, INPUT_PX):
            return images.float()
        return torch.stack([_pil_bicubic(image) for image in images.cpu()]).to(images.device)
    raise ValueError(f"unknown resize mode {mode!r}; known: clean, legacy_tensorflow, legacy_pytorch")


def _pil_bicubic(image: torch.Tensor) -> torch.Tensor:
    channels = []
    for channel in image.numpy().astype(np.float32):
        resized = Image.fromarray(channel).resize((INPUT_PX, INPUT_PX), resample=Image.BICUBIC)
        channels.append(np.asarray(resized, dtype=np.float32).clip(0, 255))
    return torch.from_numpy(np.stack(channels))


class FeatureNetwork:
    """A loaded feature extractor: 8-bit images (float 0…255, resized by the mode) → [B, D] float64."""

    def __init__(self, module: torch.jit.ScriptModule, name: str, mode: ResizeMode, inception: bool) -> None:
        self.module, self.name, self.mode, self.inception = module, name, mode, inception

    @no_grad
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = resize_for_features(images, self.mode)
        if not self.inception:
            features = self.module(x)
        elif self.mode == "legacy_tensorflow":
            features = self.module(x, return_features=True)
        else:
            features = self.module.layers.forward((x - 128) / 128)
        return features.reshape(x.shape[0], -1).double()


def load_network(path: Path, name: str, mode: ResizeMode, device: torch.device) -> FeatureNetwork:
    module = torch.jit.load(str(path), map_location=device).eval()
    return FeatureNetwork(module, name, mode, inception=name == INCEPTION)
