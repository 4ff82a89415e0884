"""The LPIPS v0.1 network (torch.nn classes), imported when an LPIPS metric loads; the definition,
input convention and weights are described in harness/metrics/perceptual.py."""

from __future__ import annotations

import itertools

import torch
from torch import nn

# Tapped layers: slice boundaries into torchvision's `features` (after each tapped ReLU).
SLICES: dict[str, tuple[int, ...]] = {"alex": (0, 2, 5, 8, 10, 12), "vgg": (0, 4, 9, 16, 23, 30)}
CHANNELS: dict[str, tuple[int, ...]] = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _features(backbone: str) -> nn.Sequential:
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

    def __init__(self, backbone: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.features = _features(backbone)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS[backbone])
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def load_weights(self, backbone: dict[str, torch.Tensor], lins: dict[str, torch.Tensor]) -> None:
        """backbone: a torchvision state dict (features.N.*); lins: the lpips file (linK.model.1.weight)."""
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
                x = layer(x)  # one at a time: x's input is freed before y's output exists
                y = layer(y)
            fx = x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            fy = y / (y.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            total = total + lin(fx.sub_(fy).pow_(2)).mean(dim=(1, 2, 3))
            del fx, fy
        return total
