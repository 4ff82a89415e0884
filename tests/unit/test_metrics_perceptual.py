"""LPIPS against the reference `lpips` package with the same weights, offline.

Reference: richzhang/PerceptualSimilarity as released on PyPI (`lpips` 0.1.4,
lpips/lpips.py and lpips/pretrained_networks.py): inputs in [-1, 1]
(`normalize=True` maps [0, 1] there), ScalingLayer, unit-normalised taps,
1×1 lin layers, spatial mean, sum over layers. The backbone's ImageNet
weights cannot be downloaded here, so both sides use the same seeded random
backbone; the lin layers are the real v0.1 files shipped with `lpips`.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from harness.metrics import weights
from harness.metrics.lpips_network import LPIPSNetwork
from harness.metrics.perceptual import LPIPS, LPIPSVGG

lpips = pytest.importorskip("lpips")


def _photos(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two photographs and degraded copies (noise, blur-like downsampling), [0, 1]."""
    rng = np.random.default_rng(0)
    clean, degraded = [], []
    for name in ("astronaut", "chelsea"):
        image = getattr(data, name)()[:size, :size].astype(np.float64) / 255
        clean.append(image)
        noisy = np.clip(image + rng.normal(0, 0.05, image.shape), 0, 1)
        degraded.append(np.round(noisy * 255) / 255)
    as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()  # noqa: E731
    return as_tensor(degraded), as_tensor(clean)


@functools.cache
def _reference(backbone: str) -> torch.nn.Module:
    """The lpips package's model: seeded random backbone, its shipped v0.1 lin layers."""
    torch.manual_seed(0)
    return lpips.LPIPS(net=backbone, pnet_rand=True, verbose=False).eval()


def _backbone_state(reference: torch.nn.Module) -> dict[str, torch.Tensor]:
    """lpips' net.sliceK.N.* → torchvision's features.N.*"""
    return {f"features.{k.split('.', 2)[1]}.{k.rsplit('.', 1)[1]}": v
            for k, v in reference.net.state_dict().items()}


def _reference_and_ours(backbone: str) -> tuple[torch.nn.Module, LPIPSNetwork]:
    reference = _reference(backbone)
    ours = LPIPSNetwork(backbone)  # type: ignore[arg-type]
    lin_state = {k: v for k, v in reference.state_dict().items() if k.startswith("lin") and "lins" not in k}
    ours.load_weights(_backbone_state(reference), lin_state)
    return reference, ours


@pytest.mark.e2e
@pytest.mark.parametrize(("backbone", "size"), [("alex", 256), ("vgg", 96)])
def test_lpips_equals_the_lpips_package_with_the_same_weights(backbone: str, size: int) -> None:
    reference, ours = _reference_and_ours(backbone)
    preds, targets = _photos(size)
    with torch.no_grad():
        expected = reference(preds, targets, normalize=True).flatten()
        same = reference(preds * 2 - 1, targets * 2 - 1).flatten()
        wrong_range = reference(preds, targets).flatten()  # [0, 1] fed as if it were [-1, 1]
        value = ours(preds * 2 - 1, targets * 2 - 1)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(value, same, rtol=1e-5, atol=1e-6)
    assert (value - wrong_range).abs().min() > 1e-3  # the convention matters
    assert float(ours(targets * 2 - 1, targets * 2 - 1).abs().max()) < 1e-6


@pytest.mark.e2e
@pytest.mark.parametrize("cls", [LPIPS, LPIPSVGG])
def test_metric_loads_weight_files_from_the_cache_and_records_their_sha256(
        cls: type[LPIPS], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real load path: torchvision-format backbone file in $TORCH_HOME, lin layers from `lpips`."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DECODERBENCH_CACHE_DIR", str(tmp_path / "db"))
    backbone = cls.backbone
    reference, _ = _reference_and_ours(backbone)
    filename = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}[backbone]
    # A random backbone cannot carry the published hash prefix: accept it for this test only.
    monkeypatch.setattr(weights, "LOCK", tuple(
        dataclasses.replace(e, sha256_prefix=None) if e.filename == filename else e for e in weights.LOCK))
    path = tmp_path / "torch" / "hub" / "checkpoints" / filename
    path.parent.mkdir(parents=True)
    torch.save(_backbone_state(reference), path)
    metric = cls()
    metric.load(torch.device("cpu"))
    preds, targets = _photos(96)
    metric.update(["a", "b"], preds, targets)
    values = metric.compute().per_key
    with torch.no_grad():
        expected = reference(preds, targets, normalize=True).flatten().tolist()
    assert [values["a"], values["b"]] == pytest.approx(expected, rel=1e-5)
    recorded = metric.protocol()["weights_sha256"]
    assert recorded[filename] == weights.file_sha256(path)
    assert recorded[f"LPIPS_v0.1_{backbone}-{'df73285e' if backbone == 'alex' else 'a78928a0'}.pth"]
    assert metric.protocol()["input_range"].startswith("[-1, 1]")


def test_batches_split_by_pixel_budget_give_the_same_distances(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.metrics import perceptual

    _, network = _reference_and_ours("alex")
    metric = LPIPS()
    metric.network = network
    preds, targets = _photos(128)
    whole = metric.score(preds, targets)
    monkeypatch.setitem(perceptual.MAX_PIXELS, "alex", 1)  # one image per forward pass
    torch.testing.assert_close(metric.score(preds, targets), whole, rtol=1e-6, atol=1e-7)
