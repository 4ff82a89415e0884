"""What the judge sees: a stored 8-bit output, resized by the declared policy and PNG-encoded."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image

from decoders.resample import resize
from harness import images

RESIZE_PROTOCOL = {
    "policy": "downscale so that the longer side is at most max_side, aspect ratio kept; never upscale",
    "resampler": "lanczos",
    "encoding": "8-bit PNG",
}


@dataclass(frozen=True)
class JudgeImage:
    png: bytes
    size: tuple[int, int]  # (width, height) as sent

    def pil(self) -> Image.Image:
        with Image.open(io.BytesIO(self.png)) as image:
            return image.convert("RGB")


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    longer = max(width, height)
    if longer <= max_side:
        return width, height
    scale = max_side / longer
    return max(1, round(width * scale)), max(1, round(height * scale))


def load_for_judge(path: Path, max_side: int) -> JudgeImage:
    return _load(path, max_side, path.stat().st_mtime_ns)


@lru_cache(maxsize=32)  # both orders and every criterion of a case reuse its images
def _load(path: Path, max_side: int, mtime_ns: int) -> JudgeImage:  # mtime: a rewritten file is read again
    pixels = images.read_png(path)
    height, width = pixels.shape[-2:]
    size = fit_size(width, height, max_side)
    if size != (width, height):
        pixels = images.quantize(resize(images.to_float(pixels)[None], size, "lanczos")[0])
    return JudgeImage(images.encode_png(pixels), size)
