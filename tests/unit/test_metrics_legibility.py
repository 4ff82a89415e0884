"""Text legibility: OCR character error rate per font size on rendered charts (rapidocr, offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from harness.metrics.base import ImageContext
from harness.metrics.legibility import LegibilityCER, Tally, levenshtein, line_crops
from harness.sources.listing import BUILTIN_SETS, LEGIBILITY_CHARTS
from harness.sources.prepare import reference_annotations
from harness.sources.textchart import LEGIBLE_ALPHABET, line_annotations, render_chart

pytest.importorskip("rapidocr_onnxruntime")


@pytest.fixture(scope="module")
def metric() -> LegibilityCER:
    loaded = LegibilityCER()
    loaded.load(torch.device("cpu"))
    return loaded


def _chart(seed: int, blur: float = 0.0, sizes: tuple[int, ...] = (8, 12, 16)
           ) -> tuple[torch.Tensor, torch.Tensor, ImageContext]:
    """(pred, reference, context) for a 512² legibility chart, optionally Gaussian-blurred."""
    array, lines = render_chart(seed, font_sizes=sizes, alphabet=LEGIBLE_ALPHABET)
    reference = torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255
    blurred = np.asarray(Image.fromarray(array).filter(ImageFilter.GaussianBlur(blur))) if blur else array
    pred = torch.from_numpy(blurred.copy()).permute(2, 0, 1).float() / 255
    annotations = reference_annotations(line_annotations(lines, (512, 512)), (512, 512))
    context = ImageContext(case_id=f"c{seed}", item_id=f"legibility/seed{seed}", prompt=None, seed=0,
                           seed_group="g", reference_key="r", output_size=(512, 512), native_size=(512, 512),
                           annotations=annotations)
    return pred, reference, context


def test_levenshtein_and_tally() -> None:
    assert levenshtein("KITTEN", "SITTING") == 3
    assert levenshtein("ABC", "") == 3 and levenshtein("", "AB") == 2 and levenshtein("AB", "AB") == 0
    tally = Tally()
    tally.add(6, 3, 10)
    tally.add(16.0, 0, 30)
    tally.add(6.0, 1, 10)
    assert tally.by_font() == {"6": 0.2, "16": 0.0} and tally.cer() == pytest.approx(4 / 50)


@pytest.mark.e2e
def test_cer_is_zero_at_16_px_on_clean_renders_and_grows_with_blur(metric: LegibilityCER) -> None:
    by_blur = {}
    for blur in (0.0, 1.5):
        metric.reset()
        pred, reference, context = _chart(0, blur)
        metric.update([context.case_id], pred[None], reference[None], [context])
        by_blur[blur] = metric.compute()
    clean, blurred = by_blur[0.0], by_blur[1.5]
    assert clean.aggregate_details["cer_by_font_px"]["16"] == 0.0
    assert clean.aggregate_details["cer_by_font_px"]["12"] == 0.0
    # The reference is the clean render: its OCR floor equals the clean CER.
    assert clean.aggregate_details["reference_cer_by_font_px"] == clean.aggregate_details["cer_by_font_px"]
    assert blurred.aggregate_details["reference_cer_by_font_px"] == clean.aggregate_details["cer_by_font_px"]
    assert blurred.aggregate > clean.aggregate + 0.05
    assert blurred.aggregate_details["cer_by_font_px"]["8"] > 0.2
    assert blurred.per_key["c0"] == blurred.aggregate  # one image: pooled over its lines
    assert set(blurred.details["c0"]["cer_by_font_px"]) == {"8", "12", "16"}
    assert clean.aggregate_details["characters_by_font_px"]["16"] > 50


def test_images_without_text_are_not_applicable(metric: LegibilityCER) -> None:
    metric.reset()
    context = ImageContext(case_id="p", item_id="photo", prompt=None, seed=0, seed_group="g",
                           reference_key="r", output_size=(64, 64), native_size=None)
    image = torch.rand(1, 3, 64, 64)
    metric.update(["p"], image, image, [context])
    values = metric.compute()
    assert values.per_key == {} and values.aggregate is None
    assert "no annotated text" in values.not_applicable["p"]


def test_annotations_follow_the_reference_crop_and_scale() -> None:
    charts = BUILTIN_SETS["legibility"]()
    assert [c.item.id for c in charts] == [f"legibility/seed{i}" for i in range(LEGIBILITY_CHARTS)]
    chart = charts[0]
    lines = chart.annotations["text_lines"]
    half = reference_annotations(chart.annotations, (256, 256))["text_lines"]
    assert [line["font_px"] for line in half] == [line["font_px"] / 2 for line in lines]
    assert half[3]["box"] == [v / 2 for v in lines[3]["box"]] and half[3]["text"] == lines[3]["text"]
    # A 2:1 comparison size centre-crops the square chart: lines cut by the crop are dropped.
    wide = reference_annotations(chart.annotations, (512, 256))["text_lines"]
    assert 0 < len(wide) < len(lines) and all(line["box"][1] >= 0 and line["box"][3] <= 256 for line in wide)
    crops = line_crops(chart.load(), lines[:2], pad=0.5)
    assert crops[0].shape[0] > lines[0]["box"][3] - lines[0]["box"][1]


def test_crops_from_the_tensor_are_the_bytes_of_the_whole_image_in_bgr() -> None:
    """The metric quantizes only the line crops; they equal the crops of the whole quantized image
    flipped to BGR (what rapidocr reads), for floats and for uint8 alike."""
    from harness.images import quantize
    from harness.metrics.legibility import bgr_line_crops

    array, lines = render_chart(3, font_sizes=(8, 16), alphabet=LEGIBLE_ALPHABET)
    lines = line_annotations(lines, (512, 512))["text_lines"]
    image = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255)
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(0)) * 0.05
    image = (image + noise).clamp(-0.1, 1.1)  # out-of-range values too: quantize clamps them
    whole = np.ascontiguousarray(quantize(image).permute(1, 2, 0).numpy()[..., ::-1])
    expected = line_crops(whole, lines, pad=0.5)
    for source in (image, quantize(image)):
        crops = bgr_line_crops(source, lines, pad=0.5)
        assert len(crops) == len(expected) == len(lines)
        for crop, wanted in zip(crops, expected, strict=True):
            assert crop.flags.c_contiguous and np.array_equal(crop, wanted)
