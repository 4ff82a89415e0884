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
import re
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from decoders.lazy import torch
from harness.store import EnvironmentFailure, errno_text

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
        if not _KEY.fullmatch(key):  # keys are sha256 digests: anything else would name another path
            raise ValueError(f"not a cache key: {key!r}")
        return self.root / "tensors" / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        """The entry's tensors; None on a miss, and for an entry that cannot be read (a torn or
        damaged file is made again, never fed to a decoder)."""
        found = self.entry(key)
        return found[0] if found is not None else None

    def entry(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """(tensors, what was stored with them: e.g. the notes a reference image came with); None
        on a miss or an unreadable entry."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
                meta = json.loads((handle.metadata() or {}).get("meta") or "{}")
        except (SafetensorError, OSError, ValueError):
            return None
        return tensors, meta if isinstance(meta, dict) else {}

    def put(self, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
        """Store atomically. A write the machine refuses (a full disk, a file-size limit, a
        read-only folder) raises EnvironmentFailure in one line, leaving no partial file."""
        from safetensors.torch import save_file  # imports torch: not at module import

        path = self.path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        contiguous = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(contiguous, str(tmp), metadata={"meta": json.dumps(meta, sort_keys=True)})
            os.replace(tmp, path)
        except (SafetensorError, OSError) as exc:
            tmp.unlink(missing_ok=True)
            raise _cache_failure(self.root, tmp.with_name(path.name), exc) from None
        return path


_KEY = re.compile(r"[0-9a-f]{64}")


def _cache_failure(root: Path, path: Path, exc: BaseException) -> EnvironmentFailure:
    """safetensors reports an I/O error as text ('... (os error 28)'): recover the errno."""
    code = exc.errno if isinstance(exc, OSError) else None
    if code is None:
        found = re.search(r"os error (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    return EnvironmentFailure(f"cannot write the cache entry {path} (cache directory {root}): "
                              f"{errno_text(code, None if code else str(exc))}; free space in the cache "
                              "(or give --cache-dir elsewhere), then run again: nothing is lost", code)
