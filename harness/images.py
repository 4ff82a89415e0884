"""8-bit image files and tensors: the one place images are converted and written."""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from decoders.lazy import torch
from harness.errors import DecoderbenchError


def to_rgb_array(array: np.ndarray) -> np.ndarray:
    """uint8 HxW, HxWx1, HxWx3 or HxWx4 (alpha over white) → uint8 HxWx3."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        array = np.clip(np.asarray(array, dtype=np.float64) * 255 + 0.5, 0, 255).astype(np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.shape[2] == 1:
        return np.repeat(array, 3, axis=2)
    if array.shape[2] == 4:
        rgb, alpha = array[:, :, :3].astype(np.float64), array[:, :, 3:].astype(np.float64) / 255
        return np.clip(rgb * alpha + 255 * (1 - alpha) + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[:, :, :3])


class ImageFileError(DecoderbenchError, ValueError):
    """An image file that cannot be read; str() is `PATH: what is wrong`."""


def _image_problem(path: Path, exc: Exception) -> ImageFileError:
    if isinstance(exc, Image.DecompressionBombError):
        found = re.search(r"\((\d+) pixels\)", str(exc))
        declared = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        reason = (f"declares {declared}, more than the {2 * Image.MAX_IMAGE_PIXELS:,} decoderbench "
                  "decodes (a decompression bomb, or a mistake)")
    elif path.is_file() and path.stat().st_size == 0:
        reason = "empty file (0 bytes), not an image"
    elif isinstance(exc, UnidentifiedImageError):
        reason = "not an image file (no format PIL reads recognises it)"
    elif isinstance(exc, FileNotFoundError | IsADirectoryError | PermissionError):
        reason = f"cannot read: {exc.strerror}"
    else:
        reason = f"damaged image file ({exc})"
    return ImageFileError(f"{path}: {reason}")


IMAGE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)  # what PIL raises


def check_image(path: Path, data: bytes | None = None) -> str | None:
    """Read an image file's header and check its chunks (PNG CRCs) without decoding the pixels:
    the problem in one line, or None. A damage that only decoding finds shows at run time.
    `data`: the file's bytes where the caller has read them already (not read again)."""
    try:
        with Image.open(path if data is None else io.BytesIO(data)) as image:
            image.verify()
    except IMAGE_ERRORS as exc:
        return str(_image_problem(path, exc))
    return None


def read_rgb(path: Path) -> np.ndarray:
    """uint8 HxWx3; ImageFileError naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("RGB", "L", "RGBA", "LA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            if image.mode == "LA":
                image = image.convert("RGBA")
            return to_rgb_array(np.array(image))
    except IMAGE_ERRORS as exc:
        raise _image_problem(path, exc) from None


def quantize(images: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] floats in [0, 1] → uint8 (round half up, clamped)."""
    return (images.float().clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, H, W] → float32 in [0, 1]."""
    return images.to(torch.float32) / 255


def pixels_sha256(chw_uint8: torch.Tensor | np.ndarray) -> str:
    array = chw_uint8 if isinstance(chw_uint8, np.ndarray) else chw_uint8.cpu().numpy()
    digest = hashlib.sha256(repr((array.shape, str(array.dtype))).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# zlib level of every PNG written, by measurement (`python bench/overhead.py png`, a 2048²
# photo, 2 cores): level 0 encodes in 0.13 s but stores all 12.6 MB; level 1 takes 0.24 s for a
# third of the bytes; 2–3 take 0.26–0.36 s to save 1–2 % more; 6 takes 1.1 s. The encoding runs
# off the critical path on GPU suites, so the bytes on disk decide: level 1.
PNG_COMPRESS_LEVEL = 1


def encode_png(chw_uint8: torch.Tensor | np.ndarray, level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """uint8 [3, H, W] → lossless PNG bytes."""
    array = chw_uint8.cpu().numpy() if isinstance(chw_uint8, torch.Tensor) else chw_uint8
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0))).save(
        buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def write_png(chw_uint8: torch.Tensor | np.ndarray, path: Path, fsync: bool = False) -> None:
    """Write atomically (temp file + rename) so a killed writer leaves no half image; `fsync`
    puts the bytes on disk before the rename (then fsync the folder: `fsync_folder`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("wb") as handle:
            handle.write(encode_png(chw_uint8))
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk keeps no half image taking the space
        raise


def fsync_folder(folder: Path) -> None:
    """Make the renames into `folder` durable."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def read_png(path: Path) -> torch.Tensor:
    """→ uint8 [3, H, W]."""
    return torch.from_numpy(read_rgb(path)).permute(2, 0, 1).contiguous()
