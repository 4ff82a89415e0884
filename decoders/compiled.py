"""torch.compile for decoders, with its time recorded apart from the decode latency.

`compile = true` (and `compile_mode`, `compile_backend`) on a decoder, or on
one stage of a cascade, compiles the named module(s) in place
(`nn.Module.compile`, state-dict keys unchanged). torch compiles lazily, on
the first call at each input shape: that call is a warm-up call (the worker
warms up every shape before its timed repeats), so compilation never sits
inside a timed region. Suites refuse `compile = true` with `warmup = 0`.

What was compiled is observed, not assumed: torch's compile callbacks
(`torch._dynamo.callback.on_compile_start/end`, which also fire for lazy
Triton autotuning and CUDA-graph recording) are timed per decode call and per
stage, and the decoder's facts say, per stage, what the compile target was,
how many compilations happened there and how long they took, and during
which decode calls (1-based; warm-up calls come first at each shape).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from decoders.plugins import Params

CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


class CompileParams(Params):
    """Mixed into the params of every decoder (or stage) that can be compiled."""

    compile: bool = Field(default=False, description="torch.compile, during warm-up; compile time "
                          "recorded apart in facts.compile")
    compile_mode: CompileMode = Field(default="default", description="torch.compile mode (inductor)")
    compile_backend: str = Field(default="inductor", pattern=r"^[A-Za-z0-9_]+$",
                                 description="torch.compile backend; aot_eager or eager for CPU checks")

    @model_validator(mode="after")
    def _mode_needs_inductor(self) -> CompileParams:
        if self.compile_mode != "default" and self.compile_backend != "inductor":
            raise ValueError(f"compile_mode {self.compile_mode!r} is an inductor mode; the "
                             f"{self.compile_backend!r} backend takes none")
        return self

    def compile_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"backend": self.compile_backend}
        if self.compile_backend == "inductor":
            kwargs["mode"] = self.compile_mode
        return kwargs

    def compile_setting(self) -> dict[str, Any]:
        return {"mode": self.compile_mode, "backend": self.compile_backend}


def requests_compile(params: BaseModel) -> bool:
    """True when these params, or any nested stage params, ask for compilation."""
    if isinstance(params, CompileParams) and params.compile:
        return True
    return any(isinstance(value, BaseModel) and requests_compile(value)
               for value in (getattr(params, name) for name in type(params).model_fields))


class _CompileEvents:
    """Process-wide total of compile wall time, from torch's compile callbacks."""

    def __init__(self) -> None:
        self.total_ms, self.count = 0.0, 0
        self._begin: int | None = None
        self.ensure_registered()

    def ensure_registered(self) -> None:
        """(Re-)register: torch._dynamo.reset() clears every compile callback."""
        from torch._dynamo.callback import callback_handler

        if self._start not in callback_handler.start_callbacks:
            callback_handler.register_start_callback(self._start)
            callback_handler.register_end_callback(self._end)

    def _start(self, *_: Any) -> None:
        self._begin = time.perf_counter_ns()

    def _end(self, *_: Any) -> None:
        if self._begin is not None:
            self.total_ms += (time.perf_counter_ns() - self._begin) / 1e6
            self.count += 1
            self._begin = None

    def reading(self) -> tuple[float, int]:
        return self.total_ms, self.count


_EVENTS: _CompileEvents | None = None


def compile_events() -> _CompileEvents:
    global _EVENTS
    if _EVENTS is None:
        _EVENTS = _CompileEvents()
    _EVENTS.ensure_registered()
    return _EVENTS


@dataclass
class _Stage:
    target: str  # what is compiled in this stage ("" = nothing requested)
    note: str = ""
    compile_ms: float = 0.0
    compilations: int = 0


@dataclass
class CompileRecord:
    """Per-stage record of what compiled, when, and for how long (decoders' facts.compile)."""

    setting: dict[str, Any]
    stages: dict[str, _Stage] = field(default_factory=dict)
    calls: int = 0
    calls_with_compilation: list[int] = field(default_factory=list)
    last_call_compile_ms: float = 0.0

    def __post_init__(self) -> None:
        self._events = compile_events()
        self._call_start: tuple[float, int] = (0.0, 0)
        self._nested: list[list[float]] = []  # per open stage: [ms, count] claimed by inner stages

    def stage_target(self, stage: str, target: str, note: str = "") -> None:
        self.stages[stage] = _Stage(target, note)

    def begin_call(self) -> None:
        self.calls += 1
        self._events = compile_events()
        self._call_start = self._events.reading()

    def end_call(self) -> None:
        total, count = self._events.reading()
        self.last_call_compile_ms = total - self._call_start[0]
        if count > self._call_start[1]:
            self.calls_with_compilation.append(self.calls)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Compilation inside this stage, less what nested stages claim for themselves."""
        before = self._events.reading()
        inner = [0.0, 0]
        self._nested.append(inner)
        try:
            yield
        finally:
            self._nested.pop()
            total, count = self._events.reading()
            spent_ms, spent = total - before[0], count - before[1]
            record = self.stages.setdefault(name, _Stage(""))
            record.compile_ms += spent_ms - inner[0]
            record.compilations += spent - int(inner[1])
            if self._nested:
                self._nested[-1][0] += spent_ms
                self._nested[-1][1] += spent

    @contextmanager
    def call(self, stage: str | None = None) -> Iterator[None]:
        """One decode call; with `stage`, the whole call is that one stage."""
        self.begin_call()
        try:
            if stage is None:
                yield
            else:
                with self.stage(stage):
                    yield
        finally:
            self.end_call()

    def as_fact(self) -> dict[str, Any]:
        return {
            **self.setting,
            "stages": {name: {"target": s.target or "nothing (not requested)", "compiled": s.compilations > 0,
                              "compilations": s.compilations, "compile_ms": round(s.compile_ms, 3),
                              **({"note": s.note} if s.note else {})}
                       for name, s in self.stages.items()},
            "compile_ms": round(sum(s.compile_ms for s in self.stages.values()), 3),
            "decode_calls": self.calls,
            "calls_with_compilation": list(self.calls_with_compilation),
            "last_call_compile_ms": round(self.last_call_compile_ms, 3),
        }


def compile_in_place(module: Any, params: CompileParams) -> None:
    """`nn.Module.compile`: the module's calls go through torch.compile; its state dict is unchanged."""
    module.compile(**params.compile_kwargs())
