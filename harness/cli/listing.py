"""`decoderbench list decoders|metrics|suites`: what the registries and the built-in suites hold."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from harness.cli.console import console, out
from harness.cli.tables import Column, Grid, print_grid, print_note


class _Verb(StrEnum):
    decoders = "decoders"
    metrics = "metrics"
    suites = "suites"


def list_(what: Annotated[_Verb, typer.Argument(help="decoders, metrics or suites")]) -> None:
    """List decoders (what runs here), metrics or suites."""
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
        return False, f"needs parameters ({missing}): `decoderbench doctor SUITE` checks a suite's rows"
    try:
        with cache_only():
            instance.check()
    except (DecoderUnavailable, ValueError, OSError) as exc:
        return False, str(exc)
    return True, ""


def _list_decoders() -> None:
    from decoders.registry import DECODERS

    entries = DECODERS.entries()
    plugins = any(entry.origin != "builtin" for entry in entries.values())
    columns = [Column("consumes"), Column("latent spaces", text=True), Column("stochastic"),
               Column("prompt"), Column("native scale"), Column("available here")]
    columns += [Column("plug-in from")] if plugins else []
    grid = Grid("decoders", Column("name"), [*columns, Column("summary", text=True)], field_name="property",
                legend="available here: its packages, checkout and weight files are present (`decoderbench "
                "doctor` says more); the reasons follow")
    reasons = []
    for name, entry in entries.items():
        origin = [("—" if entry.origin == "builtin" else entry.origin)] if plugins else []
        try:
            cls = DECODERS.get(name)
            spec = cls.spec
        except Exception as exc:  # a plug-in that cannot be imported here
            grid.add(name, ["?", "—", "—", "—", "—", "no", *origin, f"cannot import: {exc}"])
            continue
        ok, why = decoder_availability(cls)
        if why:
            reasons.append((name, why))
        scale = "any" if spec.native_scale is None else f"{spec.native_scale:g}×"
        cuda = " (CUDA)" if spec.requires_cuda else ""
        grid.add(name, [str(spec.consumes), ", ".join(spec.latent_spaces) or "—",
                        "yes" if spec.stochastic else "no", "yes" if spec.needs_prompt else "no", scale,
                        ("yes" if ok else "no") + cuda, *origin, spec.summary])
    print_grid(grid, out)
    for name, why in reasons:
        print_note(console, why, label=name, style="yellow")


def _list_metrics() -> None:
    from harness.metrics import METRICS

    grid = Grid("metrics", Column("name"), [Column("family"), Column("better"), Column("unit"),
                                             Column("group"), Column("one value per"),
                                             Column("summary", text=True)], field_name="property")
    for name in METRICS.entries():
        try:
            cls = METRICS.get(name)
        except Exception as exc:
            grid.add(name, ["?", "", "", "", "", f"cannot import: {exc}"])
            continue
        scope = "set" if str(cls.scope) == "set" else str(cls.scope).replace("_", " ")
        grid.add(name, [str(cls.family), f"{cls.direction().symbol} {cls.direction().label}",
                        cls.unit or "—", cls.group() or "— (diagnostic)", scope, cls.summary])
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
