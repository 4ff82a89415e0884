"""Environment fingerprint of the runner process.

Collected without initialising CUDA (the runner must not hold GPU memory
while workers measure): GPU facts come from nvidia-smi here and from
torch inside each worker (see the "load" records).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from decoders.lazy import torch
from harness.hardware.cuda import nvidia_smi_gpus

PACKAGES = (
    "decoderbench", "torch", "torchvision", "numpy", "pillow", "torchmetrics", "scikit-image",
    "safetensors", "pydantic", "diffusers", "transformers", "accelerate", "pyiqa", "lpips",
    "spandrel", "rapidocr-onnxruntime", "google-genai", "open-clip-torch",
)
ENV_VARS = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "HF_HUB_OFFLINE",
            "PYTORCH_CUDA_ALLOC_CONF", "CUBLAS_WORKSPACE_CONFIG")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str | None:
    """An installed distribution's version; None where it is not installed."""
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _packages() -> dict[str, str]:
    return {name: found for name in PACKAGES if (found := package_version(name)) is not None}


def git_revision() -> dict[str, Any] | None:
    """The project's git commit when running from a checkout."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"],
                               capture_output=True, text=True, timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"sha": sha, "dirty": bool(dirty.strip())}


def fingerprint() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpus": nvidia_smi_gpus(),
        "packages": _packages(),
        "env": {name: os.environ[name] for name in ENV_VARS if name in os.environ},
        "git": git_revision(),
    }
