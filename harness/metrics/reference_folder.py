"""A folder of images as the reference set of distribution metrics (FID, KID, patch-FID).

Text-to-image runs (a `prompts` source) have no reference images; FID of
generated images is computed against a set of real ones instead, as
text-to-image papers do (e.g. a 4K evaluation set for native-resolution FID
and patch-FID). Each image of the folder becomes a reference exactly as a
source image does (harness/sources/prepare.py REFERENCE_PROTOCOL: centre crop
to the comparison aspect ratio, antialiased Lanczos-3 to the comparison
size, 8-bit); the set is identified by the sha256 of its files and that
protocol, so its features are cached like the run's own references.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch

from decoders.weights import file_sha256
from harness import images
from harness.metrics.base import MetricUnavailable, ReferenceSet
from harness.sources.listing import IMAGE_SUFFIXES
from harness.sources.prepare import REFERENCE_PROTOCOL, make_reference


def reference_images(folder: str) -> list[Path]:
    root = Path(folder).expanduser()
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()) \
        if root.is_dir() else []
    if not paths:
        kinds = ", ".join(sorted(IMAGE_SUFFIXES))
        raise MetricUnavailable(f"reference_folder {root} holds no images ({kinds}); put the real images to "
                                "compare with there")
    return paths


def folder_reference(folder: str, size: tuple[int, int], cache_dir: Path | None) -> ReferenceSet:
    root = Path(folder).expanduser()
    paths = reference_images(folder)
    identity = {"files": [file_sha256(p) for p in paths], "size": list(size), "protocol": REFERENCE_PROTOCOL}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def batches(batch_size: int) -> Iterator[tuple[list[str], torch.Tensor]]:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            yield ([f"{digest[:16]}/{p.relative_to(root).as_posix()}" for p in chunk],
                   torch.stack([make_reference(images.read_rgb(p), size)[0] for p in chunk]))

    return ReferenceSet(size=size, dataset_sha256=digest, count=len(paths), batches=batches,
                        cache_dir=cache_dir)
