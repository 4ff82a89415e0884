"""pyiqa models, created offline from verified local files."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from decoders.lazy import torch
from harness.env import package_version


def create_pyiqa_metric(name: str, device: torch.device, **options: object) -> torch.nn.Module:
    """pyiqa.create_metric with its weight cache pinned to the lock table's location.

    pyiqa resolves `$TORCH_HOME/hub/pyiqa` once, at import; pinning it at load time keeps
    `decoderbench weights where` right. Every file is already verified present, and the
    hub is kept offline, so nothing here reaches the network. pyiqa's prints go nowhere.
    """
    import pyiqa
    from pyiqa.utils import download_util

    from harness.metrics.weights import hub_offline, torch_hub_dir

    download_util.DEFAULT_CACHE_DIR = str(torch_hub_dir() / "pyiqa")
    with hub_offline(), contextlib.redirect_stdout(io.StringIO()):
        model = pyiqa.create_metric(name, device=device, **options)
    return model.eval()


def pyiqa_protocol(name: str, options: dict[str, Any]) -> dict[str, Any]:
    # "not installed": the metric is then unavailable, and its records still name a protocol
    return {"implementation": f"pyiqa {name}", "pyiqa": package_version("pyiqa") or "not installed",
            "pyiqa_options": options, "input_range": "[0, 1]"}
