"""Rendered text charts: lines of seeded random text at several font sizes.

Text is where generative decoders invent "confidently incorrect" detail, so
the built-in image set includes a chart. The font is DejaVu Sans as shipped
inside matplotlib (available offline wherever decoderbench is installed).
The strings and their boxes are returned so an OCR metric can score them.
"""

from __future__ import annotations

import importlib.util
import random
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ALPHABET = string.ascii_letters + string.digits
DEFAULT_FONT_SIZES = (8, 10, 12, 14, 16, 20, 24)
# Legibility charts avoid glyphs that an OCR cannot tell apart even on a clean render
# (I/l/1, O/0/o, J/], and upper/lower case pairs that differ only in size), so that
# their character error rate measures what a decoder did to the text, not OCR ambiguity.
LEGIBLE_ALPHABET = "ABCDEFGHKLMNPQRSTUVWXYZ23456789"
LEGIBILITY_FONT_SIZES = (6, 8, 10, 12, 16, 20, 24)


@dataclass(frozen=True)
class TextLine:
    font_px: int
    text: str
    box: tuple[int, int, int, int]  # left, top, right, bottom in chart pixels


def font_path() -> Path:
    """DejaVu Sans inside matplotlib's package data (matplotlib.get_data_path(), found without
    importing matplotlib: validating a suite renders the charts, and should start fast)."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the text chart's font ships with matplotlib: pip install matplotlib")
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"


def render_chart(
    seed: int = 0,
    size: tuple[int, int] = (512, 512),
    font_sizes: tuple[int, ...] = DEFAULT_FONT_SIZES,
    margin: int = 12,
    alphabet: str = ALPHABET,
) -> tuple[np.ndarray, list[TextLine]]:
    """Render a chart; returns uint8 HxWx3 and the lines drawn (two per font size)."""
    rng = random.Random(seed)
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    lines: list[TextLine] = []
    y = margin
    for font_px in font_sizes:
        font = ImageFont.truetype(str(font_path()), font_px)
        for _ in range(2):
            length = max(4, (width - 2 * margin) // int(font_px * 0.75))
            text = "".join(rng.choice(alphabet) for _ in range(length))
            while text and draw.textlength(text, font=font) > width - 2 * margin:
                text = text[:-1]
            box = draw.textbbox((margin, y), text, font=font)
            if box[3] > height - margin:
                return np.asarray(image), lines
            draw.text((margin, y), text, fill="black", font=font)
            lines.append(TextLine(font_px, text, box))
            y = box[3] + max(4, font_px // 2)
    return np.asarray(image), lines


def line_annotations(lines: list[TextLine], size: tuple[int, int]) -> dict[str, object]:
    """Source annotations of a chart (in chart pixels), for the legibility metric."""
    return {"image_size": list(size), "text_lines": [
        {"text": line.text, "font_px": line.font_px, "box": list(line.box)} for line in lines]}
