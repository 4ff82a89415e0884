"""pyiqa models, created offline from verified local files."""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from collections.abc import Iterator
from types import ModuleType
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
_Q_ALIGN = "pyiqa.archs.q_align.modeling_llama2"
_KEPT = {"transformers.models.llama.configuration_llama": ("LlamaConfig",),
         "transformers.models.llama.modeling_llama": ("LlamaAttention", "LlamaFlashAttention2",
                                                      "LlamaSdpaAttention", "LlamaDecoderLayer")}
_KEPT_FORWARDS = ("LlamaModel", "LlamaForCausalLM")  # classes of modeling_llama whose forward is kept
_LAZY_PACKAGES = ("transformers", "transformers.models.llama")  # they cache the classes they hand out


@contextlib.contextmanager
def transformers_llama_kept() -> Iterator[None]:
    """transformers' Llama modules as they were on entry, whatever Q-Align's import in the body replaced.

    Imports nothing: a Llama module loaded before the body is restored from a snapshot of its
    attributes; one first loaded in the body (by Q-Align, which patched it at once) is loaded again."""
    if _Q_ALIGN in sys.modules:  # imported before: its patch ran then (an import runs once)
        yield
        return
    saved = {name: _llama_state(sys.modules[name]) for name in _KEPT if name in sys.modules}
    try:
        yield
    finally:
        if _Q_ALIGN in sys.modules:
            for name in _KEPT:  # the configuration first: the modeling module imports its class
                if name in saved:
                    _restore(sys.modules[name], saved[name])
                elif name in sys.modules:  # a reload keeps names its code does not define again
                    for attribute in _KEPT[name]:
                        vars(sys.modules[name]).pop(attribute, None)
                    importlib.reload(sys.modules[name])
            _refresh_lazy_packages()


def _llama_state(module: ModuleType) -> dict[str, Any]:
    state: dict[str, Any] = {name: vars(module).get(name) for name in _KEPT[module.__name__]}
    for name in _KEPT_FORWARDS:
        if hasattr(module, name):
            state[f"{name}.forward"] = vars(getattr(module, name)).get("forward")
    return state


def _restore(module: ModuleType, state: dict[str, Any]) -> None:
    for key, value in state.items():
        owner, _, attribute = key.rpartition(".")
        target = getattr(module, owner) if owner else module
        if value is not None:
            setattr(target, attribute, value)
        elif attribute in vars(target):
            delattr(target, attribute)


def _refresh_lazy_packages() -> None:
    """A class a lazy package handed out while patched is handed out again from its module."""
    current = {name: vars(sys.modules[module]).get(name) for module, names in _KEPT.items()
               if module in sys.modules for name in (*names, *_KEPT_FORWARDS)}
    for package in (sys.modules.get(name) for name in _LAZY_PACKAGES):
        for name, value in current.items():
            if package is not None and value is not None and name in vars(package):
                setattr(package, name, value)


def pyiqa_protocol(name: str, options: dict[str, Any]) -> dict[str, Any]:
    # "not installed": the metric is then unavailable, and its records still name a protocol
    return {"implementation": f"pyiqa {name}", "pyiqa": package_version("pyiqa") or "not installed",
            "pyiqa_options": options, "input_range": "[0, 1]"}
