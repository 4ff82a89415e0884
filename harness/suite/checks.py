"""Checks beyond the schema: names in the registries, their params, sizes they accept, repeats."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from decoders.base import Consumes
from decoders.compiled import requests_compile
from decoders.plugins import NoParams, Registry, UnknownName
from decoders.plugins import Params as ComponentParams
from decoders.registry import DECODERS, ENCODERS
from decoders.spaces import SPACES, get_space
from decoders.t2i import FAMILIES
from harness.metrics import METRICS
from harness.suite.messages import Loc, Locator, Problem, error_message, format_loc
from harness.suite.schema import SuiteModel


def _requested_sizes(spec: Any, model: SuiteModel) -> list[tuple[float, float]]:
    """The output sizes a decoder will be asked for: its native scale's, else the comparison size."""
    return [output if spec.native_scale is None else (w * spec.native_scale, h * spec.native_scale)
            for (w, h), output in model.resolution.pairs()]


def duplicate_problems(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """A value listed twice would make the same case twice: name the key, the index and the first."""
    lists: list[tuple[Loc, Any]] = [((key,), raw.get(key)) for key in ("seeds", "input_seeds", "sigmas")]
    source, resolution = raw.get("source"), raw.get("resolution")
    if isinstance(source, dict):
        lists.append((("source", "builtin"), source.get("builtin")))
    if isinstance(resolution, dict):
        inputs, outputs = _raw_sizes(resolution.get("input")), _raw_sizes(resolution.get("output"))
        if inputs is not None and outputs is not None and len(outputs) == len(inputs):
            inputs = list(zip(inputs, outputs, strict=True))  # a size may repeat with another output
        lists.append((("resolution", "input"), inputs))
    problems: list[tuple[Loc, str]] = []
    for loc, values in lists:
        seen: dict[Any, int] = {}
        for index, value in enumerate(values if isinstance(values, list) else []):
            key = (type(value) is bool, value) if isinstance(value, int | float | str | tuple) else None
            if key is None:
                continue
            if key in seen:
                first = format_loc((*loc, seen[key]))
                problems.append(((*loc, index), f"{_shown(value)} is listed twice (first as {first}); "
                                 "a repeated value would make the same cases twice"))
            else:
                seen[key] = index
    return problems


def _raw_sizes(value: Any) -> list[Any] | None:
    """resolution.input / output as written, one entry per size (as Resolution reads them)."""
    def size(v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return (v, v)
        return tuple(v) if isinstance(v, list) and all(isinstance(x, int) for x in v) else None

    if isinstance(value, int) or (isinstance(value, list) and len(value) == 2 and
                                  all(isinstance(v, int) for v in value)):
        return [size(value)]
    return [size(v) for v in value] if isinstance(value, list) else None


class ComponentChecks:
    """Look up named components in their registries and validate their params."""

    def __init__(self, where: Locator, problems: list[Problem]) -> None:
        self.where, self.problems = where, problems

    def _report(self, loc: Loc, message: str) -> None:
        self.problems.append(self.where.problem(loc, message))

    def _lookup(self, registry: Registry, name: Any, loc: Loc) -> type | None:
        if not isinstance(name, str):
            return None  # the schema check reports it
        try:
            return registry.get(name)
        except UnknownName as exc:
            self._report((*loc, "name"), str(exc))
        except Exception as exc:  # a plug-in that fails to import is a suite problem too
            self._report((*loc, "name"), f"cannot import {name!r}: {exc}")
        return None

    def _params(self, cls: type, params: Any, loc: Loc) -> ComponentParams | None:
        if not isinstance(params, dict):
            return None  # the schema check reports it
        try:
            return cls.Params.model_validate(params)
        except ValidationError as exc:
            fields = list(cls.Params.model_fields)
            for e in exc.errors():
                message = error_message(e, fields)
                if not fields:
                    component = getattr(getattr(cls, "spec", cls), "name", loc[0])
                    message = f"unknown key {e['loc'][-1]!r} ({component!r} takes no parameters)"
                self._report((*loc, "params", *e["loc"]), message)
        return None

    def source(self, raw: dict[str, Any], model: SuiteModel | None
               ) -> tuple[ComponentParams | None, str | None]:
        """(encoder params, latent space the source produces, None if it produces no latents)."""
        source = raw.get("source") if isinstance(raw.get("source"), dict) else {}
        kind = source.get("kind")
        if kind == "images":
            encoder_params, space = self._encoder(source)
        elif kind == "latents":
            encoder_params, space = NoParams(), source.get("space") if source.get("space") in SPACES else None
        elif kind == "prompts":
            pipeline = source.get("pipeline")
            family = FAMILIES.get(pipeline.get("family")) if isinstance(pipeline, dict) else None
            encoder_params, space = NoParams(), family.space if family else None
        else:
            return NoParams(), None
        self._check_factor(model, space)
        return encoder_params, space

    def _encoder(self, source: dict[str, Any]) -> tuple[ComponentParams | None, str | None]:
        entry = source.get("encoder", "pixels")
        entry = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict):
            return None, None
        loc: Loc = ("source", "encoder")
        cls = self._lookup(ENCODERS, entry.get("name"), loc)
        if cls is None:
            return None, None
        params = self._params(cls, entry.get("params", {}), loc)
        return params, cls.spec_for(params).latent_space if params is not None else None

    def _check_factor(self, model: SuiteModel | None, space: str | None) -> None:
        if space is None or model is None:
            return
        for i, size in enumerate(model.resolution.input):
            try:
                get_space(space).latent_shape(size)
            except ValueError as exc:
                self._report(("resolution", "input", i), str(exc))

    def decoders(self, raw: dict[str, Any], space: str | None,
                 model: SuiteModel | None = None) -> dict[str, ComponentParams]:
        params: dict[str, ComponentParams] = {}
        entries = raw.get("decoder")
        source = raw.get("source") if isinstance(raw.get("source"), dict) else {}
        seen: set[str] = set()
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict):
                continue
            loc: Loc = ("decoder", i)
            decoder_id = entry.get("label") or entry.get("name")
            if isinstance(decoder_id, str) and decoder_id in seen:
                self._report((*loc, "label"),
                             f"decoder id {decoder_id!r} is used twice; give each row a unique label")
            seen.add(str(decoder_id))
            cls = self._lookup(DECODERS, entry.get("name"), loc)
            if cls is None:
                continue
            validated = self._params(cls, entry.get("params", {}), loc)
            spec = cls.spec_for(validated) if validated is not None else cls.spec
            if spec.consumes == Consumes.LATENT:
                self._check_space(loc, spec, space, source)
            self._check_multiple(loc, spec, model)
            if validated is not None:
                self._check_decoder_params(loc, cls, spec, validated, model)
            if validated is not None and isinstance(decoder_id, str):
                params[decoder_id] = validated
        return params

    def _check_multiple(self, loc: Loc, spec: Any, model: SuiteModel | None) -> None:
        """Output sides the decoder will be asked for must be multiples it accepts."""
        if model is None or spec.size_multiple == 1:
            return
        for size in _requested_sizes(spec, model):
            if size[0] % spec.size_multiple or size[1] % spec.size_multiple:
                self._report((*loc, "name"), f"decoder {spec.name!r} makes sides in multiples of "
                             f"{spec.size_multiple}, not {size[0]:g}x{size[1]:g}")
                return

    def _check_decoder_params(self, loc: Loc, cls: Any, spec: Any, params: ComponentParams,
                              model: SuiteModel | None) -> None:
        """The decoder's own size rules, and compilation only where there is a warm-up to hold it."""
        if model is None:
            return
        if requests_compile(params) and model.timing.warmup == 0:
            self._report((*loc, "params", "compile"), "compile = true needs timing.warmup >= 1: "
                         "compilation happens in the warm-up calls, never in timed ones")
        for size in _requested_sizes(spec, model):
            problem = cls.size_problem(params, (int(size[0]), int(size[1])))
            if problem is not None:
                self._report((*loc, "name"), problem)
                return

    def _check_space(self, loc: Loc, spec: Any, space: str | None, source: dict[str, Any]) -> None:
        if source.get("kind") == "prompts" and source.get("pipeline") is None:
            self._report((*loc, "name"), f"decoder {spec.name!r} consumes latents, but the prompts "
                         "source has no pipeline to make them (add [source.pipeline])")
        elif space is not None and space not in spec.latent_spaces:
            self._report((*loc, "name"), f"decoder {spec.name!r} consumes latent spaces "
                         f"{list(spec.latent_spaces)}, but the source produces {space!r}")

    def metrics(self, raw: dict[str, Any], model: SuiteModel | None = None) -> dict[str, ComponentParams]:
        params: dict[str, ComponentParams] = {}
        entries = raw.get("metrics")
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            entry = {"name": entry} if isinstance(entry, str) else entry
            if not isinstance(entry, dict):
                continue
            loc: Loc = ("metrics", i)
            name = entry.get("name")
            if isinstance(name, str) and name in params:
                self._report((*loc, "name"), f"metric {name!r} is listed twice")
                continue
            cls = self._lookup(METRICS, name, loc)
            if cls is None:
                continue
            validated = self._params(cls, entry.get("params", {}), loc)
            if validated is not None:
                params[str(name)] = validated
                self._check_min_side(str(name), cls, validated, loc, model)
        return params

    def _check_min_side(self, name: str, cls: Any, params: ComponentParams, loc: Loc,
                        model: SuiteModel | None) -> None:
        """A metric that cannot score images this small would record an error on every value."""
        if model is None:
            return
        need = cls.min_side(params)
        small = [output for _, output in model.resolution.pairs() if min(output) < need]
        if small:
            w, h = small[0]
            self._report((*loc, "name"), f"{name} needs comparison images of at least {need} px per side; "
                         f"this suite compares at {w}x{h} (every value would be an error)")


def _shown(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], tuple):
        return f"{_shown(value[0])} → {_shown(value[1])}"
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return repr(value)
