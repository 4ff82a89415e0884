"""Learned perceptual distances against the reference: LPIPS (AlexNet, VGG16) and DISTS.

LPIPS (Zhang et al. 2018, v0.1) is implemented here on torchvision's
feature stacks so that its input convention is explicit and its weights go
through the lock table: images in [0, 1] are mapped to [-1, 1] (2x − 1, the
convention of the reference `lpips` package, whose `normalize=True` does the
same), shifted and scaled per channel (ScalingLayer), passed through the
backbone; each tapped activation is unit-normalised over channels, the
squared difference is weighted by the calibrated 1×1 "lin" layer, averaged
over space and summed over layers. Backbone: torchvision ImageNet weights;
lin layers: the v0.1 files shipped with `lpips` (identical, by sha256, to
pyiqa's hosted copies). Images are scored at their comparison size, float32.

Memory: the two images go through the backbone in lockstep and each layer's
distance is taken when it is reached, so only the current activations are
alive; batches are split so that one forward pass holds at most `MAX_PIXELS`
pixels (a 4096² image goes alone). The definition — a spatial mean over whole
feature maps of a deep network — allows no tiling without halos as wide as the
receptive field, so a single 4096² image still needs its full activations
(see the README's benchmark table for the measured peaks).

DISTS (Ding et al. 2020) comes from pyiqa (`dists`), the same network and
weights as the authors' release; pyiqa expects [0, 1].
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import nn

from harness.metrics.base import Family, PerImageMetric, pixel_chunks, require_weights
from harness.metrics.pyiqa_models import create_pyiqa_metric, pyiqa_protocol

Backbone = Literal["alex", "vgg"]

# Tapped layers: slice boundaries into torchvision's `features` (after each tapped ReLU).
SLICES: dict[str, tuple[int, ...]] = {"alex": (0, 2, 5, 8, 10, 12), "vgg": (0, 4, 9, 16, 23, 30)}
CHANNELS: dict[str, tuple[int, ...]] = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
LIN_FILES = {"alex": "LPIPS_v0.1_alex-df73285e.pth", "vgg": "LPIPS_v0.1_vgg-a78928a0.pth"}
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10
# Pixels per forward pass (batches are split by image above this): eight 1024² images through
# AlexNet, two 1024² through VGG16; a 4096² image goes alone. Bounds activation memory.
MAX_PIXELS: dict[str, int] = {"alex": 8 << 20, "vgg": 2 << 20}


VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _features(backbone: Backbone) -> nn.Sequential:
    """torchvision's `features` stack (same layer indices, so its state dict loads as is)."""
    if backbone == "alex":
        return nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
    layers: list[nn.Module] = []
    channels = 3
    for spec in VGG16_LAYERS:
        if spec == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, int(spec), 3, padding=1), nn.ReLU(inplace=True)]
            channels = int(spec)
    return nn.Sequential(*layers)


class LPIPSNetwork(nn.Module):
    """LPIPS v0.1 distance; `forward` takes images in [-1, 1] and returns [B] distances."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone
        self.features = _features(backbone)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS[backbone])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, backbone: dict[str, torch.Tensor], lins: dict[str, torch.Tensor]) -> None:
        """Backbone: a torchvision state dict (features.N.*); lins: the lpips file (linK.model.1.weight)."""
        features = {k.removeprefix("features."): v for k, v in backbone.items() if k.startswith("features.")}
        self.features.load_state_dict(features)
        for index, lin in enumerate(self.lins):
            lin.weight.copy_(lins[f"lin{index}.model.1.weight"])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Both images pass through the backbone in lockstep and each tapped layer's distance is
        taken as soon as it is reached, so only the current activations are held (not all taps)."""
        x, y = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for lin, (start, stop) in zip(self.lins, itertools.pairwise(SLICES[self.backbone]), strict=True):
            for layer in self.features[start:stop]:
                x, y = layer(x), layer(y)
            fx = x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            fy = y / (y.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            total = total + lin(fx.sub_(fy).pow_(2)).mean(dim=(1, 2, 3))
            del fx, fy
        return total


def load_lpips(backbone: Backbone, paths: dict[str, Path], device: torch.device) -> LPIPSNetwork:
    network = LPIPSNetwork(backbone)
    network.load_weights(
        torch.load(paths[BACKBONE_FILES[backbone]], map_location="cpu", weights_only=True),
        torch.load(paths[LIN_FILES[backbone]], map_location="cpu", weights_only=True),
    )
    return network.to(device)


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [-1, 1], the input range LPIPS was trained with."""
    return images * 2 - 1


class LPIPS(PerImageMetric):
    name = "lpips"
    family = Family.FULL_REFERENCE
    higher_is_better = False
    summary = "LPIPS v0.1, AlexNet backbone (inputs mapped [0,1] → [-1,1]); 0 = identical"
    backbone: ClassVar[Backbone] = "alex"

    def load(self, device: torch.device) -> None:
        super().load(device)
        self.network = load_lpips(self.backbone, require_weights(self), device)

    def protocol(self) -> dict:
        return {**super().protocol(), "backbone": self.backbone, "lpips_version": "0.1",
                "input_range": "[-1, 1] = 2·x − 1 of the [0, 1] image", "resize": "none"}

    @torch.no_grad()
    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        assert targets is not None
        return torch.cat([self.network(to_signed(preds[part].float()), to_signed(targets[part].float()))
                          for part in pixel_chunks(preds, MAX_PIXELS[self.backbone])])


class LPIPSVGG(LPIPS):
    name = "lpips_vgg"
    summary = "LPIPS v0.1, VGG16 backbone (inputs mapped [0,1] → [-1,1]); 0 = identical"
    backbone = "vgg"


class DISTS(PerImageMetric):
    name = "dists"
    family = Family.FULL_REFERENCE
    higher_is_better = False
    summary = "DISTS structure and texture similarity distance (pyiqa, authors' weights)"

    def load(self, device: torch.device) -> None:
        super().load(device)
        require_weights(self)
        self.model = create_pyiqa_metric("dists", device)

    def protocol(self) -> dict:
        return {**super().protocol(), **pyiqa_protocol("dists", {}), "resize": "none"}

    @torch.no_grad()
    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        assert targets is not None
        return torch.cat([self.model(preds[part].float(), targets[part].float()).reshape(-1)
                          for part in pixel_chunks(preds, MAX_PIXELS["vgg"])])
