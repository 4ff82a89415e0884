"""Preparing what every decoder is fed: for each case its reference image and its latent.

- `images`: the reference is the image centre-cropped to the comparison aspect ratio and resized
  to the comparison size (antialiased Lanczos-3, 8-bit); the input image is the reference
  area-downsampled to the input size; the latent is the input through the suite's encoder,
  noised to the case's sigma with a generator seeded by the case's input seed (never the decoder
  seed: cases that differ only in it get byte-identical latents).
- `latents`: the latents users bring, noised the same way; a reference only where named.
- `prompts`: each prompt and input seed through the text-to-image pipeline (run to the end or
  stopped early, x_t captured); no reference.

Everything goes to the content-addressed cache, keyed by what determines it; learned encoders and
pipelines run once per miss in a spawned source worker (harness.sources.worker). More in
docs/suites.md (sources).
"""

from __future__ import annotations

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
from harness.cases import Case
from harness.sources.cache import TensorCache, cache_key, tensor_sha256
from harness.sources.items import (
    LoadableItem,
    SourceError,
)
from harness.suite import Suite

REFERENCE_PROTOCOL = {
    "crop": "centre crop to the comparison aspect ratio",
    "resize": "lanczos3 antialiased, float, to the comparison size",
    "quantize": "8-bit, round half up",
    "input": "area downsampling of the 8-bit reference, float",
    "version": 1,
}


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
