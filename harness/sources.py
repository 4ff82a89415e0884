"""Sources: what every decoder is fed.

The `images` source lists items (built-in sets, a folder, or a JSONL
manifest of {"image", "prompt"}), and for each case prepares

1. the reference: the image centre-cropped to the comparison aspect ratio
   and resized to the comparison size with antialiased Lanczos-3, 8-bit;
2. the input image: the reference area-downsampled to the input size;
3. the latent: the input image through the suite's encoder, then noised to
   the case's sigma with the latent space's noise form and a generator
   seeded by the case seed.

References and latents go to the content-addressed cache; every decoder
reads the same bytes from there. Encoding runs once per distinct input, on
the CPU in the runner process (which never initialises CUDA).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from decoders.base import Encoder
from decoders.registry import ENCODERS
from decoders.resample import resize
from decoders.spaces import get_space
from harness import images
from harness.cache import TensorCache, cache_key, tensor_sha256
from harness.cases import Case, Item
from harness.suite import Suite
from harness.textchart import LEGIBILITY_FONT_SIZES, LEGIBLE_ALPHABET, line_annotations, render_chart

REFERENCE_PROTOCOL = {
    "crop": "centre crop to the comparison aspect ratio",
    "resize": "lanczos3 antialiased, float, to the comparison size",
    "quantize": "8-bit, round half up",
    "input": "area downsampling of the 8-bit reference, float",
    "version": 1,
}

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}

PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
    "retina", "camera", "brick", "grass", "gravel", "coins",
)


class SourceError(ValueError):
    pass


@dataclass(frozen=True)
class LoadableItem:
    item: Item
    load: Callable[[], np.ndarray] = field(repr=False, compare=False)
    # Facts about the image in its own pixel coordinates (a chart's text lines and boxes);
    # cases get them mapped onto the reference by `reference_annotations`.
    annotations: dict[str, Any] = field(default_factory=dict, compare=False)


# --------------------------------------------------------------------------- listing


def _skimage_photo(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return images.to_rgb_array(getattr(skimage.data, name)())

    return load


def _array_item(item_id: str, origin: str, load: Callable[[], np.ndarray],
                annotations: dict[str, Any] | None = None) -> LoadableItem:
    array = load()
    return LoadableItem(Item(item_id, images.pixels_sha256(array), None, origin), lambda: array,
                        annotations or {})


def _builtin_photos() -> list[LoadableItem]:
    return [_array_item(f"photos/{n}", "builtin:photos", _skimage_photo(n)) for n in PHOTOS]


def _chart_item(item_id: str, origin: str, **chart: Any) -> LoadableItem:
    array, lines = render_chart(**chart)
    size = (array.shape[1], array.shape[0])
    return _array_item(item_id, origin, lambda: array, line_annotations(lines, size))


def _builtin_textchart() -> list[LoadableItem]:
    return [_chart_item("textchart/seed0", "builtin:textchart", seed=0)]


LEGIBILITY_CHARTS = 4


def _builtin_legibility() -> list[LoadableItem]:
    """Charts of seeded random strings at 6–24 px in an OCR-unambiguous alphabet, 512×512."""
    return [_chart_item(f"legibility/seed{seed}", "builtin:legibility", seed=seed,
                        font_sizes=LEGIBILITY_FONT_SIZES, alphabet=LEGIBLE_ALPHABET)
            for seed in range(LEGIBILITY_CHARTS)]


BUILTIN_SETS: dict[str, Callable[[], list[LoadableItem]]] = {
    "photos": _builtin_photos,
    "textchart": _builtin_textchart,
    "legibility": _builtin_legibility,
}


def _file_item(item_id: str, path: Path, prompt: str | None, origin: str) -> LoadableItem:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return LoadableItem(Item(item_id, digest, prompt, origin), lambda: images.read_rgb(path))


def _folder_items(folder: Path) -> list[LoadableItem]:
    if not folder.is_dir():
        raise SourceError(f"source.folder: {folder} is not a directory")
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        sidecar = path.with_suffix(".txt")
        prompt = sidecar.read_text(encoding="utf-8").strip() if sidecar.exists() else None
        found.append(_file_item(path.relative_to(folder).as_posix(), path, prompt, str(folder)))
    if not found:
        raise SourceError(f"source.folder: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return found


def _manifest_items(manifest: Path) -> list[LoadableItem]:
    try:
        lines = manifest.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SourceError(f"source.manifest: cannot read {manifest}: {exc}") from None
    found = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{where}: invalid JSON: {exc}") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise SourceError(f'{where}: expected an object with a string "image"')
        unknown = set(entry) - {"image", "prompt", "id"}
        if unknown:
            raise SourceError(f"{where}: unknown keys {sorted(unknown)} (allowed: image, prompt, id)")
        path = Path(entry["image"])
        path = path if path.is_absolute() else manifest.parent / path
        if not path.is_file():
            raise SourceError(f"{where}: image not found: {path}")
        found.append(_file_item(entry.get("id") or entry["image"], path, entry.get("prompt"),
                                str(manifest)))
    if not found:
        raise SourceError(f"source.manifest: {manifest} lists no images")
    return found


def list_items(suite: Suite) -> list[LoadableItem]:
    source = suite.model.source
    found: list[LoadableItem] = []
    for name in source.builtin:
        if name not in BUILTIN_SETS:
            known = ", ".join(BUILTIN_SETS)
            raise SourceError(f"source.builtin: unknown built-in set {name!r}; known: {known}")
        found.extend(BUILTIN_SETS[name]())
    if source.folder:
        found.extend(_folder_items(suite.resolve_path(source.folder)))
    if source.manifest:
        found.extend(_manifest_items(suite.resolve_path(source.manifest)))
    ids = [entry.item.id for entry in found]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise SourceError(f"source: item ids occur twice: {duplicates}")
    return found[: source.limit] if source.limit else found


def source_protocol(suite: Suite) -> dict[str, Any]:
    """What, besides the item and case settings, determines the inputs."""
    encoder = suite.model.source.encoder
    return {"kind": suite.model.source.kind, "encoder": encoder.name,
            "encoder_params": suite.encoder_params.model_dump(), "reference": REFERENCE_PROTOCOL}


# --------------------------------------------------------------------------- preparation


@dataclass(frozen=True)
class PreparedCase:
    case: Case
    input_path: Path
    input_sha256: str
    latent_shape: tuple[int, ...]
    reference_key: str
    reference_path: Path
    notes: tuple[str, ...] = ()
    annotations: dict[str, Any] = field(default_factory=dict, compare=False)  # reference pixels

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.case.as_dict(), "input_path": str(self.input_path),
            "input_sha256": self.input_sha256, "latent_shape": list(self.latent_shape),
            "reference_key": self.reference_key, "notes": list(self.notes),
            **({"annotations": self.annotations} if self.annotations else {}),
        }


def centre_crop_box(width: int, height: int, aspect: float) -> tuple[int, int, int, int]:
    """Largest centred box of the given width/height aspect: (left, top, right, bottom)."""
    if width / height > aspect:
        new_width = max(1, round(height * aspect))
        left = (width - new_width) // 2
        return (left, 0, left + new_width, height)
    new_height = max(1, round(width / aspect))
    top = (height - new_height) // 2
    return (0, top, width, top + new_height)


def make_reference(rgb: np.ndarray, size: tuple[int, int]) -> tuple[torch.Tensor, list[str]]:
    """uint8 HxWx3 → uint8 [3, H, W] at `size` = (width, height), plus notes."""
    left, top, right, bottom = centre_crop_box(rgb.shape[1], rgb.shape[0], size[0] / size[1])
    crop = torch.from_numpy(np.array(rgb[top:bottom, left:right]))
    image = images.to_float(crop.permute(2, 0, 1))[None].double()
    notes = []
    if right - left < size[0] or bottom - top < size[1]:
        notes.append(
            f"reference upsampled from a {right - left}x{bottom - top} crop to "
            f"{size[0]}x{size[1]}: fidelity is measured against an interpolated image"
        )
    return images.quantize(resize(image, size, "lanczos"))[0], notes


def reference_annotations(annotations: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """Map an item's annotations onto its reference (the crop and resize of `make_reference`).

    Text lines keep their strings; boxes and font sizes are scaled to reference pixels;
    a line that the crop cuts is dropped.
    """
    if "text_lines" not in annotations:
        return {}
    width, height = annotations["image_size"]
    left, top, right, bottom = centre_crop_box(width, height, size[0] / size[1])
    scale_x, scale_y = size[0] / (right - left), size[1] / (bottom - top)
    lines = []
    for line in annotations["text_lines"]:
        x0, y0, x1, y1 = line["box"]
        if x0 < left or y0 < top or x1 > right or y1 > bottom:
            continue
        lines.append({
            "text": line["text"], "font_px": round(line["font_px"] * scale_y, 2),
            "box": [(x0 - left) * scale_x, (y0 - top) * scale_y,
                    (x1 - left) * scale_x, (y1 - top) * scale_y],
        })
    return {"image_size": list(size), "text_lines": lines}


def make_input(reference: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [3, H, W] reference → float32 [1, 3, h, w] in [0, 1] by area downsampling."""
    return resize(images.to_float(reference)[None].double(), size, "area").float()


class InputPreparer:
    """Builds (or finds in the cache) the reference and latent of each case."""

    def __init__(self, suite: Suite, cache: TensorCache) -> None:
        self.suite, self.cache = suite, cache
        entry = suite.model.source.encoder
        self._encoder_cls = ENCODERS.get(entry.name)
        self._encoder: Encoder | None = None
        self._space = get_space(self._encoder_cls.spec.latent_space)
        self.protocol = source_protocol(suite)

    def _encoder_instance(self) -> Encoder:
        if self._encoder is None:
            encoder = self._encoder_cls(self.suite.encoder_params)
            encoder.load(torch.device("cpu"), torch.float32)
            self._encoder = encoder
        return self._encoder

    def encoder_weights(self) -> dict[str, str]:
        return self._encoder.weights() if self._encoder is not None else {}

    def prepare(self, cases: list[Case], items: list[LoadableItem]) -> Iterator[PreparedCase]:
        by_id = {entry.item.id: entry for entry in items}
        memo: dict[str, np.ndarray] = {}

        def pixels(item_id: str) -> np.ndarray:
            """Decode an image only on a cache miss; keep one (cases of an item are adjacent)."""
            if item_id not in memo:
                memo.clear()
                memo[item_id] = by_id[item_id].load()
            return memo[item_id]

        for case in cases:
            prepared = self._prepare_case(case, partial(pixels, case.item_id))
            annotations = by_id[case.item_id].annotations
            if annotations:
                prepared = replace(prepared, annotations=reference_annotations(
                    annotations, case.output_size))
            yield prepared

    def _prepare_case(self, case: Case, pixels: Callable[[], np.ndarray]) -> PreparedCase:
        ref_key = cache_key("reference", {
            "item_sha256": case.item_sha256, "size": list(case.output_size),
            "protocol": REFERENCE_PROTOCOL,
        })
        cached = self.cache.get(ref_key)
        notes: list[str] = []
        if cached is None:
            reference, notes = make_reference(pixels(), case.output_size)
            self.cache.put(ref_key, {"image": reference}, {"notes": notes})
        else:
            reference = cached["image"]
        input_key = cache_key("latent", {
            "reference": ref_key, "input": list(case.input_size), "source": self.protocol,
            "encoder_weights": self._encoder_instance().weights(),
            "sigma": case.sigma, "seed": case.seed if case.sigma > 0 else None,
        })
        cached = self.cache.get(input_key)
        if cached is None:
            latent = self._encode(reference, case)
            self.cache.put(input_key, {"latent": latent}, {"case": case.as_dict()})
        else:
            latent = cached["latent"]
        return PreparedCase(
            case=case, input_path=self.cache.path(input_key), input_sha256=tensor_sha256(latent),
            latent_shape=tuple(latent.shape), reference_key=ref_key,
            reference_path=self.cache.path(ref_key), notes=tuple(notes),
        )

    def _encode(self, reference: torch.Tensor, case: Case) -> torch.Tensor:
        image = make_input(reference, case.input_size)
        with torch.no_grad():
            latent = self._encoder_instance().encode(image)[0].float()
        expected = self._space.latent_shape(case.input_size)
        if tuple(latent.shape) != expected:
            raise SourceError(
                f"encoder {self._encoder_cls.spec.name} produced {list(latent.shape)}, "
                f"expected {list(expected)} for the {self._space.name} latent space"
            )
        generator = torch.Generator().manual_seed(case.seed)
        return self._space.add_noise(latent, case.sigma, generator).contiguous()
