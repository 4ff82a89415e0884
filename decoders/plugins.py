"""Plug-in machinery shared by every registry (decoders, encoders, metrics).

A registry maps names to classes. Built-ins are "module:Class" strings
imported on first use; third-party packages add names through an entry-point
group in their own distribution's metadata, which every worker process sees
as well. Component parameters are pydantic models in which unknown keys are
errors.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Params(BaseModel):
    """Base for component parameter models: unknown keys are errors."""

    # strict: `steps = true` or `steps = 4.0` is an error, not a silent 1 or 4
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class NoParams(Params):
    pass


# The extra of pyproject.toml that installs a library a component imports lazily.
EXTRAS = {
    "pyiqa": "metrics", "lpips": "metrics", "rapidocr_onnxruntime": "metrics", "transformers": "metrics",
    "scipy": "metrics", "diffusers": "decoders", "accelerate": "decoders", "spandrel": "decoders",
    "huggingface_hub": "decoders", "pyarrow": "parquet", "google": "judge",
}


def unavailable_reason(exc: BaseException) -> str:
    """Why a component cannot load, and what to install: its `unavailable` message."""
    if isinstance(exc, ImportError):
        package = (exc.name or str(exc)).split(".")[0]
        extra = EXTRAS.get(package)
        hint = f"pip install 'decoderbench[{extra}]'" if extra else f"pip install {package}"
        return f"needs the Python package {package!r}, which is missing or broken ({exc}); run `{hint}`"
    return f"cannot load: {type(exc).__name__}: {exc}"


class UnknownName(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "module:attribute"
    origin: str  # "builtin" or the distribution that declared the entry point


@cache
def _entry_points(group: str) -> tuple[EntryPoint, ...]:
    """A group's entry points, read once per process (installed distributions do not change
    while it runs; reading them costs ~10 ms, and a suite's validation asks dozens of times)."""
    return tuple(entry_points(group=group))


class Registry(Generic[T]):
    """A lazily-imported name → class table with entry-point plug-ins."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str]) -> None:
        self.kind, self.group, self._builtins = kind, group, builtins

    def entries(self) -> dict[str, Entry]:
        found = {name: Entry(name, target, "builtin") for name, target in self._builtins.items()}
        for ep in _entry_points(self.group):
            if ep.name in found:
                continue  # built-ins cannot be shadowed by plug-ins
            origin = ep.dist.name if ep.dist is not None else "entry point"
            found[ep.name] = Entry(ep.name, ep.value, origin)
        return dict(sorted(found.items()))

    def names(self) -> list[str]:
        return list(self.entries())

    def get(self, name: str) -> type[T]:
        entries = self.entries()
        if name not in entries:
            raise UnknownName(self.unknown_message(name, list(entries)))
        module_name, _, attribute = entries[name].target.partition(":")
        return getattr(importlib.import_module(module_name), attribute)

    def unknown_message(self, name: str, known: list[str]) -> str:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; known: {', '.join(known)}"
