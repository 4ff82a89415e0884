"""Metric benchmark: each metric against the library it matches or wraps, on the same inputs.

    python bench/metrics.py [--sizes 256 1024 2048] [--memory-size 4096] [--device cpu cuda]
                                    [--metrics psnr ssim ...] [--repeats 5] [--json out.json]
    nox -s bench-metrics

For every metric, size and device, one process times our metric and the
library on the same images (photographs resized to the size, and degraded
copies; text charts for the OCR metric), interleaved (ours, library, library,
ours, ...) after one untimed call each, and prints the medians as images per
second, their ratio (ours ÷ library: above 1 is faster), the largest
difference between the values, and the peak memory of one call of each (CPU:
the process's peak resident set above what it held before the call, through
the kernel's reset high-water mark; CUDA: `max_memory_allocated` above the
allocation before the call). `--memory-size` adds one row per metric at that
size (default 4096²) with our time and peak memory only.

Libraries: scikit-image (PSNR, SSIM), pytorch_msssim (MS-SSIM; SSIM on CUDA),
lpips (LPIPS), pyiqa (PIQE, MUSIQ, TOPIQ-NR), rapidocr (the recogniser on the
same line crops, outputs and references), clean-fid (its `clean` resizer and
feature loop around the same network), numpy.fft (a direct computation of
the spectral metrics, which no library defines). Learned weights are not
needed: LPIPS, MUSIQ and TOPIQ-NR run with seeded random weights on both sides
(the lpips package's own random backbone, loaded into ours), and FID features
come from torchvision's Inception-v3 with random weights instead of clean-fid's
TorchScript file — the same operations, so speed and agreement carry over,
though the numbers themselves mean nothing. Metrics whose models cannot be
built offline (CLIP-IQA, MANIQA, DISTS, NIQE, BRISQUE, CLIPScore, GenEval,
DPG-Bench) are listed as not run, with the reason.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

Values = list[float]
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "cat", "camera", "brick")
IMAGES_PER_SIZE = {256: 8, 512: 4, 1024: 2}  # larger sizes: one image
NOT_RUN = {
    "clipiqa": "needs OpenAI CLIP RN50 weights to build", "maniqa": "needs timm ViT-B/8 weights to build",
    "dists": "pyiqa builds it from downloaded VGG16 weights", "niqe": "needs its parameter file",
    "brisque": "needs its SVM weights", "clipscore": "needs CLIP ViT-L/14 weights",
    "geneval": "needs a detector backend and its weights", "dpg_bench": "needs a VQA backend and its weights",
    "kid": "shares fid's feature pipeline (the row `fid`)",
    "patch_fid": "shares fid's feature pipeline (the row `fid`)",
    "invention_lpips": "is lpips over pairs (the row `lpips`)",
}


@dataclass
class Row:
    metric: str
    size: int
    device: str
    images: int
    library: str
    ours_per_s: float | None = None
    library_per_s: float | None = None
    ratio: float | None = None
    max_abs_diff: float | None = None
    ours_peak_mb: float | None = None
    library_peak_mb: float | None = None
    note: str = ""


@dataclass
class Case:
    """One metric's two sides on prepared inputs; each returns one value per image."""

    library: str
    ours: Callable[[], Values]
    theirs: Callable[[], Values] | None = None
    note: str = ""
    relative: bool = False  # compare values relative to the largest (features of a random network)


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


def psnr_case(inputs: Inputs) -> Case:
    from harness.metrics.fullref import PSNR

    ours = _ours(PSNR(), inputs)
    if inputs.device.type != "cpu":
        from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr

        preds, targets = inputs.floats("preds"), inputs.floats("targets")
        return Case("torchmetrics", ours, lambda: tm_psnr(preds, targets, data_range=1.0, dim=(1, 2, 3),
                                                           reduction="none").tolist())
    from skimage.metrics import peak_signal_noise_ratio

    return Case("scikit-image", ours, _per_image(lambda p, t: peak_signal_noise_ratio(t, p, data_range=1),
                                                 inputs))


def ssim_case(inputs: Inputs) -> Case:
    from harness.metrics.fullref import SSIM

    ours = _ours(SSIM(), inputs)
    if inputs.device.type != "cpu":  # the same definition (11 taps, σ 1.5, valid region), in float32
        import pytorch_msssim

        preds, targets = inputs.floats("preds"), inputs.floats("targets")
        return Case("pytorch_msssim", ours, lambda: pytorch_msssim.ssim(
            preds, targets, data_range=1.0, size_average=False).tolist(), "library in float32")
    from skimage.metrics import structural_similarity

    def theirs(p: np.ndarray, t: np.ndarray) -> float:
        return structural_similarity(t, p, channel_axis=-1, data_range=1, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)

    return Case("scikit-image", ours, _per_image(theirs, inputs))


def ms_ssim_case(inputs: Inputs) -> Case:
    import pytorch_msssim

    from harness.metrics.fullref import MSSSIM

    preds, targets = inputs.floats("preds"), inputs.floats("targets")
    return Case("pytorch_msssim", _ours(MSSSIM(), inputs), lambda: pytorch_msssim.ms_ssim(
        preds, targets, data_range=1.0, size_average=False).tolist(), "library in float32")


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

        return Case("lpips", _ours(metric, inputs), theirs, "random weights, both sides")
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

        torch.manual_seed(0)
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
        return Case("pyiqa", _ours(metric, inputs, full_reference=False), theirs, note + policy)
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

    return Case("rapidocr", ours, theirs, "recogniser on the same crops of outputs and references")


def spectral_case(name: str) -> Callable[[Inputs], Case]:
    def case(inputs: Inputs) -> Case:
        from harness.metrics import METRICS

        metric = METRICS.get(name)()
        preds, targets = inputs.arrays("preds"), inputs.arrays("targets")
        direct = numpy_spectral_distance if name == "spectral_distance" else numpy_hf_ratio
        return Case("numpy.fft", _ours(metric, inputs),
                    lambda: [direct(p, t) for p, t in zip(preds, targets, strict=True)],
                    "a direct numpy computation (no library defines it)")
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

    def ours() -> Values:
        metric = SeamScore()
        metric.update(keys, preds, targets, contexts)
        return [metric.compute().per_key[key] for key in keys]

    return Case("—", ours, note="no library defines it")


def invention_case(inputs: Inputs) -> Case:
    from harness.metrics.invention import InventionStd

    group = torch.cat([inputs.floats("preds"), inputs.floats("targets")])  # K = 2N "seeds" of one case

    def ours() -> Values:
        return [InventionStd().score_group("g", group)]

    return Case("—", ours, note=f"{len(group)} images as one group of seeds; no library defines it")


CASES: dict[str, Callable[[Inputs], Case]] = {
    "psnr": psnr_case, "ssim": ssim_case, "ms_ssim": ms_ssim_case,
    "lpips": lpips_case("alex"), "lpips_vgg": lpips_case("vgg"),
    "spectral_distance": spectral_case("spectral_distance"),
    "hf_energy_ratio": spectral_case("hf_energy_ratio"),
    "piqe": pyiqa_case("piqe"), "musiq": pyiqa_case("musiq", pretrained=False),
    "topiq_nr": pyiqa_case("topiq_nr", pretrained=False, backbone_pretrain=False),
    "legibility_cer": legibility_case, "fid": fid_case,
    "seam_score": seam_case, "invention_std": invention_case,
}


# --------------------------------------------------------------------------- measuring


def _call(fn: Callable[[], Values], device: torch.device) -> tuple[Values, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    values = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return values, time.perf_counter() - began


def _release_freed_heap() -> None:
    """Return freed heap pages to the kernel (glibc), so that a call's peak resident set above the
    baseline counts the memory it needs, not only what earlier calls left unreturned."""
    import contextlib
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):  # not glibc: the peak may be understated
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def peak_mb(fn: Callable[[], Values], device: torch.device) -> tuple[float | None, float]:
    """(peak memory of one call above what was held before it in MB, its seconds)."""
    import gc

    from harness.workers.measure import MemoryProbe

    gc.collect()
    _release_freed_heap()
    probe = MemoryProbe(device)
    probe.start()
    seconds = _call(fn, device)[1]
    memory = probe.stop()
    if device.type == "cuda":
        return (memory["peak_allocated_bytes"] - memory["baseline_allocated_bytes"]) / 1e6, seconds
    if memory["method"] != "linux_vmhwm_reset" or memory["baseline_rss_bytes"] is None:
        return None, seconds
    return max(0, memory["peak_rss_bytes"] - memory["baseline_rss_bytes"]) / 1e6, seconds


def measure(name: str, inputs: Inputs, repeats: int, with_library: bool = True) -> Row:
    device = inputs.device
    row = Row(name, inputs.size, str(device), len(inputs.preds), "")
    try:
        case = CASES[name](inputs)
    except ImportError as exc:
        row.note = f"not run: {exc}"
        return row
    row.library, row.note = case.library, case.note
    if not with_library:  # a memory row: one call, its peak and its time
        row.ours_peak_mb, seconds = peak_mb(case.ours, device)
        row.ours_per_s, row.library = len(inputs.preds) / seconds, "—"
        return row
    ours_values, first = _call(case.ours, device)  # warm-up (and the values)
    ours_times: list[float] = []
    their_times: list[float] = []
    if case.theirs is not None:
        their_values, _ = _call(case.theirs, device)
        difference = float(np.max(np.abs(np.subtract(ours_values, their_values))))
        row.max_abs_diff = difference / float(np.max(np.abs(their_values))) if case.relative else difference
    for index in range(1 if first > 60 else repeats):  # interleaved, alternating who goes first
        order = [(case.ours, ours_times), (case.theirs, their_times)]
        for fn, times in order if index % 2 == 0 else order[::-1]:
            if fn is not None:
                times.append(_call(fn, device)[1])
    row.ours_per_s = len(inputs.preds) / statistics.median(ours_times)
    row.ours_peak_mb = peak_mb(case.ours, device)[0]
    if case.theirs is not None:
        row.library_per_s = len(inputs.preds) / statistics.median(their_times)
        row.ratio = row.ours_per_s / row.library_per_s
        row.library_peak_mb = peak_mb(case.theirs, device)[0]
    return row


def run(metrics: list[str], sizes: list[int], devices: list[str], repeats: int,
        memory_size: int | None) -> list[Row]:
    rows = []
    for device_name in devices:
        device = torch.device(device_name)
        plan = [(size, True) for size in sizes] + ([(memory_size, False)] if memory_size else [])
        for size, with_library in plan:
            inputs = photo_inputs(size, IMAGES_PER_SIZE.get(size, 1) if with_library else 1, device)
            inputs.against_library = with_library
            for name in metrics:
                if name in NOT_RUN:
                    continue
                rows.append(measure(name, inputs, repeats if with_library else 1, with_library))
                print(format_row(rows[-1]), flush=True)
    return rows


# --------------------------------------------------------------------------- output


HEADER = ("| metric | size | device | images | ours img/s | library | library img/s | ours ÷ library "
          "| max \\|Δ\\| | peak MB ours / library | note |\n|---|---|---|---|---|---|---|---|---|---|---|")


def _number(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def format_row(row: Row) -> str:
    peak = f"{_number(row.ours_peak_mb, '.0f')} / {_number(row.library_peak_mb, '.0f')}"
    return (f"| {row.metric} | {row.size}² | {row.device} | {row.images} | {_number(row.ours_per_s, '.3g')} "
            f"| {row.library} | {_number(row.library_per_s, '.3g')} | {_number(row.ratio, '.2f')} "
            f"| {_number(row.max_abs_diff, '.1e')} | {peak} | {row.note} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/metrics.py",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--metrics", nargs="+", default=list(CASES), choices=sorted(CASES))
    parser.add_argument("--sizes", nargs="*", type=int, default=[256, 1024, 2048])
    parser.add_argument("--memory-size", type=int, default=4096,
                        help="one ours-only row per metric at this size (0: none)")
    parser.add_argument("--device", nargs="+", default=None, help="default: cpu, and cuda where available")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    devices = args.device or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""))
    print(HEADER, flush=True)
    rows = run(args.metrics, args.sizes, devices, args.repeats, args.memory_size or None)
    for name in sorted(NOT_RUN):
        print(f"not run: {name} — {NOT_RUN[name]}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump([asdict(row) for row in rows], handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
