"""Sources: what every decoder is fed.

Three kinds of source list items, and for each case prepare a latent (and,
where there is one, a reference image):

- `images` ("from clean image"): built-in sets, a folder, or a JSONL
  manifest of {"image", "prompt"}. Per case: (1) the reference: the image
  centre-cropped to the comparison aspect ratio and resized to the
  comparison size with antialiased Lanczos-3, 8-bit; (2) the input image:
  the reference area-downsampled to the input size; (3) the latent: the
  input through the suite's encoder, then noised to the case's sigma with
  the latent space's noise form and a generator seeded by the case's input
  seed (never by the decoder seed: cases that differ only in the decoder
  seed get byte-identical latents).
- `latents`: latents users bring (harness.sources.items), noised the same way;
  a reference image only where the manifest names one.
- `prompts` ("from text"): each prompt and input seed through the suite's
  text-to-image pipeline, run to the end or stopped early (x_t and its sigma
  captured); no reference. Without a pipeline only text-to-pixel decoders run.

References and latents go to the content-addressed cache, keyed by
everything that determines them; every decoder reads the same bytes from
there. Learned encoders and pipelines run once per cache miss in a spawned
source worker on the suite's device (harness.sources.worker): the runner
process never initialises CUDA.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from decoders.lazy import torch
from decoders.registry import ENCODERS
from decoders.resample import resize
from decoders.spaces import LatentSpace, get_space
from harness import images
from harness.cases import Case, Item
from harness.sources.benchmarks import benchmark_items
from harness.sources.cache import TensorCache, cache_key, tensor_sha256
from harness.sources.items import (
    LoadableItem,
    SourceError,
    json_lines,
    latent_items,
    prompt_items,
    read_bytes,
    sidecar_prompt,
)
from harness.sources.textchart import LEGIBILITY_FONT_SIZES, LEGIBLE_ALPHABET, line_annotations, render_chart
from harness.store import file_problem
from harness.suite import Suite

__all__ = ["InputPreparer", "LoadableItem", "PreparedCase", "SourceError", "list_items",
           "source_protocol"]

REFERENCE_PROTOCOL = {
    "crop": "centre crop to the comparison aspect ratio",
    "resize": "lanczos3 antialiased, float, to the comparison size",
    "quantize": "8-bit, round half up",
    "input": "area downsampling of the 8-bit reference, float",
    "version": 1,
}

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}

# Built-in photographs with captions (decoders such as PiD need one).
PHOTOS = {
    "astronaut": "Portrait of astronaut Eileen Collins in an orange flight suit, smiling, in front of "
                 "an American flag, holding a helmet, a model of the Space Shuttle beside her",
    "coffee": "A cup of coffee with a heart of latte art on a saucer with a spoon, on a table",
    "chelsea": "Close-up of a ginger tabby cat with green eyes looking to the side",
    "rocket": "A rocket standing on its launch pad under a blue sky",
    "hubble_deep_field": "Hubble Deep Field: hundreds of distant galaxies on a black sky",
    "immunohistochemistry": "Microscope image of immunohistochemically stained tissue with "
                            "brown and blue stained cells",
    "retina": "Fundus photograph of a human retina with the optic disc and branching blood vessels",
    "camera": "Black and white photograph of a cameraman with a film camera on a tripod in a field",
    "brick": "Grayscale close-up of a brick wall texture",
    "grass": "Grayscale close-up of a grass texture",
    "gravel": "Grayscale close-up of a gravel texture",
    "coins": "Black and white photograph of many old coins on a dark background",
}


# --------------------------------------------------------------------------- listing


# The files behind skimage.data.<name>() (each function only reads its file; tests check the
# arrays are equal). Read with PIL they cost no import of skimage.io (~0.4 s), which `validate`
# of the demo suite would otherwise pay to hash the photographs.
PHOTO_FILES = {
    "astronaut": "astronaut.png", "coffee": "coffee.png", "chelsea": "chelsea.png", "rocket": "rocket.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg", "immunohistochemistry": "ihc.png",
    "retina": "retina.jpg", "camera": "camera.png", "brick": "brick.png", "grass": "grass.png",
    "gravel": "gravel.png", "coins": "coins.png",
}


def _skimage_photo(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import importlib.util

        from PIL import Image

        spec = importlib.util.find_spec("skimage")
        folder = Path(next(iter(spec.submodule_search_locations or []), "")) / "data" if spec else None
        if folder is not None and (folder / PHOTO_FILES[name]).is_file():
            with Image.open(folder / PHOTO_FILES[name]) as image:
                return images.to_rgb_array(np.asarray(image))
        import skimage.data

        return images.to_rgb_array(getattr(skimage.data, name)())

    return load


def _array_item(item_id: str, origin: str, array: np.ndarray, prompt: str,
                annotations: dict[str, Any] | None = None) -> LoadableItem:
    return LoadableItem(Item(item_id, images.pixels_sha256(array), prompt, origin), lambda: array,
                        annotations=annotations or {})


def _builtin_photos() -> list[LoadableItem]:
    return [_array_item(f"photos/{name}", "builtin:photos", _skimage_photo(name)(), caption)
            for name, caption in PHOTOS.items()]


def _chart_item(item_id: str, origin: str, **chart: Any) -> LoadableItem:
    """A rendered chart, captioned with its text, annotated with its lines for OCR metrics."""
    array, lines = render_chart(**chart)
    caption = ("A white page with lines of black text in growing font sizes: "
               + " ".join(line.text for line in lines))
    size = (array.shape[1], array.shape[0])
    return _array_item(item_id, origin, array, caption, line_annotations(lines, size))


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
    """An image file; one that cannot be read keeps its problem (the other items still run)."""
    problem = file_problem(path)
    if problem is not None:  # a FIFO, a device or a dangling symlink named like an image
        return LoadableItem(Item(item_id, hashlib.sha256(str(path).encode()).hexdigest(), prompt, origin),
                            problem=f"{path}: {problem}")
    data = read_bytes(path, "the image")
    return LoadableItem(Item(item_id, hashlib.sha256(data).hexdigest(), prompt, origin),
                        lambda: images.read_rgb(path), problem=images.check_image(path, data))


# Listing is lazy: an entry is (item id, a function that opens its file). Ids are checked and
# `limit` is applied on the entries; only the items a suite uses are opened (a 100,000-image
# manifest with limit = 2 reads two files).
Entry = tuple[str, Callable[[], LoadableItem]]


def _ready(item: LoadableItem) -> Entry:
    return item.item.id, lambda: item


def _folder_items(folder: Path) -> list[Entry]:
    if not folder.is_dir():
        raise SourceError(f"source.folder: {folder} is not a directory")
    found: list[Entry] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.is_dir():
            continue  # a folder named like an image is a folder: its images are listed
        item_id, origin = path.relative_to(folder).as_posix(), str(folder)
        found.append((item_id, partial(_folder_item, item_id, path, origin)))
    if not found:
        raise SourceError(f"source.folder: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return found


def _folder_item(item_id: str, path: Path, origin: str) -> LoadableItem:
    return _file_item(item_id, path, sidecar_prompt(path), origin)


def _manifest_items(manifest: Path) -> list[Entry]:
    found: list[Entry] = []
    for where, entry in json_lines(manifest, {"image", "prompt", "id"}, "image"):
        item_id = entry.get("id") or entry["image"]  # the path is made when the item is opened
        found.append((item_id, partial(_manifest_item, where, item_id, manifest, entry)))
    if not found:
        raise SourceError(f"source.manifest: {manifest} lists no images")
    return found


def _manifest_item(where: str, item_id: str, manifest: Path, entry: dict[str, Any]) -> LoadableItem:
    path = Path(entry["image"])
    path = path if path.is_absolute() else manifest.parent / path
    if not path.is_file() and file_problem(path) == "not found":
        raise SourceError(f"{where}: image not found: {path}")
    return _file_item(item_id, path, entry.get("prompt"), str(manifest))


def _image_items(suite: Suite) -> list[Entry]:
    source = suite.model.source
    found: list[Entry] = []
    for name in source.builtin:
        if name not in BUILTIN_SETS:
            known = ", ".join(BUILTIN_SETS)
            raise SourceError(f"source.builtin: unknown built-in set {name!r}; known: {known}")
        found.extend(_ready(item) for item in BUILTIN_SETS[name]())
    if source.folder:
        found.extend(_folder_items(suite.resolve_path(source.folder)))
    if source.manifest:
        found.extend(_manifest_items(suite.resolve_path(source.manifest)))
    return found


def list_items(suite: Suite) -> list[LoadableItem]:
    """The source's items, in order, cut to `limit`: ids are checked over every entry (in linear
    time), files are opened only for the items kept."""
    source = suite.model.source
    if source.kind == "images":
        entries = _image_items(suite)
    elif source.kind == "latents":
        entries = latent_items(
            source.space, suite.resolve_path(source.folder) if source.folder else None,
            suite.resolve_path(source.manifest) if source.manifest else None, source.synthetic,
            suite.model.resolution.input)
    else:
        found = prompt_items(source.prompts, suite.resolve_path(source.file) if source.file else None)
        for name in source.benchmark:
            found.extend(benchmark_items(name))
        entries = [_ready(item) for item in found]
    counts = Counter(item_id for item_id, _ in entries)
    duplicates = sorted(item_id for item_id, n in counts.items() if n > 1)
    if duplicates:
        more = f" and {len(duplicates) - 10} more" if len(duplicates) > 10 else ""
        raise SourceError(f"source: item ids occur twice: {duplicates[:10]}{more}")
    return [make() for _, make in (entries[: source.limit] if source.limit else entries)]


def source_protocol(suite: Suite) -> dict[str, Any]:
    """What, besides the item and case settings, determines the inputs."""
    source = suite.model.source
    if source.kind == "images":
        return {"kind": "images", "encoder": source.encoder.name,
                "encoder_params": suite.encoder_params.model_dump(), "reference": REFERENCE_PROTOCOL}
    if source.kind == "latents":
        return {"kind": "latents", "space": source.space, "synthetic": source.synthetic,
                "reference": REFERENCE_PROTOCOL}
    pipeline = source.pipeline.model_dump(mode="json") if source.pipeline else None
    return {"kind": "prompts", "pipeline": pipeline}


def source_space(suite: Suite) -> LatentSpace | None:
    """The latent space of a suite's inputs (None: a prompts source without pipeline)."""
    source = suite.model.source
    if source.kind == "images":
        return get_space(ENCODERS.get(source.encoder.name).spec_for(suite.encoder_params).latent_space)
    if source.kind == "latents":
        return get_space(source.space)
    return get_space(source.pipeline.info.space) if source.pipeline else None


# --------------------------------------------------------------------------- preparation


@dataclass(frozen=True)
class PreparedCase:
    case: Case
    input_path: Path | None  # cached latent; None when the source makes none (prompts only)
    input_sha256: str | None
    latent_shape: tuple[int, ...] | None
    reference_key: str | None  # None: no reference image (prompts; latents without one)
    reference_path: Path | None
    input_sigma: float = 0.0  # noise level of the latent (a captured x_t has its own)
    notes: tuple[str, ...] = ()
    annotations: dict[str, Any] = field(default_factory=dict, compare=False)  # reference pixels
    problem: str | None = None  # the input could not be made (a bad image file): no decoder runs it

    @classmethod
    def failed(cls, case: Case, problem: str) -> PreparedCase:
        return cls(case=case, input_path=None, input_sha256=None, latent_shape=None, reference_key=None,
                   reference_path=None, input_sigma=case.sigma, problem=problem)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.case.as_dict(), "input_path": str(self.input_path) if self.input_path else None,
            "input_sha256": self.input_sha256,
            "latent_shape": list(self.latent_shape) if self.latent_shape else None,
            "input_sigma": self.input_sigma, "reference_key": self.reference_key,
            "notes": list(self.notes),
            **({"annotations": self.annotations} if self.annotations else {}),
            **({"input_error": self.problem} if self.problem else {}),
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


def case_annotations(annotations: dict[str, Any], prepared: PreparedCase) -> dict[str, Any]:
    """What a case's metrics learn from its item: benchmark metadata as it is, geometric
    annotations mapped onto the reference (when there is one)."""
    found = {"benchmark": annotations["benchmark"]} if "benchmark" in annotations else {}
    if prepared.reference_key is not None:
        found.update(reference_annotations(annotations, prepared.case.output_size))
    return found


def make_input(reference: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [3, H, W] reference → float32 [1, 3, h, w] in [0, 1] by area downsampling."""
    return resize(images.to_float(reference)[None].double(), size, "area").float()


Reference = tuple[str, "torch.Tensor", list[str]]  # cache key, uint8 [3, H, W], notes


class InputPreparer:
    """Builds (or finds in the cache) the reference and latent of each case."""

    def __init__(self, suite: Suite, cache: TensorCache, log_dir: Path | None = None) -> None:
        self.suite, self.cache = suite, cache
        self.kind = suite.model.source.kind
        self.protocol = source_protocol(suite)
        self.space = source_space(suite)
        from harness.sources.worker import SourceModel  # the process machinery: only to prepare

        self.model = SourceModel.for_suite(suite, log_dir or cache.root / "logs")

    def describe(self) -> dict[str, Any]:
        """What made the inputs, for the manifest."""
        return self.model.describe() if self.model is not None else {}

    def close(self) -> None:
        if self.model is not None:
            self.model.close()

    def prepare(self, cases: list[Case], items: list[LoadableItem]) -> Iterator[PreparedCase]:
        by_id = {entry.item.id: entry for entry in items}
        memo: dict[str, np.ndarray] = {}
        problems = {entry.item.id: entry.problem for entry in items if entry.problem}

        def pixels(item_id: str) -> np.ndarray:
            """Decode an image only on a cache miss; keep one (cases of an item are adjacent)."""
            if item_id not in memo:
                memo.clear()
                memo[item_id] = by_id[item_id].load()  # type: ignore[misc]
            return memo[item_id]

        for case in cases:
            entry = by_id[case.item_id]
            if case.item_id in problems:
                yield PreparedCase.failed(case, problems[case.item_id])
                continue
            try:
                reference = (self._reference(case, partial(pixels, case.item_id))
                             if entry.load is not None else None)
            except images.ImageFileError as exc:  # damage that only decoding the pixels finds
                problems[case.item_id] = str(exc)
                yield PreparedCase.failed(case, str(exc))
                continue
            if self.kind == "images":
                prepared = self._from_image(case, reference)  # type: ignore[arg-type]
            elif self.kind == "latents":
                prepared = self._from_latent(case, entry, reference)
            else:
                prepared = self._from_prompt(case)
            if entry.annotations:
                prepared = replace(prepared, annotations=case_annotations(entry.annotations, prepared))
            yield prepared

    # ------------------------------------------------------------------ per kind

    def _reference(self, case: Case, pixels: Callable[[], np.ndarray]) -> Reference:
        ref_key = cache_key("reference", {
            "item_sha256": case.item_sha256, "size": list(case.output_size),
            "protocol": REFERENCE_PROTOCOL,
        })
        cached = self.cache.entry(ref_key)
        if cached is not None:  # its notes were stored with it: every run sharing the cache says them
            return ref_key, cached[0]["image"], [str(note) for note in cached[1].get("notes", [])]
        reference, notes = make_reference(pixels(), case.output_size)
        self.cache.put(ref_key, {"image": reference}, {"notes": notes})
        return ref_key, reference, notes

    def _from_image(self, case: Case, reference: Reference) -> PreparedCase:
        ref_key, image, notes = reference
        fields: dict[str, Any] = {
            "reference": ref_key, "input": list(case.input_size), "source": self.protocol,
            "encoder_weights": self.model.weights(),
            "sigma": case.sigma, "seed": case.input_seed if case.sigma > 0 else None,
        }
        if not self.model.in_process:
            fields["device"] = self.model.device_type
        key = cache_key("latent", fields)

        def make() -> tuple[torch.Tensor, float]:
            latent = self.model.encode(make_input(image, case.input_size))[0].float()
            return self._noised(self._checked(latent, case), case), case.sigma

        return self._prepared(case, key, make, reference, notes)

    def _from_latent(self, case: Case, entry: LoadableItem, reference: Reference | None) -> PreparedCase:
        key = cache_key("latent", {
            "item_sha256": case.item_sha256, "input": list(case.input_size), "source": self.protocol,
            "sigma": case.sigma, "seed": case.input_seed if case.sigma > 0 else None,
        })

        def make() -> tuple[torch.Tensor, float]:
            latent = entry.load_latent()  # type: ignore[misc]
            return self._noised(self._checked(latent, case), case), case.sigma

        return self._prepared(case, key, make, reference, reference[2] if reference else [])

    def _from_prompt(self, case: Case) -> PreparedCase:
        if self.space is None:  # no pipeline: the prompt itself is the input
            return PreparedCase(case=case, input_path=None, input_sha256=None, latent_shape=None,
                                reference_key=None, reference_path=None, input_sigma=case.sigma)
        key = cache_key("latent", {
            "prompt_sha256": case.item_sha256, "input": list(case.input_size), "seed": case.input_seed,
            "sigma": case.sigma, "source": self.protocol, "pipeline_weights": self.model.weights(),
            "device": self.model.device_type,
        })
        stopped_early = self.suite.model.source.pipeline.stop_at_step is not None  # type: ignore[union-attr]

        def make() -> tuple[torch.Tensor, float]:
            latent, sigma = self.model.generate(case.prompt or "", case.input_seed, case.input_size)
            latent = self._noised(self._checked(latent[0].float(), case), case)
            return latent, sigma if stopped_early else case.sigma

        return self._prepared(case, key, make, None, [])

    # ------------------------------------------------------------------ shared steps

    def _checked(self, latent: torch.Tensor, case: Case) -> torch.Tensor:
        assert self.space is not None
        expected = self.space.latent_shape(case.input_size)
        if tuple(latent.shape) != expected:
            raise SourceError(f"{self.model.name if self.model else 'the source'} produced "
                              f"{list(latent.shape)}, expected {list(expected)} for the "
                              f"{self.space.name} latent space")
        return latent

    def _noised(self, latent: torch.Tensor, case: Case) -> torch.Tensor:
        assert self.space is not None
        generator = torch.Generator().manual_seed(case.input_seed)
        return self.space.add_noise(latent, case.sigma, generator).contiguous()

    def _prepared(self, case: Case, key: str, make: Callable[[], tuple[torch.Tensor, float]],
                  reference: Reference | None, notes: list[str]) -> PreparedCase:
        """Find the latent in the cache or make it; its noise level is stored next to it."""
        cached = self.cache.get(key)
        if cached is None:
            latent, level = make()
            sigma = torch.tensor(level, dtype=torch.float64)
            self.cache.put(key, {"latent": latent, "sigma": sigma}, {"case": case.as_dict()})
        else:
            latent, sigma = cached["latent"], cached.get("sigma", torch.tensor(case.sigma))
        ref_key = reference[0] if reference else None
        return PreparedCase(
            case=case, input_path=self.cache.path(key), input_sha256=tensor_sha256(latent),
            latent_shape=tuple(latent.shape), reference_key=ref_key,
            reference_path=self.cache.path(ref_key) if ref_key else None,
            input_sigma=float(sigma), notes=tuple(notes),
        )
