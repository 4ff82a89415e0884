"""torch, imported on first use.

The command line's verbs that touch no tensor (`--help`, `list`, `validate`, `show`, `export`,
`weights`) import the decoder and metric modules for their declarations (specs, parameter
models, directions) and must start in well under a second; importing torch takes seconds. A
module that needs torch only inside its functions writes

    from decoders.lazy import torch            # instead of `import torch`
    from decoders.lazy import F, nn             # torch.nn.functional, torch.nn

and torch is imported the first time one of its attributes is read (the module's own dict is
then copied in, so later reads cost what a plain module's do). Anything evaluated at import
time still imports it: a class deriving from `nn.Module` belongs in a module imported inside
`load()`, and `@no_grad` below replaces the `@torch.no_grad()` decorator. tests/e2e/test_startup.py
names the module that breaks this.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

T = TypeVar("T", bound=Callable[..., Any])
_INTROSPECTION = frozenset({"__wrapped__", "__path__", "__file__", "__signature__"})


class LazyModule(ModuleType):
    """A stand-in for a module that imports it when an attribute is first read."""

    def __getattr__(self, name: str) -> Any:
        if name in _INTROSPECTION:
            raise AttributeError(name)  # inspect.unwrap and friends must not import torch
        module = importlib.import_module(self.__name__)
        self.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
        return getattr(module, name)


torch: Any = LazyModule("torch")
nn: Any = LazyModule("torch.nn")
F: Any = LazyModule("torch.nn.functional")


def no_grad(function: T) -> T:
    """`@torch.no_grad()` without importing torch when the decorated function is defined."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
