"""Where weights come from, and their sha256.

A weight reference in a suite is one of

- a local path (file or folder; `~` is expanded),
- `hf://OWNER/REPO/PATH/IN/REPO`: one file of a Hugging Face repository,
- `OWNER/REPO`: a diffusers-format repository (optionally with a subfolder),

resolved the way users resolve them (the Hugging Face cache, `from_pretrained`).
With `HF_HUB_OFFLINE` set nothing is downloaded: a missing file fails at once
with `DecoderUnavailable` naming the file and the command that fetches it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from decoders.base import DecoderUnavailable
from decoders.lazy import torch

T = TypeVar("T")
HF_PREFIX = "hf://"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


_CACHE_ONLY: ContextVar[bool] = ContextVar("decoderbench_weights_cache_only", default=False)


def _env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    """Resolve from local files and the Hugging Face cache only (HF_HUB_OFFLINE, or a check)."""
    return _CACHE_ONLY.get() or _env_offline()


@contextmanager
def cache_only() -> Iterator[None]:
    """Weights resolved inside are looked up locally and never downloaded (availability checks)."""
    token = _CACHE_ONLY.set(True)
    try:
        yield
    finally:
        _CACHE_ONLY.reset(token)


def _not_cached() -> str:
    return "is not in the Hugging Face cache" + (" and HF_HUB_OFFLINE is set" if _env_offline() else "")


def is_local(reference: str) -> bool:
    return reference.startswith(("/", ".", "~")) or Path(reference).expanduser().exists()


def split_hf_file(reference: str) -> tuple[str, str]:
    """`hf://owner/repo/path/to/file` → ("owner/repo", "path/to/file")."""
    parts = reference.removeprefix(HF_PREFIX).split("/")
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"{reference!r}: expected hf://OWNER/REPO/PATH/IN/REPO")
    return "/".join(parts[:2]), "/".join(parts[2:])


def resolve_file(reference: str, what: str) -> Path:
    """A local weight file for `reference` (a path or hf://...); DecoderUnavailable if absent."""
    if reference.startswith(HF_PREFIX):
        repo, filename = split_hf_file(reference)
        return _hub_file(repo, filename, what)
    path = Path(reference).expanduser()
    if not path.is_file():
        raise DecoderUnavailable(f"{what}: weight file {path} not found")
    return path


def _hub_file(repo: str, filename: str, what: str) -> Path:
    from huggingface_hub import hf_hub_download

    fetch = f"`hf download {repo} {filename}` (or put the file somewhere and give its path)"
    try:
        return Path(hf_hub_download(repo, filename, local_files_only=hub_offline()))
    except Exception as exc:  # offline miss, gated repo, no network: all mean "not here"
        state = _not_cached() if hub_offline() else f"could not be fetched ({type(exc).__name__})"
        raise DecoderUnavailable(f"{what}: {filename} from {repo} {state}; run {fetch}") from None


def resolve_pretrained(reference: str, subfolder: str | None, what: str) -> tuple[str, str | None]:
    """(path or repo id, subfolder) for diffusers' `from_pretrained`.

    Local folders are used as they are (with `subfolder` when it exists there). A repo id
    that is already in the Hugging Face cache resolves to its local snapshot, so loading
    touches no network; offline, a repo id that is not cached fails here, at once.
    """
    path = Path(reference).expanduser()
    if is_local(reference):
        if subfolder and (path / subfolder / "config.json").is_file():
            return str(path), subfolder
        if (path / "config.json").is_file() or (path / "model_index.json").is_file():
            return str(path), None
        raise DecoderUnavailable(
            f"{what}: {path} holds no diffusers model (no config.json"
            f"{f' in {path / subfolder} or' if subfolder else ' in'} {path})")
    from huggingface_hub import try_to_load_from_cache

    config_name = f"{subfolder}/config.json" if subfolder else "config.json"
    cached = try_to_load_from_cache(reference, config_name)
    if isinstance(cached, str):
        snapshot = Path(cached).parent.parent if subfolder else Path(cached).parent
        return str(snapshot), subfolder
    if hub_offline():
        include = f" --include '{subfolder}/*'" if subfolder else ""
        raise DecoderUnavailable(
            f"{what}: {reference}{f' (subfolder {subfolder})' if subfolder else ''} {_not_cached()}; "
            f"run `hf download {reference}{include}` "
            f"(gated repositories: accept the licence at https://huggingface.co/{reference} first), "
            "or give a local folder")
    return reference, subfolder


def model_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())


def folder_sha256(folder: Path, label: str) -> dict[str, str]:
    """sha256 of every weight file under a model folder, keyed `label/relative/path`."""
    return {f"{label}/{p.relative_to(folder).as_posix()}": file_sha256(p) for p in model_files(folder)}


def file_sha256(path: Path) -> str:
    """sha256 of a file; free for files in the Hugging Face cache (blobs are named by it)."""
    real = path.resolve()
    name = real.name
    if real.parent.name == "blobs" and len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return name
    stat = real.stat()
    return _hash_file(str(real), stat.st_size, stat.st_mtime_ns)


@cache
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def state_dict_sha256(module: torch.nn.Module) -> str:
    """sha256 over names, dtypes, shapes and bytes of every tensor (random-weight models)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def require(module: str, extra: str = "decoders") -> None:
    """Import check with an install hint: DecoderUnavailable when `module` is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise DecoderUnavailable(
            f"the Python package {module!r} is not installed; run `pip install 'decoderbench[{extra}]'`")


def dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """diffusers' `from_pretrained` dtype argument: `dtype` since 0.42, `torch_dtype` before."""
    from importlib.metadata import version

    major, minor = (int(part) for part in version("diffusers").split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (0, 42) else {"torch_dtype": dtype}


def random_recipe(space: str, config: Any, seed: int) -> dict[str, str]:
    """What identifies random weights in place of a weight digest: `random:<space>` → sha256 of the
    (family, config, seed) recipe."""
    recipe = json.dumps({"family": space, "config": config, "seed": seed}, sort_keys=True)
    return {f"random:{space}": hashlib.sha256(recipe.encode()).hexdigest()}


def build_seeded(build: Callable[[], T], seed: int, device: torch.device) -> T:
    """Build a random-weight model *on* `device`, its own initialisation seeded with `seed`.

    `build` runs under `torch.device(device)`, so every parameter is created and initialised
    where the model will live — no CPU initialisation first (the exact FLUX.1 VAE, 84 M
    parameters, takes seconds on a CPU) — with the generator of that device seeded and the
    global random state restored afterwards. Same architecture, same parameter count, same modules'
    own init functions: only where they run changes. Weights are reproducible for one seed,
    device type and torch version; CPU and CUDA generators draw different numbers (decoders
    record the init device and the state-dict sha256).
    """
    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda else None
    with torch.random.fork_rng(devices=[index] if cuda else []):
        torch.manual_seed(seed)
        with torch.device(device):
            return build()

