"""Items of the `latents` and `prompts` sources (the `images` source lists in harness.sources.prepare).

latents: safetensors files holding a tensor "latent" ([C, h, w] or [1, C, h, w],
normalized, in the declared space or its folded/unfolded sibling), from a
folder (prompt: sidecar .txt) or a JSON-lines manifest
{"latent": path, "id": ..., "prompt": ..., "reference": image path}; each
file stands for one input size, which must be among resolution.input. Or
`synthetic = N`: N standard-normal latents per input size, for performance
suites.

prompts: inline `prompts`, and/or a file of one prompt per line (or JSON
lines {"prompt": ..., "id": ...}).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open

from decoders.lazy import torch
from decoders.spaces import SPACES, LatentSpace, as_space, get_space
from harness import images
from harness.cases import Item
from harness.errors import DecoderbenchError
from harness.records import Size
from harness.store import PathProblem, file_problem, read_regular

LATENT_KEY = "latent"


class SourceError(DecoderbenchError, ValueError):
    pass


@dataclass(frozen=True)
class LoadableItem:
    item: Item
    load: Callable[[], np.ndarray] | None = field(default=None, repr=False, compare=False)  # image
    load_latent: Callable[[], torch.Tensor] | None = field(default=None, repr=False, compare=False)
    # Facts about the image in its own pixel coordinates (a chart's text lines and boxes);
    # cases get them mapped onto the reference by `sources.reference_annotations`.
    annotations: dict[str, Any] = field(default_factory=dict, compare=False)
    # Why the item's file cannot be used (`PATH: what is wrong`): validate reports it, a run records
    # its cases as `input_error` and runs the other items.
    problem: str | None = None


Entry = tuple[str, Callable[[], "LoadableItem"]]  # (item id, open its files): listing is lazy


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


MAX_FILE_BYTES = 1 << 34  # 16 GiB: far beyond a 16384² image or a manifest of millions of lines


def read_bytes(path: Path, what: str) -> bytes:
    """A source file's bytes; SourceError naming it when it is no regular file (a FIFO with no
    writer, a device, a directory) or cannot be read."""
    try:
        return read_regular(path, MAX_FILE_BYTES)
    except PathProblem as exc:
        raise SourceError(f"{path}: cannot read {what}: {exc}") from None


def sidecar_prompt(path: Path) -> str | None:
    """The prompt in PATH.txt next to a file, if there is one (UTF-8)."""
    sidecar = path.with_suffix(".txt")
    if not os.path.lexists(sidecar):
        return None
    problem = file_problem(sidecar)
    if problem is not None:  # a folder, a FIFO or a dangling link where the prompt should be
        raise SourceError(f"{sidecar}: the prompt of {path.name} cannot be read: {problem}")
    try:
        return read_bytes(sidecar, "the prompt").decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise SourceError(f"{sidecar}: the prompt is not UTF-8 text ({exc.reason} at byte {exc.start})") \
            from None


# --------------------------------------------------------------------------- latents


def _latent_item(item_id: str, path: Path, prompt: str | None, reference: Path | None, origin: str,
                 space: LatentSpace, sizes: list[Size]) -> LoadableItem:
    if not path.is_file():
        raise SourceError(f"{origin}: latent file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
            if LATENT_KEY not in keys:
                raise SourceError(f"{path}: no tensor named {LATENT_KEY!r} (found {keys})")
            shape = list(handle.get_slice(LATENT_KEY).get_shape())
    except SourceError:
        raise
    except Exception as exc:  # safetensors raises its own error type for a damaged header
        raise SourceError(f"{path}: not a readable safetensors file ({exc})") from None
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    channels = shape[0] if len(shape) == 3 else None
    sibling = SPACES[space.sibling] if space.sibling else None
    form = space if channels == space.channels else sibling if sibling and channels == sibling.channels \
        else None
    if form is None:
        raise SourceError(f"{path}: latent of shape {shape} is not in the {space.name} space "
                          f"([{space.channels}, h, w])")
    size = (shape[2] * form.factor, shape[1] * form.factor)
    if size not in sizes:
        raise SourceError(f"{path}: a {shape} latent stands for a {size[0]}x{size[1]} image, which is "
                          f"not among resolution.input {[list(s) for s in sizes]}")
    digest = hashlib.sha256(read_bytes(path, "the latent"))
    if reference is not None:
        if not reference.is_file():
            raise SourceError(f"{origin}: reference image not found: {reference}")
        problem = images.check_image(reference)
        if problem is not None:
            raise SourceError(f"{origin}: reference {problem}")
        digest.update(read_bytes(reference, "the reference image"))

    def load_latent() -> torch.Tensor:
        from safetensors.torch import load_file  # imports torch: not at module import

        tensor = load_file(str(path))[LATENT_KEY].float()
        return as_space(tensor.reshape(1, *shape), space)[0].contiguous()

    item = Item(item_id, digest.hexdigest(), prompt, origin, size)
    load = (lambda: images.read_rgb(reference)) if reference is not None else None
    return LoadableItem(item, load, load_latent)


def _folder_latents(folder: Path, space: LatentSpace, sizes: list[Size]) -> list[Entry]:
    if not folder.is_dir():
        raise SourceError(f"source.folder: {folder} is not a directory")
    found: list[Entry] = []
    for path in sorted(folder.rglob("*.safetensors")):
        item_id = path.relative_to(folder).as_posix()

        def make(item_id: str = item_id, path: Path = path) -> LoadableItem:
            return _latent_item(item_id, path, sidecar_prompt(path), None, str(folder), space, sizes)

        found.append((item_id, make))
    if not found:
        raise SourceError(f"source.folder: no .safetensors latents in {folder}")
    return found


def json_lines(path: Path, allowed: set[str], required: str) -> list[tuple[str, dict]]:
    try:
        lines = read_bytes(path, "the file").decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    entries = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{where}: invalid JSON: {exc}") from None
        if not isinstance(entry, dict) or not isinstance(entry.get(required), str):
            raise SourceError(f'{where}: expected an object with a string "{required}"')
        unknown = set(entry) - allowed
        if unknown:
            raise SourceError(f"{where}: unknown keys {sorted(unknown)} "
                              f"(allowed: {', '.join(sorted(allowed))})")
        entries.append((where, entry))
    return entries


def _manifest_latents(manifest: Path, space: LatentSpace, sizes: list[Size]) -> list[Entry]:
    def resolve(name: str) -> Path:
        path = Path(name).expanduser()
        return path if path.is_absolute() else manifest.parent / path

    found: list[Entry] = []
    for where, entry in json_lines(manifest, {"latent", "id", "prompt", "reference"}, "latent"):
        item_id = entry.get("id") or entry["latent"]

        def make(where: str = where, entry: dict[str, Any] = entry, item_id: str = item_id) -> LoadableItem:
            reference = resolve(entry["reference"]) if entry.get("reference") else None
            return _latent_item(item_id, resolve(entry["latent"]), entry.get("prompt"), reference, where,
                                space, sizes)

        found.append((item_id, make))
    if not found:
        raise SourceError(f"source.manifest: {manifest} lists no latents")
    return found


def _synthetic_latents(count: int, space: LatentSpace, sizes: list[Size]) -> list[LoadableItem]:
    found = []
    for size in sizes:
        shape = space.latent_shape(size)
        for index in range(count):
            recipe = json.dumps({"space": space.name, "size": list(size), "index": index,
                                 "distribution": "standard normal"}, sort_keys=True)
            digest = _sha256_bytes(recipe.encode())
            seed = int(digest[:15], 16)

            def load_latent(shape: tuple[int, ...] = shape, seed: int = seed) -> torch.Tensor:
                return torch.randn(shape, generator=torch.Generator().manual_seed(seed))

            item = Item(f"synthetic-{size[0]}x{size[1]}-{index}", digest, None, "synthetic", size)
            found.append(LoadableItem(item, None, load_latent))
    return found


def latent_items(space_name: str, folder: Path | None, manifest: Path | None, synthetic: int | None,
                 sizes: list[Size]) -> list[Entry]:
    """(item id, a function that opens the item's files) per latent: listing opens no file."""
    space = get_space(space_name)
    sizes = [tuple(s) for s in sizes]  # type: ignore[misc]
    if synthetic:
        made = _synthetic_latents(synthetic, space, sizes)
        return [(item.item.id, lambda item=item: item) for item in made]
    found: list[Entry] = []
    if folder is not None:
        found.extend(_folder_latents(folder, space, sizes))
    if manifest is not None:
        found.extend(_manifest_latents(manifest, space, sizes))
    return found


# --------------------------------------------------------------------------- prompts


def _prompt_item(item_id: str, prompt: str, origin: str) -> LoadableItem:
    return LoadableItem(Item(item_id, _sha256_bytes(prompt.encode()), prompt, origin))


def prompt_items(inline: list[str], file: Path | None) -> list[LoadableItem]:
    found = [_prompt_item(f"prompt-{i:04d}", prompt, "inline") for i, prompt in enumerate(inline)]
    if file is None:
        return found
    if file.suffix == ".jsonl":
        for index, (where, entry) in enumerate(json_lines(file, {"prompt", "id"}, "prompt")):
            found.append(_prompt_item(entry.get("id") or f"{file.stem}-{index:04d}", entry["prompt"], where))
        return found
    try:
        lines = [line.strip() for line in read_bytes(file, "the prompts").decode("utf-8").splitlines()]
    except UnicodeDecodeError as exc:
        raise SourceError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for index, prompt in enumerate(line for line in lines if line):
        found.append(_prompt_item(f"{file.stem}-{index:04d}", prompt, str(file)))
    return found
