"""Content-addressed tensor cache (safetensors).

Inputs are produced once by the source and stored under the sha256 of
everything that determines them (image bytes hash, encoder id, params and
weights sha256, sizes, sigma, seed, protocol version). Every decoder then
reads the very same bytes. Writes are atomic, so a killed run never leaves
a torn entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from safetensors import safe_open

from decoders.lazy import torch

CACHE_VERSION = 1


def default_cache_dir() -> Path:
    explicit = os.environ.get("DECODERBENCH_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "decoderbench"


def cache_key(kind: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"kind": kind, "version": CACHE_VERSION, **fields}, sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Hash of dtype, shape and the raw bytes: equal hashes mean byte-identical tensors."""
    tensor = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{tensor.dtype}|{list(tensor.shape)}|".encode())
    digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


class TensorCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / "tensors" / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        path = self.path(key)
        if not path.exists():
            return None
        with safe_open(str(path), framework="pt") as handle:
            return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118

    def put(self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
        from safetensors.torch import save_file  # imports torch: not at module import

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        contiguous = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
        save_file(contiguous, str(tmp), metadata={"meta": json.dumps(meta, sort_keys=True)})
        os.replace(tmp, path)
        return path
