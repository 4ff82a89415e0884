"""Learned perceptual distances against the reference: LPIPS (AlexNet, VGG16) and DISTS.

LPIPS v0.1 on torchvision's feature stacks, with its input convention explicit and its weights
through the lock table; batches bounded by pixels (docs/metrics.md). DISTS comes from pyiqa.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from decoders.lazy import no_grad, torch
from harness.metrics.base import Family, PerImageMetric, pixel_chunks, require_weights
from harness.metrics.pyiqa_models import create_pyiqa_metric, pyiqa_protocol

if TYPE_CHECKING:
    from harness.metrics.lpips_network import LPIPSNetwork

Backbone = Literal["alex", "vgg"]

BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
LIN_FILES = {"alex": "LPIPS_v0.1_alex-df73285e.pth", "vgg": "LPIPS_v0.1_vgg-a78928a0.pth"}
# Pixels per forward pass (batches are split by image above this): eight 1024² images through
# AlexNet, two 1024² through VGG16; a 4096² image goes alone. Bounds activation memory.
MAX_PIXELS: dict[str, int] = {"alex": 8 << 20, "vgg": 2 << 20}


def load_lpips(backbone: Backbone, paths: dict[str, Path], device: torch.device) -> LPIPSNetwork:
    from harness.metrics.lpips_network import LPIPSNetwork  # torch.nn classes: on load only

    network = LPIPSNetwork(backbone)
    network.load_weights(
        torch.load(paths[BACKBONE_FILES[backbone]], map_location="cpu", weights_only=True),
        torch.load(paths[LIN_FILES[backbone]], map_location="cpu", weights_only=True),
    )
    return network.to(device)


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [-1, 1], the input range LPIPS was trained with."""
    return images * 2 - 1


def lpips_distances(network: LPIPSNetwork, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS between [0, 1] images x[i] and y[i], [B], in forward passes of at most
    MAX_PIXELS[backbone] pixels (every metric built on LPIPS bounds its memory here)."""
    return torch.cat([network(to_signed(x[part].float()), to_signed(y[part].float()))
                      for part in pixel_chunks(x, MAX_PIXELS[network.backbone])])


class LPIPS(PerImageMetric):
    name = "lpips"
    unit = "distance (≈0–1)"
    family = Family.FULL_REFERENCE
    summary_group = "perceptual"
    higher_is_better = False
    summary = "LPIPS v0.1, AlexNet backbone (inputs mapped [0,1] → [-1,1]); 0 = identical"
    backbone: ClassVar[Backbone] = "alex"

    def load(self, device: torch.device) -> None:
        super().load(device)
        self.network = load_lpips(self.backbone, require_weights(self), device)

    def protocol(self) -> dict:
        return {**super().protocol(), "backbone": self.backbone, "lpips_version": "0.1",
                "input_range": "[-1, 1] = 2·x − 1 of the [0, 1] image", "resize": "none"}

    @no_grad
    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        assert targets is not None
        return lpips_distances(self.network, preds, targets)


class LPIPSVGG(LPIPS):
    name = "lpips_vgg"
    summary = "LPIPS v0.1, VGG16 backbone (inputs mapped [0,1] → [-1,1]); 0 = identical"
    backbone = "vgg"


class DISTS(PerImageMetric):
    name = "dists"
    unit = "0–1"
    family = Family.FULL_REFERENCE
    summary_group = "perceptual"
    higher_is_better = False
    summary = "DISTS structure and texture similarity distance (pyiqa, authors' weights)"
    requires = ("pyiqa",)

    def load(self, device: torch.device) -> None:
        super().load(device)
        require_weights(self)
        self.model = create_pyiqa_metric("dists", device)

    def protocol(self) -> dict:
        return {**super().protocol(), **pyiqa_protocol("dists", {}), "resize": "none"}

    @no_grad
    def score(self, preds: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        assert targets is not None
        return torch.cat([self.model(preds[part].float(), targets[part].float()).reshape(-1)
                          for part in pixel_chunks(preds, MAX_PIXELS["vgg"])])
