"""No-reference metrics through pyiqa: same values as pyiqa called directly, and the large-image policy.

Reference: chaofengc/IQA-PyTorch as installed (pyiqa 0.1.16, pyiqa/api_helpers.py
create_metric, pyiqa/archs/piqe_arch.py, pyiqa/archs/musiq_arch.py).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import started
from skimage import data

from decoders.resample import resize
from harness.metrics import weights
from harness.metrics.noref import MUSIQ, PIQE, apply_policy, tile_origins
from harness.metrics.pyiqa_models import transformers_llama_kept

pyiqa = pytest.importorskip("pyiqa")


def _photo(name: str, size: tuple[int, int]) -> torch.Tensor:
    image = getattr(data, name)()
    image = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image
    return torch.from_numpy(image[: size[1], : size[0]].copy()).permute(2, 0, 1).float()[None] / 255


@pytest.fixture(scope="module")
def piqe_direct() -> torch.nn.Module:
    with transformers_llama_kept():
        return pyiqa.create_metric("piqe", device=torch.device("cpu"))


def test_tile_origins_cover_the_image_with_flush_last_tile() -> None:
    assert tile_origins(512, 1024) == [0]
    assert tile_origins(2048, 1024) == [0, 1024]
    assert tile_origins(2500, 1024) == [0, 738, 1476]  # three tiles, last one ends at 2500
    for length, tile in ((3000, 1024), (1025, 1024), (4096, 1000)):
        starts = tile_origins(length, tile)
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(b - a <= tile for a, b in itertools.pairwise(starts))


def test_policy_shapes() -> None:
    images = torch.rand(2, 3, 600, 1300)
    tiles, per_image = apply_policy(images, "tile", 512)
    assert tiles.shape == (2 * 6, 3, 512, 512) and per_image == 6
    torch.testing.assert_close(tiles[1], images[0, :, :512, 394:906])  # second tile of the first image
    resized, one = apply_policy(images, "resize", 512)
    assert resized.shape == (2, 3, 236, 512) and one == 1
    cropped, _ = apply_policy(images, "centre_crop", 512)
    torch.testing.assert_close(cropped, images[..., 44:556, 394:906])
    small = torch.rand(1, 3, 100, 200)
    assert apply_policy(small, "tile", 512)[0] is small


def test_piqe_equals_pyiqa_directly(piqe_direct: torch.nn.Module) -> None:
    metric = PIQE()
    metric.load(torch.device("cpu"))
    images = torch.cat([_photo("astronaut", (256, 256)), _photo("camera", (256, 256))])
    metric.update(["a", "b"], images, None)
    ours = metric.compute().per_key
    expected = piqe_direct(images).flatten().tolist()
    assert [ours["a"], ours["b"]] == pytest.approx(expected, rel=1e-6)
    assert 0 < ours["a"] < 100
    protocol = metric.protocol()
    assert protocol["implementation"] == "pyiqa piqe" and protocol["pyiqa"] == pyiqa.__version__
    assert protocol["params"] == {"large_image": "tile", "max_side": 1024}


@pytest.mark.parametrize("policy", ["tile", "resize", "centre_crop"])
def test_large_image_policy_on_piqe(policy: str, piqe_direct: torch.nn.Module) -> None:
    image = _photo("astronaut", (512, 384))
    metric = PIQE(PIQE.Params(large_image=policy, max_side=256))
    metric.load(torch.device("cpu"))
    metric.update(["x"], image, None)
    value = metric.compute().per_key["x"]
    if policy == "tile":
        pieces = [image[..., y:y + 256, x:x + 256] for y in (0, 128) for x in (0, 256)]
        expected = float(np.mean([piqe_direct(p).item() for p in pieces]))
    elif policy == "resize":
        expected = piqe_direct(resize(image.double(), (256, 192), "lanczos").clamp(0, 1).float()).item()
    else:
        expected = piqe_direct(image[..., 64:320, 128:384]).item()
    assert value == pytest.approx(expected, rel=1e-6)


@pytest.mark.e2e
def test_musiq_loads_through_the_lock_table_and_matches_pyiqa(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The weight path end to end, with a random-weight MUSIQ checkpoint in $TORCH_HOME/hub/pyiqa."""
    from pyiqa.archs.musiq_arch import MUSIQ as MusiqNet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DECODERBENCH_CACHE_DIR", str(tmp_path / "db"))
    filename = "musiq_koniq_ckpt-e95806b9.pth"
    monkeypatch.setattr(weights, "LOCK", tuple(
        dataclasses.replace(e, sha256_prefix=None) if e.filename == filename else e for e in weights.LOCK))
    torch.manual_seed(0)
    network = MusiqNet(pretrained=False).eval()
    path = tmp_path / "torch" / "hub" / "pyiqa" / filename
    path.parent.mkdir(parents=True)
    torch.save(network.state_dict(), path)
    metric = MUSIQ()
    metric.load(torch.device("cpu"))
    image = _photo("coffee", (224, 160))
    metric.update(["x"], image, None)
    with torch.no_grad():
        expected = network(image).item()
    assert metric.compute().per_key["x"] == pytest.approx(expected, rel=1e-5)
    assert metric.protocol()["weights_sha256"] == {filename: weights.file_sha256(path)}


def test_tiles_reach_the_model_within_the_pixel_budget(piqe_direct: torch.nn.Module,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.metrics import noref

    seen: list[int] = []
    metric = PIQE(PIQE.Params(max_side=128))
    metric.load(torch.device("cpu"))
    model = metric.model
    metric.model = lambda pieces: seen.append(len(pieces)) or model(pieces)
    image = _photo("astronaut", (384, 256))
    monkeypatch.setattr(noref, "MAX_PIXELS", 2 * 128 * 128)
    metric.update(["x"], image, None)
    pieces = [image[..., y:y + 128, x:x + 128] for y in (0, 128) for x in (0, 128, 256)]
    assert seen == [2, 2, 2]
    assert metric.compute().per_key["x"] == pytest.approx(
        float(np.mean([piqe_direct(p).item() for p in pieces])), rel=1e-6)


@pytest.mark.e2e  # fresh interpreters importing pyiqa and transformers: seconds
@pytest.mark.parametrize("llama_first", [True, False], ids=["llama-loaded-before", "llama-loaded-by-pyiqa"])
def test_a_pyiqa_metric_leaves_transformers_llama_as_it_was(llama_first: bool) -> None:
    """Creating TOPIQ imports all of pyiqa's architectures, Q-Align's among them, which replaces
    transformers' Llama classes for the whole process; a LLaVA judge of the same evaluation would run
    pyiqa's code. Whether the Llama modules were loaded before (restored from a snapshot) or first by
    Q-Align (loaded again), transformers' own classes are what the process finds after; creating PIQE
    loads no Llama module at all. A fresh interpreter, as the evaluation phase is."""
    pytest.importorskip("transformers")
    code = f"""
import sys, torch
def state():
    from transformers.models.llama import configuration_llama as C, modeling_llama as L
    return (C.LlamaConfig, L.LlamaAttention, L.LlamaDecoderLayer, L.LlamaModel.forward,
            L.LlamaForCausalLM.forward, hasattr(L, "LlamaSdpaAttention"))
before = state() if {llama_first} else None
from harness.metrics.pyiqa_models import create_pyiqa_metric
create_pyiqa_metric("piqe", torch.device("cpu"))
loaded = "transformers.models.llama.modeling_llama" in sys.modules
try:
    create_pyiqa_metric("topiq_nr", torch.device("cpu"))  # fails later without its weights: no matter
except Exception:
    pass
after = state()
import transformers
own = all(getattr(c, "__module__", "").startswith("transformers.models.llama") for c in after[:5])
print(loaded, any("q_align" in name for name in sys.modules), own and transformers.LlamaConfig is after[0],
      after == before if {llama_first} else not after[5])
"""
    result = started(subprocess.run, [sys.executable, "-c", code], capture_output=True, text=True,
                     timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    # Llama loaded by PIQE only if loaded before; Q-Align imported; transformers' own classes after
    assert result.stdout.split()[-4:] == [str(llama_first), "True", "True", "True"], result.stderr[-3000:]
