"""What a source lists: its items (built-in photos and text charts, a folder or a JSONL manifest of
images; latents and prompts through harness.sources.items; benchmark prompts), each checked and
loaded only when used, ids unique, `limit` applied before any file is opened."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from harness import images
from harness.cases import Item
from harness.sources.benchmarks import benchmark_items
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
from harness.store import StoreError, file_problem
from harness.suite import Suite

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


def check_source_paths(suite: Suite, manifest: Path) -> None:
    """The files a resumed run reads again (its source) must still be where the suite says."""
    source = suite.model.source
    named = {key: getattr(source, key, None) for key in ("folder", "manifest", "file")}
    for key, value in named.items():
        if value is None:
            continue
        path = suite.resolve_path(value)
        if not path.exists():
            relative = "" if suite.path.is_absolute() else (
                f"; this run stored its suite path {str(suite.path)!r} relative to the directory it "
                "was started from: resume it from there")
            raise StoreError(f"{manifest}: suite.path: source.{key} {value!r} resolves to {path}, "
                             f"which does not exist{relative}")
