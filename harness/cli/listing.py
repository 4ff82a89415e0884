"""`decoderbench list decoders|metrics|suites`: what the registries and the built-in suites hold."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from harness.cli.console import console, fail, out
from harness.cli.tables import Column, Grid, print_grid, print_note

NEEDS_PARAMETERS = "needs parameters"  # a decoder that lacks nothing but a suite's parameters


class _Verb(StrEnum):
    decoders = "decoders"
    metrics = "metrics"
    suites = "suites"


def list_(what: Annotated[str, typer.Argument(help="decoders, metrics or suites",
                                               metavar="decoders|metrics|suites")]) -> None:
    """List decoders (what runs here), metrics or suites."""
    if what not in set(_Verb):
        import difflib

        close = difflib.get_close_matches(what, list(_Verb), n=1, cutoff=0.5)
        hint = f"did you mean `decoderbench list {close[0]}`? " if close else ""
        raise fail(f"list {what!r}: {hint}expected decoders, metrics or suites")
    if what == _Verb.decoders:
        _list_decoders()
    elif what == _Verb.metrics:
        _list_metrics()
    else:
        _list_suites()


def cuda_driver_present() -> bool:
    """Whether this machine has an NVIDIA driver, without importing torch (`doctor` asks torch)."""
    import shutil
    from pathlib import Path

    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def decoder_availability(cls: Any, params: Any | None = None, cuda: bool | None = None) -> tuple[bool, str]:
    """(can it run here, why not): its packages, checkout and weights (decoders' own `check()`,
    from local files only) and whether it needs CUDA."""
    from pydantic import ValidationError

    from decoders.base import DecoderUnavailable
    from decoders.weights import cache_only

    if cls.spec.requires_cuda and not (cuda_driver_present() if cuda is None else cuda):
        return False, "runs on CUDA only, and this machine has no NVIDIA driver"
    try:
        instance = cls(params if params is not None else cls.Params())
    except ValidationError as exc:
        missing = ", ".join(str(e["loc"][0]) for e in exc.errors())
        return False, f"{NEEDS_PARAMETERS} ({missing}): `decoderbench doctor SUITE` checks a suite's rows"
    try:
        with cache_only():
            instance.check()
    except (DecoderUnavailable, ValueError, OSError) as exc:
        return False, str(exc)
    return True, ""


def availability_word(ok: bool, why: str, cuda_only: bool) -> str:
    """The `available here` cell: yes, no, or what it depends on (a decoder that only needs its
    parameters, such as cascade's upscaler, is not missing anything)."""
    if ok:
        return "yes"
    if why.startswith(NEEDS_PARAMETERS):
        return "with params"
    return "no (CUDA)" if cuda_only else "no"


def _list_decoders() -> None:
    from decoders.registry import DECODERS

    entries = DECODERS.entries()
    plugins = any(entry.origin != "builtin" for entry in entries.values())
    columns = [Column("input"), Column("native scale"), Column("stochastic"), Column("available here")]
    columns += [Column("plug-in from")] if plugins else []
    columns += [Column("latent spaces", text=True, min_text=12, optional=True),
                Column("summary", text=True, optional=True)]
    grid = Grid("decoders", Column("name"), columns, field_name="property",
                legend="available here: its packages, checkout and weight files are present; 'with params': "
                "nothing is missing, a suite gives its parameters (`decoderbench doctor SUITE` checks a "
                "suite's rows); the reasons follow")
    reasons = []
    for name, entry in entries.items():
        origin = [("—" if entry.origin == "builtin" else entry.origin)] if plugins else []
        try:
            cls = DECODERS.get(name)
            spec = cls.spec
        except Exception as exc:  # a plug-in that cannot be imported here
            grid.add(name, ["?", "—", "—", "no", *origin, "—", f"cannot import: {exc}"])
            continue
        ok, why = decoder_availability(cls)
        if why:
            reasons.append((name, why))
        scale = "any" if spec.native_scale is None else f"{spec.native_scale:g}×"
        latent_and_prompt = spec.needs_prompt and str(spec.consumes) == "latent"
        needs = "latent + prompt" if latent_and_prompt else str(spec.consumes)
        grid.add(name, [needs, scale, "yes" if spec.stochastic else "no",
                        availability_word(ok, why, spec.requires_cuda), *origin,
                        ", ".join(spec.latent_spaces) or "—", spec.summary])
    print_grid(grid, out)
    for name, why in reasons:
        print_note(console, why, label=name, style="yellow")


def _list_metrics() -> None:
    from harness.metrics import METRICS

    grid = Grid("metrics", Column("name"), [
        Column("better"), Column("unit", text=True, min_text=12), Column("group"), Column("one value per"),
        Column("family", optional=True), Column("summary", text=True, optional=True)], field_name="property",
        legend="better: ↑ higher, ↓ lower, →1 closest to 1 · group: the summary group it counts towards "
        "(—: a diagnostic, shown but not ranked) · docs/metrics.md says what each one is")
    for name in METRICS.entries():
        try:
            cls = METRICS.get(name)
        except Exception as exc:
            grid.add(name, ["?", "", "", "", "", f"cannot import: {exc}"])
            continue
        scope = "set" if str(cls.scope) == "set" else str(cls.scope).replace("_", " ")
        grid.add(name, [cls.direction().symbol, cls.unit or "—", cls.group() or "—", scope,
                        str(cls.family), cls.summary])
    print_grid(grid, out)


def _list_suites() -> None:
    from harness.suite import SuiteError, builtin_suites_dir, load_suite

    grid = Grid("built-in suites (`decoderbench run NAME`)", Column("name"),
                [Column("description", text=True)], field_name="property")
    for path in sorted(builtin_suites_dir().glob("*.toml")):
        try:
            description = load_suite(path).model.description
        except SuiteError as exc:
            description = f"invalid: {exc}"
        grid.add(path.stem, [description])
    print_grid(grid, out)
    print_note(console, str(builtin_suites_dir()), label="folder", style="cyan")
