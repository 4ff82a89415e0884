"""The built-in GenEval backend (Mask2Former + CLIP through transformers) on tiny random models.

The procedure is GenEval's (djghosh13/geneval @ af4902f evaluation/evaluate_images.py) on mmdet
2.x's Mask2Former test pipeline (configs/mask2former: img_scale (1333, 800), keep_ratio, Normalize
ImageNet 0–255, Pad size_divisor 32; MaskFormerFusionHead.instance_postprocess: top-100 softmax
scores without the no-object column, mask logit > 0, score × mean sigmoid in the mask, mask2bbox),
ImageCrops (composite over #999, crop to the box) and open_clip's eval transform, checked here
against torchvision's transforms.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED
from PIL import Image

from harness.metrics.base import ImageContext, MetricUnavailable
from harness.metrics.geneval import COLORS, Detection, GenEval
from harness.metrics.geneval_detector import (
    GENEVAL_CLASSES,
    TransformersBackendParams,
    TransformersGenEvalBackend,
    clip_pixels,
    colour_crop,
    detector_input,
    instances,
    label_map,
    mask_boxes,
    rescaled_size,
)

pytest.importorskip("transformers")
MMDET_NAMES = [  # the 80 names of mmdet's CocoDataset.CLASSES (the HF checkpoint's id2label)
    *GENEVAL_CLASSES[:64], "mouse", "remote", "keyboard", *GENEVAL_CLASSES[67:]]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny_models import tiny_clip, tiny_mask2former

    root = tmp_path_factory.mktemp("geneval-models")
    return {"detector": tiny_mask2former(root / "m2f", MMDET_NAMES), "clip": tiny_clip(root / "clip")}


@pytest.fixture(scope="module")
def backend(models: dict[str, Path]) -> TransformersGenEvalBackend:
    loaded = TransformersGenEvalBackend(TransformersBackendParams(detector=str(models["detector"]),
                                                                  clip=str(models["clip"])))
    loaded.load(torch.device("cpu"))
    return loaded


# --------------------------------------------------------------------------- labels


def test_labels_map_onto_genevals_80_class_names() -> None:
    mapping = label_map(dict(enumerate(MMDET_NAMES)))
    assert len(mapping) == 80 and mapping[64] == "computer mouse" and mapping[65] == "tv remote"
    assert mapping[66] == "computer keyboard" and mapping[0] == "person" and mapping[79] == "toothbrush"
    # By name, not by position: a shuffled head (and extra stuff classes) maps the same.
    shuffled = {i: name for i, name in enumerate([*reversed(MMDET_NAMES), "sky", "grass"])}
    assert {v: k for k, v in label_map(shuffled).items()}["computer mouse"] == 79 - 64
    with pytest.raises(MetricUnavailable, match=r"missing \['toothbrush'\]"):
        label_map(dict(enumerate(MMDET_NAMES[:-1])))
    with pytest.raises(MetricUnavailable, match=r"twice \['tv'\]"):
        label_map(dict(enumerate([*MMDET_NAMES, "tvmonitor"])))


@pytest.mark.skipif(not (SHARED / "benchmarks/geneval/object_names.txt").exists(),
                    reason="GenEval object names not available")
def test_the_class_names_are_genevals_object_names() -> None:
    import json

    names = (SHARED / "benchmarks/geneval/object_names.txt").read_text().split("\n")
    assert tuple(n.strip() for n in names if n.strip()) == GENEVAL_CLASSES
    lines = (SHARED / "benchmarks/geneval/evaluation_metadata.jsonl").read_text().splitlines()
    used = {c["class"] for line in lines for key in ("include", "exclude")
            for c in json.loads(line).get(key, [])}
    assert used <= set(GENEVAL_CLASSES) and len(used) == 80


# --------------------------------------------------------------------------- detection


def test_rescale_and_padding_follow_mmdets_test_pipeline() -> None:
    assert rescaled_size(512, 512) == (800, 800) and rescaled_size(1024, 1024) == (800, 800)
    assert rescaled_size(480, 640) == (800, 1067)  # ×5/3: 1066.67 → int(+0.5)
    assert rescaled_size(300, 2000) == (200, 1333)  # the long edge binds: ×0.6665
    image = np.full((480, 640, 3), (200, 100, 50), dtype=np.uint8)
    pixels, resized = detector_input(image, (1333, 800))
    assert resized == (800, 1067) and pixels.shape == (1, 3, 800, 1088)  # 1067 → next multiple of 32
    inside = pixels[0, :, :800, :1067].mean(dim=(1, 2))
    expected = [(200 - 123.675) / 58.395, (100 - 116.28) / 57.12, (50 - 103.53) / 57.375]
    assert inside.tolist() == pytest.approx(expected, abs=1e-5)
    assert pixels[0, :, :, 1067:].abs().max() == 0  # padded with zeros after normalising
    ramp = np.repeat(np.arange(64, dtype=np.uint8)[None, :, None], 64, axis=0).repeat(3, axis=2)
    values = detector_input(ramp, (1333, 800))[0][0, 0] * 58.395 + 123.675
    assert torch.allclose(values, values.round(), atol=1e-3)  # 8-bit values, as cv2 on uint8


def test_instances_as_maskformer_fusion_head_by_hand() -> None:
    probabilities = torch.tensor([[0.6, 0.3, 0.05, 0.05],  # query 0: class 0
                                  [0.1, 0.1, 0.7, 0.1],  # query 1: class 2
                                  [0.2, 0.2, 0.2, 0.4]])
    masks = torch.stack([torch.full((2, 2), 5.0),  # everywhere
                         torch.tensor([[4.0, -4.0], [4.0, -4.0]]),  # the left half
                         torch.full((2, 2), -5.0)])  # nowhere
    labels, scores, boxes, binary = instances(probabilities.log(), masks, (8, 8), (8, 8), (8, 8), top=3)
    # Top 3 of the 9 (query, class) probabilities: 0.7 (q1, c2), 0.6 (q0, c0), 0.3 (q0, c1).
    order = scores.argsort(descending=True).tolist()
    assert labels[order].tolist() in ([2, 0, 1], [0, 2, 1])
    by_label = {int(label): i for i, label in enumerate(labels)}
    # Query 1's mask: bilinear 2 → 8 columns gives 4, 4, 3, 1, −1, −3, −4, −4: columns 0–3.
    q1 = by_label[2]
    assert binary[q1].sum() == 32 and boxes[q1].tolist() == [0.0, 0.0, 4.0, 8.0]
    mean_sigmoid = (2 * torch.sigmoid(torch.tensor(4.0)) + torch.sigmoid(torch.tensor(3.0))
                    + torch.sigmoid(torch.tensor(1.0))) / 4
    assert float(scores[q1]) == pytest.approx(0.7 * float(mean_sigmoid), rel=1e-5)
    q0 = by_label[0]
    assert boxes[q0].tolist() == [0.0, 0.0, 8.0, 8.0]
    assert float(scores[q0]) == pytest.approx(0.6 * 1 / (1 + math.exp(-5)), rel=1e-5)
    assert float(scores[by_label[1]]) == pytest.approx(0.3 * 1 / (1 + math.exp(-5)), rel=1e-5)
    # A floor drops pairs that cannot pass it (score < class probability) before upsampling.
    labels, scores, *_ = instances(probabilities.log(), masks, (8, 8), (8, 8), (8, 8), top=3, floor=0.3)
    assert sorted(labels.tolist()) == [0, 2]
    labels, scores, boxes, binary = instances(probabilities.log(), masks, (8, 8), (8, 8), (6, 5), floor=0.9)
    assert (len(labels), len(scores), boxes.shape, binary.shape) == (0, 0, (0, 4), (0, 6, 5))


def test_masks_go_through_padding_crop_and_resize() -> None:
    # Padded 8 × 8 input holding a 8 × 4 resized image; the image itself is 16 × 8.
    logits = torch.tensor([[[3.0, -3.0], [3.0, -3.0]]])  # positive on the left half of the padded input
    _, _, boxes, masks = instances(torch.tensor([[2.0, -9.0]]), logits, (8, 8), (8, 4), (16, 8), top=1)
    # Padded columns 0–3 (the whole resized image) are positive, so the whole image is.
    assert masks.shape == (1, 16, 8) and bool(masks.all()) and boxes[0].tolist() == [0.0, 0.0, 8.0, 16.0]
    assert mask_boxes(torch.zeros(1, 4, 4, dtype=torch.bool)).tolist() == [[0.0, 0.0, 0.0, 0.0]]


@pytest.mark.e2e
def test_detect_returns_genevals_classes_with_masks_and_boxes(backend: TransformersGenEvalBackend) -> None:
    image = (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8)
    backend.min_score = 0.0
    found = backend.detect(image)
    assert found and set(found) <= set(GENEVAL_CLASSES)
    detections = [d for ds in found.values() for d in ds]
    assert len(detections) <= 12 * 80 and all(d.mask.shape == (96, 128) for d in detections)
    for detection in detections[:5]:
        expected = mask_boxes(torch.from_numpy(detection.mask)[None])[0].tolist()
        assert list(detection.box) == expected
    floor = sorted(d.score for d in detections)[len(detections) // 2]
    backend.min_score = floor
    pruned = backend.detect(image)
    above = {(name, d.box, round(d.score, 6)) for name, ds in found.items() for d in ds if d.score > floor}
    kept = {(name, d.box, round(d.score, 6)) for name, ds in pruned.items() for d in ds if d.score > floor}
    assert kept == above
    backend.min_score = 0.0


# --------------------------------------------------------------------------- colour


def test_colour_crops_are_genevals_masked_crops() -> None:
    pixels = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) * 5
    mask = np.zeros((4, 4), dtype=bool)
    mask[1, 1] = mask[2, 2] = True
    crop = np.asarray(colour_crop(Image.fromarray(pixels), Detection((1.0, 1.0, 3.0, 3.0), 0.9, mask)))
    assert crop.shape == (2, 2, 3)
    assert crop[0, 0].tolist() == pixels[1, 1].tolist() and crop[1, 1].tolist() == pixels[2, 2].tolist()
    assert crop[0, 1].tolist() == [153, 153, 153] and crop[1, 0].tolist() == [153, 153, 153]  # #999
    whole = np.asarray(colour_crop(Image.fromarray(pixels), Detection((0.0, 1.0, 2.0, 4.0), 0.9, None)))
    assert (whole == pixels[1:4, 0:2]).all()  # no mask: the image itself, cropped


@pytest.mark.parametrize("size", [(37, 91), (300, 200), (224, 224), (225, 500), (5, 3)])
def test_clip_preprocessing_equals_open_clips_transform(size: tuple[int, int]) -> None:
    from torchvision import transforms

    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    reference = transforms.Compose([
        transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(224), transforms.ToTensor(), transforms.Normalize(mean, std)])
    array = (np.random.default_rng(sum(size)).random((size[1], size[0], 3)) * 255).astype(np.uint8)
    crop = Image.fromarray(array)
    assert torch.allclose(clip_pixels(crop, 224, mean, std), reference(crop), atol=1e-6)


@pytest.mark.e2e
def test_colours_are_clip_zero_shot_over_genevals_prompts(backend: TransformersGenEvalBackend) -> None:
    image = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)
    objects = [Detection((0.0, 0.0, 32.0, 32.0), 0.9, None), Detection((10.0, 20.0, 60.0, 64.0), 0.8, None)]
    colours = backend.colours(image, objects, "wine glass")
    assert len(colours) == 2 and set(colours) <= set(COLORS)
    clip, tokenizer = backend.clip, backend.tokenizer
    with torch.no_grad():
        columns = []
        for colour in COLORS:
            texts = [f"a photo of a {colour} wine glass", f"a photo of a {colour}-colored wine glass",
                     f"a photo of a {colour} object"]
            tokens = tokenizer(texts, padding=True, return_tensors="pt")
            features = clip.get_text_features(**tokens).pooler_output
            mean = torch.nn.functional.normalize(features, dim=-1).mean(dim=0)
            columns.append(mean / mean.norm())
        processor = backend.image_processor
        pixels = torch.stack([clip_pixels(colour_crop(Image.fromarray(image), o), 224, processor.image_mean,
                                          processor.image_std) for o in objects])
        features = clip.get_image_features(pixel_values=pixels).pooler_output
        features = torch.nn.functional.normalize(features, dim=-1)
    expected = [COLORS[int(i)] for i in (100 * features @ torch.stack(columns, dim=1)).argmax(dim=1)]
    assert colours == expected


# --------------------------------------------------------------------------- through the metric


@pytest.mark.e2e
def test_the_metric_runs_the_backend_on_benchmark_cases(models: dict[str, Path]) -> None:
    options = {"detector": str(models["detector"]), "clip": str(models["clip"])}
    metric = GenEval(GenEval.Params(backend="transformers", backend_options=options))
    metric.load(torch.device("cpu"))
    assert metric.backend.min_score == 0.3  # the lower of the two thresholds
    entry = {"tag": "single_object", "include": [{"class": "computer mouse", "count": 1}], "prompt": "p"}
    context = ImageContext("k", "geneval/00000", "p", 0, "g", "r", (64, 64), (64, 64),
                           annotations={"benchmark": {"name": "geneval", "index": 0, "metadata": entry}})
    metric.update(["k"], torch.rand(1, 3, 64, 64), None, [context])
    values = metric.compute()
    # Random weights detect nothing above 0.3.
    assert values.per_key == {"k": 0.0} and values.details["k"]["reasons"] == ["expected computer mouse>=1, "
                                                                                 "found 0"]
    assert values.aggregate == 0.0 and values.aggregate_details["backend"] == "transformers"
    protocol = metric.protocol()
    assert protocol["backend"]["name"] == "transformers" and protocol["backend"]["test_scale"] == [1333, 800]
    assert any(key.startswith(str(models["detector"])) for key in protocol["weights_sha256"])


def test_missing_default_weights_say_what_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    began = time.perf_counter()
    with pytest.raises(MetricUnavailable) as info:
        GenEval(GenEval.Params()).load(torch.device("cpu"))
    assert time.perf_counter() - began < 5
    message = str(info.value)
    assert "missing weight file config.json" in message and "decoderbench weights fetch geneval" in message
    assert "facebook/mask2former-swin-small-coco-instance" in message
