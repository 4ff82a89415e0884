"""pyiqa models, created offline from verified local files."""

from __future__ import annotations

import contextlib
import importlib.util
import io
from collections.abc import Iterator
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
    with hub_offline(), contextlib.redirect_stdout(io.StringIO()), transformers_llama_kept():
        model = pyiqa.create_metric(name, device=device, **options)
    return model.eval()


# pyiqa imports every one of its architectures when a network's module is not named after it (TOPIQ's
# CFANet), and its Q-Align module, once imported, replaces transformers' Llama config, attention,
# decoder layer and forwards for the whole process (pyiqa/archs/q_align/modeling_llama2.py). A
# Llama-based VQA model (a LLaVA backend of DPG-Bench) evaluated after a TOPIQ metric in the same
# process would run pyiqa's code: what was replaced is put back.
_KEPT = {"configuration_llama": ("LlamaConfig",),
         "modeling_llama": ("LlamaAttention", "LlamaFlashAttention2", "LlamaSdpaAttention",
                            "LlamaDecoderLayer")}
_KEPT_FORWARDS = ("LlamaModel", "LlamaForCausalLM")  # classes of modeling_llama whose forward is kept


@contextlib.contextmanager
def transformers_llama_kept() -> Iterator[None]:
    """transformers' Llama modules as they were on entry, whatever the body replaced in them."""
    try:
        found = importlib.util.find_spec("transformers") is not None
        if found:
            from transformers.models.llama import configuration_llama, modeling_llama
    except Exception:  # a transformers without Llama, or broken: nothing of it to keep
        found = False
    if not found:
        yield
        return
    modules = {"configuration_llama": configuration_llama, "modeling_llama": modeling_llama}
    saved = {(module, name): vars(modules[module]).get(name)
             for module, names in _KEPT.items() for name in names}
    forwards = {name: vars(getattr(modeling_llama, name)).get("forward") for name in _KEPT_FORWARDS
                if hasattr(modeling_llama, name)}
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            if value is None:
                vars(modules[module]).pop(name, None)
            else:
                setattr(modules[module], name, value)
        for name, forward in forwards.items():
            cls = getattr(modeling_llama, name)
            if forward is None:
                with contextlib.suppress(AttributeError):
                    delattr(cls, "forward")
            else:
                cls.forward = forward


def pyiqa_protocol(name: str, options: dict[str, Any]) -> dict[str, Any]:
    # "not installed": the metric is then unavailable, and its records still name a protocol
    return {"implementation": f"pyiqa {name}", "pyiqa": package_version("pyiqa") or "not installed",
            "pyiqa_options": options, "input_range": "[0, 1]"}
