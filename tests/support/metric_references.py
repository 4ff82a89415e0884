"""Every metric against the library it matches: the one table tests and the metric benchmark share.

`REFERENCES` maps a metric to how both sides are built on the same inputs (`Case`), the largest
difference the tests accept, the sizes they check and, where a parameter changes the numbers, one
such change (its protocol hash must change with it). tests/unit/test_metric_references.py drives
every entry through agreement, batching, reset and the protocol hash; bench/metrics.py times the
same cases at real sizes. Learned models run with seeded random weights on both sides (agreement
and speed carry over; the values mean nothing); FID's features come from torchvision's
Inception-v3 with random weights through the same resize as clean-fid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

Values = list[float]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat", "camera", "brick")


@dataclass
class Case:
    """One metric's two sides on prepared inputs; each returns one value per image."""

    library: str
    ours: Callable[[], Values]
    theirs: Callable[[], Values] | None = None
    note: str = ""
    relative: bool = False  # compare values relative to the largest (features of a random network)
    metric: Any = None  # the metric `ours` scores with, ready for update() (None: FID's features)
    contexts: list[Any] | None = None  # the ImageContext of each image, where the metric reads them
    inputs: Inputs | None = None  # what `ours` scores, where it is not the inputs given (text charts)


# --------------------------------------------------------------------------- inputs


@dataclass
class Inputs:
    size: int
    preds: torch.Tensor  # uint8 [N, 3, S, S]: degraded copies
    targets: torch.Tensor  # uint8 references
    device: torch.device
    against_library: bool = True  # False: a memory row (our metric alone, with its default settings)

    def floats(self, which: str) -> torch.Tensor:
        return (getattr(self, which).float() / 255).to(self.device)

    def arrays(self, which: str) -> list[np.ndarray]:
        """float64 HxWx3 arrays of exactly the float32 [0, 1] values the metric is fed."""
        return [(image.permute(1, 2, 0).float() / 255).double().numpy() for image in getattr(self, which)]


def photo_inputs(size: int, count: int, device: torch.device) -> Inputs:
    """Photographs shipped with scikit-image, resized (Lanczos) to size², and noisy, blurred copies."""
    from skimage import data

    rng = np.random.default_rng(0)
    targets, preds = [], []
    for index in range(count):
        array = getattr(data, PHOTOS[index % len(PHOTOS)])()
        array = np.stack([array] * 3, axis=-1) if array.ndim == 2 else array[..., :3]
        image = Image.fromarray(array).resize((size, size), Image.Resampling.LANCZOS)
        blurred = np.asarray(image.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float64)
        noisy = np.clip(np.round(blurred + rng.normal(0, 6, blurred.shape)), 0, 255).astype(np.uint8)
        targets.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
        preds.append(torch.from_numpy(noisy).permute(2, 0, 1))
    return Inputs(size, torch.stack(preds), torch.stack(targets), device)


# --------------------------------------------------------------------------- cases


def _per_image(fn: Callable[[np.ndarray, np.ndarray], float], inputs: Inputs) -> Callable[[], Values]:
    preds, targets = inputs.arrays("preds"), inputs.arrays("targets")
    return lambda: [float(fn(p, t)) for p, t in zip(preds, targets, strict=True)]


def _ours(metric: Any, inputs: Inputs, full_reference: bool = True) -> Callable[[], Values]:
    preds, targets = inputs.floats("preds"), inputs.floats("targets")
    return lambda: metric.score(preds, targets if full_reference else None).tolist()


def psnr_case(inputs: Inputs, metric: Any = None) -> Case:
    from harness.metrics.fullref import PSNR

    metric = metric or PSNR()
    ours = _ours(metric, inputs)
    if inputs.device.type != "cpu":
        from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr

        preds, targets = inputs.floats("preds"), inputs.floats("targets")
        return Case("torchmetrics", ours, lambda: tm_psnr(preds, targets, data_range=1.0, dim=(1, 2, 3),
                                                           reduction="none").tolist(), metric=metric)
    from skimage.metrics import peak_signal_noise_ratio

    return Case("scikit-image", ours, _per_image(lambda p, t: peak_signal_noise_ratio(t, p, data_range=1),
                                                 inputs), metric=metric)


def ssim_case(inputs: Inputs, metric: Any = None) -> Case:
    from harness.metrics.fullref import SSIM

    metric = metric or SSIM()
    ours = _ours(metric, inputs)
    sigma = metric.params.sigma
    if inputs.device.type != "cpu":  # the same definition (11 taps, σ 1.5, valid region), in float32
        import pytorch_msssim

        preds, targets = inputs.floats("preds"), inputs.floats("targets")
        return Case("pytorch_msssim", ours, lambda: pytorch_msssim.ssim(
            preds, targets, data_range=1.0, size_average=False).tolist(), "library in float32", metric=metric)
    from skimage.metrics import structural_similarity

    def theirs(p: np.ndarray, t: np.ndarray) -> float:
        return structural_similarity(t, p, channel_axis=-1, data_range=1, gaussian_weights=True, sigma=sigma,
                                     use_sample_covariance=False)

    return Case("scikit-image", ours, _per_image(theirs, inputs), metric=metric)


def ms_ssim_case(inputs: Inputs, metric: Any = None) -> Case:
    import pytorch_msssim

    from harness.metrics.fullref import MSSSIM

    metric = metric or MSSSIM()
    preds, targets = inputs.floats("preds"), inputs.floats("targets")
    return Case("pytorch_msssim", _ours(metric, inputs), lambda: pytorch_msssim.ms_ssim(
        preds, targets, data_range=1.0, size_average=False).tolist(), "library in float32", metric=metric)


def lpips_case(backbone: str) -> Callable[[Inputs], Case]:
    def case(inputs: Inputs) -> Case:
        from harness.metrics.perceptual import LPIPS, LPIPSVGG

        reference = random_lpips(backbone).to(inputs.device)
        metric = (LPIPS if backbone == "alex" else LPIPSVGG)()
        metric.network = ours_lpips(backbone).to(inputs.device)
        preds, targets = inputs.floats("preds"), inputs.floats("targets")

        @torch.no_grad()
        def theirs() -> Values:
            return reference(preds, targets, normalize=True).flatten().tolist()

        return Case("lpips", _ours(metric, inputs), theirs, "random weights, both sides", metric=metric)
    return case


@cache
def random_lpips(backbone: str) -> torch.nn.Module:
    import lpips

    torch.manual_seed(0)
    return lpips.LPIPS(net=backbone, pnet_rand=True, verbose=False).eval()


@cache
def ours_lpips(backbone: str) -> torch.nn.Module:
    """Our network with the lpips package's random backbone and its shipped lin layers."""
    from harness.metrics.lpips_network import LPIPSNetwork

    reference = random_lpips(backbone)
    backbone_state = {f"features.{k.split('.', 2)[1]}.{k.rsplit('.', 1)[1]}": v
                      for k, v in reference.net.state_dict().items()}
    lins = {k: v for k, v in reference.state_dict().items() if k.startswith("lin")}
    network = LPIPSNetwork(backbone)  # type: ignore[arg-type]
    network.load_weights(backbone_state, lins)
    return network


def pyiqa_case(name: str, **options: Any) -> Callable[[Inputs], Case]:
    def case(inputs: Inputs) -> Case:
        import pyiqa

        from harness.metrics import METRICS
        from harness.metrics.pyiqa_models import transformers_llama_kept

        torch.manual_seed(0)
        with transformers_llama_kept():  # pyiqa's Q-Align patches transformers' Llama process-wide
            model = pyiqa.create_metric(name, device=inputs.device, **options).eval()
        params = METRICS.get(name).Params
        whole = inputs.against_library  # the library scores whole images; a memory row uses the defaults
        metric = METRICS.get(name)(params(max_side=max(inputs.size, 64)) if whole else params())
        metric.model = model
        preds = inputs.floats("preds")

        @torch.no_grad()
        def theirs() -> Values:
            return model(preds).reshape(-1).tolist()

        note = "random weights, both sides; " if options else ""
        policy = "whole images (max_side = size)" if inputs.against_library else "default large-image policy"
        return Case("pyiqa", _ours(metric, inputs, full_reference=False), theirs, note + policy,
                    metric=metric)
    return case


def legibility_case(inputs: Inputs) -> Case:
    from harness.metrics.base import ImageContext
    from harness.metrics.legibility import LegibilityCER, levenshtein, line_crops, ocr_engine
    from harness.sources.prepare import reference_annotations
    from harness.sources.textchart import LEGIBLE_ALPHABET, line_annotations, render_chart

    size, count = inputs.size, len(inputs.preds)
    targets, preds, contexts = [], [], []
    for seed in range(count):
        array, lines = render_chart(seed, font_sizes=(8, 12, 16, 24), alphabet=LEGIBLE_ALPHABET)
        chart = Image.fromarray(array).resize((size, size), Image.Resampling.LANCZOS)
        targets.append(torch.from_numpy(np.asarray(chart).copy()).permute(2, 0, 1))
        preds.append(torch.from_numpy(np.asarray(chart.filter(ImageFilter.GaussianBlur(0.6))).copy())
                     .permute(2, 0, 1))
        annotations = reference_annotations(line_annotations(lines, (512, 512)), (size, size))
        contexts.append(ImageContext(case_id=f"c{seed}", item_id=f"chart{seed}", prompt=None, seed=0,
                                     seed_group=str(seed), reference_key=str(seed), output_size=(size, size),
                                     native_size=None, annotations=annotations))
    charts = Inputs(size, torch.stack(preds), torch.stack(targets), torch.device("cpu"))
    pred_floats, target_floats = charts.floats("preds"), charts.floats("targets")
    engine = ocr_engine()
    keys = [c.case_id for c in contexts]

    metric = LegibilityCER()
    metric.load(torch.device("cpu"))

    def ours() -> Values:
        metric.reset()
        metric._reference_memo.clear()  # each call reads the references again, as the library side does
        metric.update(keys, pred_floats, target_floats, contexts)
        return [metric.compute().per_key[key] for key in keys]

    def theirs() -> Values:
        values = []
        for pred, target, context in zip(charts.preds, charts.targets, contexts, strict=True):
            lines = context.annotations["text_lines"]
            for image in (target, pred):  # the metric reads the reference too (its OCR floor)
                bgr = np.ascontiguousarray(image.permute(1, 2, 0).numpy()[..., ::-1])
                read, _ = engine.text_rec(line_crops(bgr, lines, 0.5))
            edits = sum(levenshtein(line["text"], "".join(text.split()))
                        for line, (text, _) in zip(lines, read, strict=True))
            values.append(edits / max(1, sum(len(line["text"]) for line in lines)))
        return values

    return Case("rapidocr", ours, theirs, "recogniser on the same crops of outputs and references",
                metric=metric, contexts=contexts, inputs=charts)


def spectral_case(name: str) -> Callable[..., Case]:
    def case(inputs: Inputs, metric: Any = None) -> Case:
        from harness.metrics import METRICS

        metric = metric or METRICS.get(name)()
        preds, targets = inputs.arrays("preds"), inputs.arrays("targets")
        if name == "spectral_distance":
            bins = metric.params.bins
            direct = lambda p, t: numpy_spectral_distance(p, t, bins)  # noqa: E731
        else:
            cutoff = metric.params.cutoff
            direct = lambda p, t: numpy_hf_ratio(p, t, cutoff)  # noqa: E731
        return Case("numpy.fft", _ours(metric, inputs),
                    lambda: [direct(p, t) for p, t in zip(preds, targets, strict=True)],
                    "a direct numpy computation (no library defines it)", metric=metric)
    return case


def _numpy_power(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gray = image @ np.array([0.299, 0.587, 0.114])
    gray = gray - gray.mean()
    window = np.outer(np.hanning(gray.shape[0]), np.hanning(gray.shape[1]))
    power = np.abs(np.fft.fft2(gray * window)) ** 2 / (window**2).sum()
    fy, fx = np.fft.fftfreq(gray.shape[0])[:, None], np.fft.fftfreq(gray.shape[1])[None, :]
    return power, np.hypot(fy, fx)


def numpy_spectral_distance(pred: np.ndarray, target: np.ndarray, bins: int = 32) -> float:
    curves = []
    for image in (pred, target):
        power, radius = _numpy_power(image)
        index = np.searchsorted(np.arange(bins + 1) * 0.5 / bins, radius, side="right") - 1
        inside = index < bins
        sums = np.bincount(index[inside], power[inside], minlength=bins)
        counts = np.maximum(np.bincount(index[inside], minlength=bins), 1)
        curves.append(10 * np.log10(np.maximum(sums / counts, 1e-20)))
    return float(np.abs(curves[0] - curves[1])[1:].mean())


def numpy_hf_ratio(pred: np.ndarray, target: np.ndarray, cutoff: float = 0.25) -> float:
    energies = []
    for image in (pred, target):
        power, radius = _numpy_power(image)
        energies.append(power[(radius >= cutoff) & (radius <= 0.5)].sum())
    return float(energies[0] / max(energies[1], 1e-20))


def fid_case(inputs: Inputs) -> Case:
    from cleanfid.resize import build_resizer

    from harness.metrics.inception import FeatureNetwork

    network = random_inception().to(inputs.device)
    ours = FeatureNetwork(network, "torchvision-inception-v3-random", "clean", inception=False)
    resizer = build_resizer("clean")
    batch = inputs.preds

    def ours_features() -> Values:
        return ours(batch.to(inputs.device)).flatten().tolist()

    @torch.no_grad()
    def theirs() -> Values:  # clean-fid's loop: resize each HxWx3 image, stack, network
        resized = [torch.from_numpy(resizer(image.permute(1, 2, 0).numpy())).permute(2, 0, 1)
                   for image in batch]
        return network(torch.stack(resized).to(inputs.device)).double().flatten().tolist()

    return Case("clean-fid", ours_features, theirs,
                "features, |Δ| relative to the largest; torchvision Inception-v3, random weights",
                relative=True)


@cache
def random_inception() -> torch.nn.Module:
    from torchvision.models import inception_v3

    torch.manual_seed(0)
    network = inception_v3(weights=None, aux_logits=False, init_weights=True)
    network.fc = torch.nn.Identity()
    return network.eval()


def seam_case(inputs: Inputs) -> Case:
    from harness.metrics.base import ImageContext
    from harness.metrics.seam import SeamScore

    size = inputs.size
    grid = {"tile_px": size // 2, "overlap_px": 8, "x_seams": [size / 2], "y_seams": [size / 2],
            "native_size": [size, size]}
    contexts = [ImageContext(case_id=f"c{i}", item_id="i", prompt=None, seed=0, seed_group="g",
                             reference_key="r", output_size=(size, size), native_size=(size, size),
                             facts={"tile_grid": grid}) for i in range(len(inputs.preds))]
    preds, targets, keys = inputs.floats("preds"), inputs.floats("targets"), [c.case_id for c in contexts]

    metric = SeamScore()

    def ours() -> Values:
        metric.reset()
        metric.update(keys, preds, targets, contexts)
        return [metric.compute().per_key[key] for key in keys]

    return Case("—", ours, note="no library defines it", metric=metric, contexts=contexts)


def invention_case(inputs: Inputs) -> Case:
    from harness.metrics.invention import InventionStd

    group = torch.cat([inputs.floats("preds"), inputs.floats("targets")])  # K = 2N "seeds" of one case

    def ours() -> Values:
        return [InventionStd().score_group("g", group)]

    return Case("—", ours, note=f"{len(group)} images as one group of seeds; no library defines it")


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Reference:
    """How a metric is checked: both sides, the tolerance and the sizes the tests use."""

    build: Callable[..., Case]  # both sides on inputs; `metric=` where it takes a configured metric
    tolerance: float | None  # the largest |ours − library| accepted (None: no library defines it)
    sizes: tuple[int, ...]  # image sides the tests check (the benchmark takes its own)
    requires: tuple[str, ...] = ()  # modules the library side imports: the tests skip without them
    vary: dict[str, Any] = field(default_factory=dict)  # a parameter change: the protocol hash follows it
    batch_tolerance: float = 1e-9  # relative: one image per update against the whole batch at once
    slow: bool = False  # a real-size network or OCR model: the tests mark it e2e


REFERENCES: dict[str, Reference] = {
    "psnr": Reference(psnr_case, 1e-10, (48,), ("skimage",)),
    "ssim": Reference(ssim_case, 1e-12, (48,), ("skimage",), vary={"sigma": 1.0}),
    "ms_ssim": Reference(ms_ssim_case, 1e-5, (176,), ("pytorch_msssim",), vary={"sigma": 1.0}),
    "lpips": Reference(lpips_case("alex"), 1e-5, (64,), ("lpips",), batch_tolerance=1e-5),
    "lpips_vgg": Reference(lpips_case("vgg"), 1e-5, (64,), ("lpips",), batch_tolerance=1e-5, slow=True),
    "spectral_distance": Reference(spectral_case("spectral_distance"), 1e-9, (48,), vary={"bins": 16}),
    "hf_energy_ratio": Reference(spectral_case("hf_energy_ratio"), 1e-9, (48,), vary={"cutoff": 0.125}),
    "piqe": Reference(pyiqa_case("piqe"), 1e-9, (64,), ("pyiqa",), vary={"large_image": "resize"}),
    "musiq": Reference(pyiqa_case("musiq", pretrained=False), 1e-5, (64,), ("pyiqa",), vary={"max_side": 512},
                       batch_tolerance=1e-5, slow=True),
    "topiq_nr": Reference(pyiqa_case("topiq_nr", pretrained=False, backbone_pretrain=False), 1e-5, (64,),
                          ("pyiqa",), vary={"max_side": 512}, batch_tolerance=1e-5, slow=True),
    "legibility_cer": Reference(legibility_case, 0.0, (128,), ("rapidocr_onnxruntime",), vary={"pad": 0.25},
                                slow=True),
    "fid": Reference(fid_case, 1e-5, (64,), ("cleanfid", "torchvision"),
                     vary={"resize_mode": "legacy_pytorch"}, slow=True),
    "seam_score": Reference(seam_case, None, (64,), vary={"strip_px": 2}),
    "invention_std": Reference(invention_case, None, (48,), vary={"heatmap_max": 0.2}),
}
CASES: dict[str, Callable[..., Case]] = {name: reference.build for name, reference in REFERENCES.items()}


def difference(case: Case) -> float:
    """The largest |ours − library| over the images (relative to the largest library value where the
    case says so)."""
    assert case.theirs is not None, "no library side"
    ours, theirs = np.asarray(case.ours(), dtype=np.float64), np.asarray(case.theirs(), dtype=np.float64)
    largest = float(np.max(np.abs(ours - theirs)))
    return largest / float(np.max(np.abs(theirs))) if case.relative else largest


def assert_agrees(name: str, inputs: Inputs) -> list[float]:
    """`name`'s values on `inputs` are the library's within the table's tolerance; returns ours."""
    reference = REFERENCES[name]
    case = reference.build(inputs)
    assert reference.tolerance is not None and case.theirs is not None, f"{name} has no library side"
    found = difference(case)
    assert found <= reference.tolerance, (
        f"{name}: |ours − {case.library}| = {found:.3g} > {reference.tolerance:g}")
    return case.ours()


def pair_inputs(preds: np.ndarray, targets: np.ndarray) -> Inputs:
    """Inputs from float [0, 1] HxWx3 arrays of 8-bit values (one image each)."""
    def uint8(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.round(array * 255).astype(np.uint8)).permute(2, 0, 1)[None]

    return Inputs(max(preds.shape[:2]), uint8(preds), uint8(targets), torch.device("cpu"))
