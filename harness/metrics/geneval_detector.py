"""GenEval's detector and colour classifier through transformers (the built-in `transformers` backend).

Mask2Former Swin-S (COCO instances) and CLIP ViT-L/14, run through GenEval's procedure step by
step; numbers compare only with this backend's (docs/benchmarks.md, GenEval).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from decoders.lazy import F, no_grad, torch
from decoders.plugins import Params
from harness.metrics.base import MetricUnavailable, MetricWeightsMissing
from harness.metrics.geneval import COLORS, Detection

GENEVAL_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "computer mouse", "tv remote",
    "computer keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
# COCO / mmdet / Detectron2 / VOC spellings of GenEval's classes.
ALIASES = {"mouse": "computer mouse", "remote": "tv remote", "keyboard": "computer keyboard",
           "tvmonitor": "tv", "tv monitor": "tv", "television": "tv", "motorbike": "motorcycle",
           "aeroplane": "airplane", "sofa": "couch", "pottedplant": "potted plant",
           "diningtable": "dining table", "hair dryer": "hair drier", "doughnut": "donut"}
COLOUR_TEMPLATES = ("a photo of a {c} {classname}", "a photo of a {c}-colored {classname}",
                    "a photo of a {c} object")
DEFAULT_DETECTOR = "facebook/mask2former-swin-small-coco-instance"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


def geneval_name(label: str) -> str | None:
    """A detector label → GenEval's class name, or None for labels outside the 80 classes."""
    name = " ".join(label.lower().replace("_", " ").replace("-", " ").split())
    name = ALIASES.get(name, name)
    return name if name in GENEVAL_CLASSES else None


def label_map(id2label: dict[int, str]) -> dict[int, str]:
    """Model label id → GenEval class name; every one of the 80 classes must appear exactly once."""
    mapping = {int(i): name for i, label in id2label.items() if (name := geneval_name(label))}
    missing = sorted(set(GENEVAL_CLASSES) - set(mapping.values()))
    twice = sorted({n for n in mapping.values() if list(mapping.values()).count(n) > 1})
    if missing or twice:
        raise MetricUnavailable(f"the detector's labels do not map onto GenEval's 80 classes (missing "
                                f"{missing or 'none'}, twice {twice or 'none'})")
    return mapping


# --------------------------------------------------------------------------- detection


def rescaled_size(height: int, width: int, scale: tuple[int, int] = (1333, 800)) -> tuple[int, int]:
    """mmcv's keep-ratio rescale: fit (long, short) edges; sizes int(side · factor + 0.5)."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def detector_input(image: np.ndarray, scale: tuple[int, int], divisor: int = 32) -> tuple[torch.Tensor,
                                                                                             tuple[int, int]]:
    """uint8 [H, W, 3] → normalised, zero-padded float [1, 3, H', W'] and the resized (h, w)."""
    height, width = rescaled_size(image.shape[0], image.shape[1], scale)
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    pixels = F.interpolate(pixels, size=(height, width), mode="bilinear", align_corners=False)
    pixels = pixels.round().clamp(0, 255)
    mean, std = torch.tensor(IMAGENET_MEAN_255), torch.tensor(IMAGENET_STD_255)
    pixels = (pixels - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    pad_h, pad_w = -height % divisor, -width % divisor
    return F.pad(pixels, (0, pad_w, 0, pad_h)), (height, width)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """[N, H, W] bool → [N, 4] boxes (x0, y0, x_last + 1, y_last + 1); zeros for empty masks."""
    boxes = torch.zeros(masks.shape[0], 4)
    columns, rows = masks.any(dim=1), masks.any(dim=2)
    for index in range(masks.shape[0]):
        xs, ys = torch.where(columns[index])[0], torch.where(rows[index])[0]
        if len(xs) and len(ys):
            boxes[index] = torch.tensor([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], dtype=torch.float32)
    return boxes


def instances(class_logits: torch.Tensor, mask_logits: torch.Tensor, padded: tuple[int, int],
              resized: tuple[int, int], original: tuple[int, int], top: int = 100, floor: float = 0.0
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's (labels, scores, boxes, masks) from [Q, C+1] class and [Q, h, w] mask logits
    of a (padded) detector input in which the image, resized, fills the top-left corner.

    Pairs whose class probability is at most `floor` are dropped before their masks are
    upsampled: their final score (class × mask score < class) cannot exceed the floor.
    """
    num_classes = class_logits.shape[-1] - 1
    probabilities = class_logits.float().softmax(dim=-1)[:, :-1].flatten()
    scores, flat = probabilities.topk(min(top, probabilities.numel()), sorted=False)
    keep = scores > floor
    scores, flat = scores[keep], flat[keep]
    labels, queries = flat % num_classes, flat // num_classes
    if not len(flat):
        return labels, scores, torch.zeros(0, 4), torch.zeros(0, *original, dtype=torch.bool)
    logits = mask_logits[queries].float()[None]
    logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
    logits = logits[..., :resized[0], :resized[1]]
    logits = F.interpolate(logits, size=original, mode="bilinear", align_corners=False)[0]
    masks = logits > 0
    inside = masks.flatten(1).float()
    mask_scores = (logits.sigmoid().flatten(1) * inside).sum(1) / (inside.sum(1) + 1e-6)
    return labels, scores * mask_scores, mask_boxes(masks), masks


# --------------------------------------------------------------------------- colour


def colour_crop(image: Any, detection: Detection, background: str = "#999") -> Any:
    """GenEval's crop: the object's pixels over a plain background (mask), cut to its box."""
    from PIL import Image

    if detection.mask is not None:
        blank = Image.new("RGB", image.size, color=background)
        image = Image.composite(image, blank, Image.fromarray(detection.mask))
    return image.crop(tuple(detection.box))


def clip_pixels(crop: Any, size: int, mean: list[float], std: list[float]) -> torch.Tensor:
    """open_clip's evaluation transform: Resize(size, bicubic) on the short side, CenterCrop(size)."""
    from PIL import Image

    width, height = crop.size
    short, long = sorted((width, height))
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    resized = crop.resize((new_w, new_h), Image.BICUBIC) if (new_w, new_h) != (width, height) else crop
    top, left = round((new_h - size) / 2.0), round((new_w - size) / 2.0)
    array = np.asarray(resized.crop((left, top, left + size, top + size)).convert("RGB"), dtype=np.float32)
    pixels = torch.from_numpy(array / 255.0).permute(2, 0, 1)
    return (pixels - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def unit(features: Any) -> torch.Tensor:
    """transformers ≥ 5 may return a model output from get_*_features; normalise to unit length."""
    tensor = features if isinstance(features, torch.Tensor) else features.pooler_output
    return tensor / tensor.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------- the backend


class TransformersBackendParams(Params):
    detector: str = Field(default=DEFAULT_DETECTOR, description="Mask2Former: HF id or local folder")
    clip: str = Field(default=DEFAULT_CLIP, description="CLIP: HF id or local folder")
    test_scale: tuple[int, int] = Field(default=(1333, 800), description="mmdet's test img_scale")
    background: str = "#999"
    max_detections: int = Field(default=100, ge=1, description="mmdet's max_per_image")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"


class TransformersGenEvalBackend:
    """Mask2Former Swin-S (COCO instances) + CLIP ViT-L/14 colour classification, in transformers."""

    Params: ClassVar = TransformersBackendParams

    def __init__(self, params: TransformersBackendParams | None = None) -> None:
        self.params = params or TransformersBackendParams()
        self.min_score = 0.0  # set by the metric: the lowest threshold any rule uses
        self._weights: dict[str, str] = {}
        self._text: dict[str, torch.Tensor] = {}

    def describe(self) -> dict[str, Any]:
        p = self.params
        return {"detector": p.detector, "clip": p.clip, "test_scale": list(p.test_scale),
                "background": p.background, "max_detections": p.max_detections, "dtype": p.dtype,
                "procedure": "mmdet 2.x Mask2Former test pipeline + GenEval masked crops, open_clip "
                             "preprocessing, clip_benchmark zero-shot colour classifier"}

    def load(self, device: torch.device) -> None:
        from harness.metrics.weights import WeightsMissing, hub_offline, pretrained

        try:
            from transformers import (
                CLIPImageProcessor,
                CLIPModel,
                CLIPTokenizer,
                Mask2FormerForUniversalSegmentation,
            )
        except ImportError:
            raise MetricUnavailable("the GenEval transformers backend needs transformers: pip install "
                                    "'decoderbench[metrics]'") from None
        dtype = getattr(torch, self.params.dtype)
        try:
            detector, detector_sha = pretrained(self.params.detector, "geneval", "GenEval detector")
            clip, clip_sha = pretrained(self.params.clip, "geneval", "GenEval colour classifier")
            with hub_offline():
                self.detector = Mask2FormerForUniversalSegmentation.from_pretrained(
                    detector, local_files_only=True, dtype=dtype).to(device).eval()
                self.clip = CLIPModel.from_pretrained(clip, local_files_only=True, dtype=dtype)
                self.clip = self.clip.to(device).eval()
                self.tokenizer = CLIPTokenizer.from_pretrained(clip, local_files_only=True)
                self.image_processor = CLIPImageProcessor.from_pretrained(clip, local_files_only=True)
        except WeightsMissing as exc:
            raise MetricWeightsMissing(str(exc)) from None
        except OSError as exc:
            raise MetricUnavailable(f"cannot load the GenEval models ({exc}); get them with "
                                    "`decoderbench weights fetch geneval` or name local folders") from None
        self.device, self.dtype = device, dtype
        self.labels = label_map(self.detector.config.id2label)
        self._weights = {**detector_sha, **clip_sha}

    def weights(self) -> dict[str, str]:
        return dict(self._weights)

    @no_grad
    def detect(self, image: np.ndarray) -> dict[str, list[Detection]]:
        pixels, resized = detector_input(image, self.params.test_scale)
        output = self.detector(pixel_values=pixels.to(self.device, self.dtype))
        labels, scores, boxes, masks = instances(
            output.class_queries_logits[0], output.masks_queries_logits[0], tuple(pixels.shape[-2:]),
            resized, image.shape[:2], self.params.max_detections, self.min_score)
        found: dict[str, list[Detection]] = {}
        for label, score, box, mask in zip(labels.tolist(), scores.tolist(), boxes.tolist(), masks.cpu(),
                                           strict=True):
            name = self.labels.get(label)
            if name is not None:
                found.setdefault(name, []).append(Detection(tuple(box), score, mask.numpy()))
        return found

    @no_grad
    def colours(self, image: np.ndarray, objects: list[Detection], classname: str) -> list[str]:
        from PIL import Image

        if not objects:
            return []
        picture = Image.fromarray(image)
        processor = self.image_processor
        crop = processor.crop_size
        size = crop if isinstance(crop, int) else crop["height"]
        pixels = torch.stack([clip_pixels(colour_crop(picture, obj, self.params.background), size,
                                          list(processor.image_mean), list(processor.image_std))
                              for obj in objects])
        features = unit(self.clip.get_image_features(pixel_values=pixels.to(self.device, self.dtype))).float()
        logits = 100.0 * features @ self._classifier(classname)
        return [COLORS[int(i)] for i in logits.argmax(dim=1)]

    def _classifier(self, classname: str) -> torch.Tensor:
        """[D, 10] zero-shot weights: per colour, the normalised mean of normalised template embeddings."""
        if classname not in self._text:
            columns = []
            for colour in COLORS:
                texts = [t.format(c=colour, classname=classname) for t in COLOUR_TEMPLATES]
                tokens = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
                embedding = unit(self.clip.get_text_features(**tokens)).float().mean(dim=0)
                columns.append(embedding / embedding.norm())
            self._text[classname] = torch.stack(columns, dim=1)
        return self._text[classname]
