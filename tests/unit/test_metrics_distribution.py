"""FID, KID and patch-FID: the statistics against references, resize modes, patch protocols,
and the whole pipeline offline with an injected feature network.

References: GaParmar/clean-fid @ f15662789f4e8dced3a9be972f58147ffc5cd4ae — cleanfid/fid.py
(`frechet_distance` with scipy.linalg.sqrtm; `kernel_distance`), cleanfid/resize.py
(`make_resizer`: clean = PIL bicubic per channel in mode "F"; legacy_pytorch = torch bilinear,
align_corners=False, clipped), cleanfid/features.py (`InceptionV3W`: (x − 128) / 128 into `layers`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import decoder_tables, suite_text
from PIL import Image
from scipy import linalg

from harness import images
from harness.metrics import inception
from harness.metrics.distribution import (
    FID,
    frechet_distance,
    kernel_inception_distance,
    mean_and_covariance,
)
from harness.metrics.inception import INCEPTION, load_network, resize_for_features
from harness.metrics.patches import PatchParams, extract, patch_protocol, protocol_sha256
from harness.metrics.weights import files_for, locate
from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.store import RunStore
from harness.suite import load_suite


def scipy_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """clean-fid's frechet_distance (scipy sqrtm), the reference."""
    covmean = np.real(linalg.sqrtm(sigma1.dot(sigma2)))
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def direct_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with k(a, b) = (aᵀb / d + 1)³, written out pair by pair."""
    d, m = x.shape[1], len(x)
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return float(xx + yy - 2 * xy)


def test_frechet_distance_equals_the_scipy_sqrtm_implementation() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 48)) @ rng.normal(size=(48, 48))
    b = rng.normal(0.3, 1.0, size=(250, 48)) @ rng.normal(size=(48, 48))
    mu1, s1 = mean_and_covariance(a)
    mu2, s2 = mean_and_covariance(b)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(scipy_frechet(mu1, s1, mu2, s2), rel=1e-7)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_closed_form_for_two_gaussians() -> None:
    """Commuting covariances: FID = ‖μ₁ − μ₂‖² + ‖Σ₁^½ − Σ₂^½‖²_F, exactly and from samples."""
    rng = np.random.default_rng(1)
    dims = 6
    rotation, _ = np.linalg.qr(rng.normal(size=(dims, dims)))
    var1, var2 = rng.uniform(0.5, 2.0, dims), rng.uniform(0.5, 2.0, dims)
    sigma1, sigma2 = rotation @ np.diag(var1) @ rotation.T, rotation @ np.diag(var2) @ rotation.T
    mu1, mu2 = rng.normal(size=dims), rng.normal(size=dims)
    closed = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2))
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(closed, rel=1e-10)
    samples1 = rng.multivariate_normal(mu1, sigma1, size=200_000)
    samples2 = rng.multivariate_normal(mu2, sigma2, size=200_000)
    from_samples = frechet_distance(*mean_and_covariance(samples1), *mean_and_covariance(samples2))
    assert from_samples == pytest.approx(closed, rel=0.02)


def test_kid_equals_a_direct_unbiased_mmd() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(12, 5)), rng.normal(0.5, 1.2, size=(12, 5))
    mean, std, used = kernel_inception_distance(x, y, subsets=3, subset_size=100, seed=0)
    assert used == 12 and std == pytest.approx(0, abs=1e-12)  # every subset is the whole set
    assert mean == pytest.approx(direct_mmd(x, y), rel=1e-10)
    sub_mean, _, sub_used = kernel_inception_distance(x, y, subsets=50, subset_size=6, seed=0)
    assert sub_used == 6 and sub_mean != pytest.approx(mean)


def test_warnings_when_samples_are_too_few() -> None:
    metric = FID()
    rng = np.random.default_rng(3)
    values = metric.compare(rng.normal(size=(5, 16)), rng.normal(size=(40, 16)))
    assert len(values.warnings) == 1 and "5 generated samples < feature dimension 16" in values.warnings[0]
    with pytest.raises(ValueError, match="at least 2 samples"):
        metric.compare(rng.normal(size=(1, 16)), rng.normal(size=(40, 16)))


# --------------------------------------------------------------------------- resize modes and networks


def test_resize_modes_follow_clean_fid() -> None:
    rng = np.random.default_rng(4)
    batch = torch.from_numpy(rng.integers(0, 256, size=(2, 3, 64, 80), dtype=np.uint8))
    clean = resize_for_features(batch, "clean")
    for index in range(2):
        for channel in range(3):
            pil = Image.fromarray(batch[index, channel].numpy().astype(np.float32), mode="F")
            expected = np.asarray(pil.resize((299, 299), resample=Image.BICUBIC)).clip(0, 255)
            np.testing.assert_array_equal(clean[index, channel].numpy(), expected)
    legacy = resize_for_features(batch, "legacy_pytorch")
    expected = F.interpolate(batch.float(), size=(299, 299), mode="bilinear", align_corners=False)
    torch.testing.assert_close(legacy, expected.clamp(0, 255))
    assert torch.equal(resize_for_features(batch, "legacy_tensorflow"), batch.float())
    with pytest.raises(TypeError, match="8-bit"):
        resize_for_features(batch.float(), "clean")


def test_resize_frechet_and_kernel_distance_equal_clean_fid_itself() -> None:
    """Against the clean-fid package (test extra), on the same inputs: the text chart at 512² has
    sharp edges where bicubic overshoots [0, 255] (clean-fid clips; ours did not before)."""
    cleanfid = pytest.importorskip("cleanfid", reason="clean-fid is not installed (test extra)")
    from cleanfid import fid as cleanfid_fid
    from cleanfid.resize import build_resizer

    from harness.sources.textchart import render_chart

    chart, _ = render_chart(0, (512, 512))
    batch = torch.from_numpy(chart).permute(2, 0, 1)[None].contiguous()
    for mode in ("clean", "legacy_pytorch"):
        theirs = build_resizer(mode)(chart)  # HWC float32
        ours = resize_for_features(batch, mode)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-4, err_msg=mode)
        assert ours.min() >= 0 and ours.max() <= 255
    unclipped = Image.fromarray(chart[..., 0].astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC)
    assert ((np.asarray(unclipped) < 0) | (np.asarray(unclipped) > 255)).mean() > 0.01  # clipping matters

    rng = np.random.default_rng(5)
    a = rng.normal(size=(120, 24)) @ rng.normal(size=(24, 24))
    b = rng.normal(0.2, 1.1, size=(90, 24)) @ rng.normal(size=(24, 24))
    (mu1, s1), (mu2, s2) = mean_and_covariance(a), mean_and_covariance(b)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        cleanfid_fid.frechet_distance(mu1, s1, mu2, s2), rel=1e-6)
    # One subset holding every sample: clean-fid's random subsets and ours are the same sets.
    mean, _, used = kernel_inception_distance(a[:90], b, subsets=1, subset_size=90, seed=0)
    assert used == 90
    assert mean == pytest.approx(cleanfid_fid.kernel_distance(a[:90], b, num_subsets=1, max_subset_size=90),
                                 rel=1e-9)
    assert cleanfid.__name__ == "cleanfid"


class _Layers(torch.nn.Module):
    def __init__(self, dims: int = 8) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, dims, 7, stride=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(torch.tanh(self.conv(x)), 1)


class _NVlabsStyleInception(torch.nn.Module):
    """Same interface as inception-2015-12-05.pt: `.layers` and forward(x, return_features)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = _Layers()

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return self.layers((x - 128) / 128)


def test_inception_loader_normalises_like_clean_fid(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = torch.jit.script(_NVlabsStyleInception())
    path = tmp_path / "inception.pt"
    module.save(str(path))
    batch = torch.randint(0, 256, (2, 3, 40, 50), dtype=torch.uint8)
    clean = load_network(path, INCEPTION, "clean", torch.device("cpu"))
    expected = module.layers((resize_for_features(batch, "clean") - 128) / 128).reshape(2, -1)
    torch.testing.assert_close(clean(batch), expected.double())
    legacy = load_network(path, INCEPTION, "legacy_tensorflow", torch.device("cpu"))
    torch.testing.assert_close(legacy(batch), module(batch.float(), True).reshape(2, -1).double())


# --------------------------------------------------------------------------- patches


def test_patch_protocols_are_deterministic_and_shared_between_real_and_generated() -> None:
    image = torch.randint(0, 256, (3, 300, 520), dtype=torch.uint8)
    other = torch.randint(0, 256, (3, 300, 520), dtype=torch.uint8)
    grid = patch_protocol(PatchParams(protocol="grid_halfshift", patch_px=128))
    patches = extract(image, "k", grid)
    assert patches.shape == (4 * 2 + 3 * 1, 3, 128, 128)  # aligned 4×2, shifted 3×1
    assert torch.equal(patches[0], image[:, :128, :128]) and torch.equal(patches[8], image[:, 64:192, 64:192])
    random = patch_protocol(PatchParams(protocol="random_crops", crops_per_image=5))
    first, again = extract(image, "ref-1", random), extract(image, "ref-1", random)
    assert first.shape == (5, 3, 256, 256) and torch.equal(first, again)
    assert not torch.equal(first, extract(image, "ref-2", random))
    native = patch_protocol(PatchParams(protocol="native_crops", crops_per_image=3))
    a, b = extract(image, "ref-1", native), extract(other, "ref-1", native)
    assert a.shape == (3, 3, 299, 299)
    # Same key → same positions in another image: find each crop of `a` in `image`, compare `other` there.
    for crop_a, crop_b in zip(a, b, strict=True):
        ys, xs = np.nonzero(image[0].numpy() == crop_a[0, 0, 0].item())
        hit = [(y, x) for y, x in zip(ys, xs, strict=True) if y + 299 <= 300 and x + 299 <= 520
               and torch.equal(image[:, y:y + 299, x:x + 299], crop_a)]
        y, x = hit[0]
        assert torch.equal(other[:, y:y + 299, x:x + 299], crop_b)


def test_patch_protocol_hash_is_stable() -> None:
    grid = patch_protocol(PatchParams())
    assert grid == {"name": "grid_halfshift", "patch_px": 256}
    assert protocol_sha256(grid) == "5a7247c86e855828de9c208033f9c58eb5d6d82f93544def0e6a20a7900600ab"
    random = patch_protocol(PatchParams(protocol="random_crops"))
    assert random == {"name": "random_crops", "patch_px": 256, "crops_per_image": 8, "seed": 0,
                      "scale": [0.25, 1.0], "resize": "lanczos3 antialiased, 8-bit"}
    reseeded = patch_protocol(PatchParams(protocol="random_crops", seed=1))
    assert protocol_sha256(random) != protocol_sha256(reseeded)


# --------------------------------------------------------------------------- end to end


class _TinyFeatures(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 9, stride=8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(torch.sin(self.conv(x / 255)), 1).flatten(1)


@pytest.mark.e2e
def test_fid_kid_patch_fid_end_to_end_with_an_injected_network(write_suite, tmp_path, image_folder,
                                                                monkeypatch) -> None:
    torch.manual_seed(0)
    network = torch.jit.script(_TinyFeatures())
    network_path = tmp_path / "features.pt"
    network.save(str(network_path))
    spec = f'feature_network = "torchscript:{network_path}"'
    metrics = (f'metrics = [{{name = "fid", params = {{{spec}}}}}, {{name = "kid", params = {{{spec}}}}}, '
               f'{{name = "patch_fid", params = {{{spec}, patch_px = 16}}}}]')
    text = suite_text(image_folder, decoder_tables('name = "bilinear"'))
    text = text.replace('metrics = ["psnr", "ssim"]', metrics)
    suite = load_suite(write_suite(text))
    calls: Counter[int] = Counter()
    original = inception.FeatureNetwork.__call__

    def counting(self, batch):  # count images through the network, per run
        calls[len(batch)] += 1
        return original(self, batch)

    monkeypatch.setattr(inception.FeatureNetwork, "__call__", counting)
    cache = TensorCache(tmp_path / "cache")
    run_dir = Runner.new(suite, tmp_path / "run", cache).run().run_dir
    # A generated batch per metric, plus reference features for fid and patch_fid: kid has the
    # same feature protocol as fid and reads fid's reference features from the disk cache.
    assert sum(calls.values()) == 3 + 2
    records, _ = RunStore.open(run_dir).records()
    sets = [r for r in records if r["kind"] == "metric"]
    assert Counter(r["metric"] for r in sets) == {"fid": 1, "kid": 1, "patch_fid": 1}
    assert all(r["case"] is None and r["size"] == [32, 32] and r["status"] == "ok" for r in sets)
    # The value is the Fréchet distance of the stored outputs vs the stored references.
    cases = RunStore.open(run_dir).cases()
    outputs = torch.stack([images.read_png(run_dir / RunStore.image_relpath("bilinear", c["id"]))
                           for c in cases])
    references = torch.stack([images.read_png(run_dir / c["reference"]) for c in cases])
    features = load_network(network_path, "torchscript:x", "clean", torch.device("cpu"))
    generated, reference = features(outputs).numpy(), features(references).numpy()
    fid = next(r for r in sets if r["metric"] == "fid")
    expected = scipy_frechet(*mean_and_covariance(generated), *mean_and_covariance(reference))
    assert fid["value"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert any("rank-deficient" in w for w in fid["warnings"])
    kid = next(r for r in sets if r["metric"] == "kid")
    assert kid["value"] == pytest.approx(direct_mmd(generated, reference), rel=1e-6)
    assert "subset size 1000" in kid["warnings"][0] and kid["details"]["subset_size"] == 3
    patch = next(r for r in sets if r["metric"] == "patch_fid")
    assert patch["details"]["generated_samples"] == 3 * 5  # 2×2 aligned + 1 shifted patch of 16 px
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["metrics"]["fid"]["protocol"]["features"]["resize_mode"] == "clean"
    assert any("rank-deficient" in note for note in manifest["notes"])
    # Resume writes nothing new; a second run reads the cached reference features.
    Runner.resume(run_dir, cache).run()
    assert RunStore.open(run_dir).records()[0] == records
    calls.clear()
    Runner.new(suite, tmp_path / "run2", cache).run()
    assert sum(calls.values()) == 3  # every reference feature came from the cache


@pytest.mark.skipif(not all(locate(e) for e in files_for("fid")),
                    reason="the real Inception weights (inception-2015-12-05.pt) are not in the cache")
def test_real_inception_features() -> None:
    from skimage import data

    metric = FID()
    metric.load(torch.device("cpu"))
    assert metric.network is not None
    photos = [images.to_rgb_array(getattr(data, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    batch = torch.stack([torch.from_numpy(p[:256, :256].copy()).permute(2, 0, 1) for p in photos])
    features = metric.network(batch)
    assert features.shape == (4, 2048) and torch.isfinite(features).all() and (features >= 0).all()
    one_by_one = torch.cat([metric.network(image[None]) for image in batch])
    torch.testing.assert_close(one_by_one, features, rtol=1e-4, atol=1e-4)  # batch size does not matter


def test_fid_of_a_text_to_image_run_against_a_folder_of_real_images(write_suite, tmp_path,
                                                                    image_folder) -> None:
    """A prompts source has no references: FID and patch-FID compare with `reference_folder`, each image
    made a reference of the comparison size as the images source makes them."""
    from harness.sources.prepare import make_reference

    torch.manual_seed(0)
    network_path = tmp_path / "features.pt"
    torch.jit.script(_TinyFeatures()).save(str(network_path))
    spec = f'feature_network = "torchscript:{network_path}", reference_folder = "{image_folder}"'
    patches = 'protocol = "native_crops", patch_px = 16, crops_per_image = 4'
    text = f"""
name = "t2i"
seeds = [0, 1]
metrics = [{{name = "fid", params = {{{spec}}}}},
           {{name = "patch_fid", params = {{{spec}, {patches}}}}},
           {{name = "kid", params = {{{spec.replace(str(image_folder), str(tmp_path / "nowhere"))}}}}}]
[source]
kind = "prompts"
prompts = ["a", "b", "c"]
[resolution]
input = 32
output_scale = 1
[timing]
repeats = 1
[[decoder]]
name = "prompt-painter"
params = {{reds = {{a = 10, b = 120, c = 240}}}}
"""
    suite = load_suite(write_suite(text))
    run_dir = Runner.new(suite, tmp_path / "run", TensorCache(tmp_path / "cache")).run().run_dir
    records = {r["metric"]: r for r in RunStore.open(run_dir).records()[0] if r["kind"] == "metric"}
    features = load_network(network_path, "torchscript:x", "clean", torch.device("cpu"))
    cases = RunStore.open(run_dir).cases()
    outputs = torch.stack([images.read_png(run_dir / RunStore.image_relpath("prompt-painter", c["id"]))
                           for c in cases])
    real = torch.stack([make_reference(images.read_rgb(p), (32, 32))[0]
                        for p in sorted(image_folder.iterdir())])
    expected = scipy_frechet(*mean_and_covariance(features(outputs).numpy()),
                             *mean_and_covariance(features(real).numpy()))
    assert records["fid"]["status"] == "ok" and records["fid"]["value"] == pytest.approx(expected, rel=1e-6)
    assert records["fid"]["details"] == {"generated_samples": 6, "reference_samples": 3, "feature_dims": 4}
    assert records["patch_fid"]["details"]["generated_samples"] == 6 * 4
    assert records["kid"]["status"] == "unavailable" and "holds no images" in records["kid"]["message"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "reference_folder" in manifest["metrics"]["fid"]["protocol"]["reference"]
