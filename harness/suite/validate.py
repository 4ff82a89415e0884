"""A validated suite: schema, registry checks and duplicates at once → a hashed `Suite`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from decoders.plugins import Params as ComponentParams
from harness.cases import Case, Item, expand
from harness.gates.spec import gate_problems
from harness.suite.checks import ComponentChecks, duplicate_problems
from harness.suite.messages import Loc, Locator, Problem, SuiteError, error_loc, error_message, schema_message
from harness.suite.schema import Cost, SuiteModel, Timing


@dataclass(frozen=True)
class Suite:
    """A validated suite: the model, where it came from and its hash."""

    model: SuiteModel
    path: Path
    texts: dict[str, str]  # every file read (include chain), name → text
    decoder_params: dict[str, ComponentParams]  # decoder id → validated params
    encoder_params: ComponentParams
    metric_params: dict[str, ComponentParams]

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @cached_property
    def sha256(self) -> str:
        """Hash of the resolved configuration (formatting and include layout do not count)."""
        canonical = json.dumps(self.model.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def expand(self, items: list[Item], source_protocol: dict[str, Any]) -> list[Case]:
        """The suite's cases for these items (harness.cases.expand with its sizes, sigmas, seeds)."""
        model = self.model
        try:
            return expand(items, model.resolution.pairs(), model.sigmas, model.seeds, source_protocol,
                          model.input_seeds)
        except ValueError as exc:  # the schema rejects repeated values; two equal items remain
            raise SuiteError([(str(self.path), "", str(exc))]) from None

    def resolve_path(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def with_overrides(self, **timing: Any) -> Suite:
        """A copy with timing settings replaced (--device, --dtype, --gpus from the command line),
        validated as the suite is: OverrideError names the option, before anything is written."""
        changed = {k: v for k, v in timing.items() if v is not None}
        if not changed:
            return self
        try:
            Timing.model_validate({**self.model.timing.model_dump(mode="json"), **changed})
        except ValidationError as exc:
            raise OverrideError([
                ("command line", OVERRIDE_OPTIONS.get(str(e["loc"][0]), f"timing.{e['loc'][0]}"),
                 error_message(e, sorted(Timing.model_fields))) for e in exc.errors()]) from None
        raw = self.model.model_dump(mode="json")
        raw["timing"] = {**raw["timing"], **changed}
        return validate_raw(raw, self.path, self.texts)

    def with_price(self, gpu_hour: float | None) -> Suite:
        """A copy whose [cost] gpu_hour is `gpu_hour` (--gpu-hour-price); the rest of [cost] stays."""
        if gpu_hour is None:
            return self
        current = self.model.cost.model_dump() if self.model.cost else {}
        try:
            cost = Cost.model_validate({**current, "gpu_hour": gpu_hour})
        except ValidationError as exc:
            raise SuiteError([("--gpu-hour-price", "", error_message(exc.errors()[0], []))]) from None
        return Suite(self.model.model_copy(update={"cost": cost}), self.path, self.texts,
                     self.decoder_params, self.encoder_params, self.metric_params)


OVERRIDE_OPTIONS = {"device": "--device", "dtype": "--dtype", "gpus": "--gpus"}


class OverrideError(SuiteError):
    """A command-line override the suite cannot take (`--device tpu`, `--dtype int8`)."""


def validate_raw(
    raw: dict[str, Any],
    path: Path,
    texts: dict[str, str] | None = None,
    origins: dict[Loc, str] | None = None,
) -> Suite:
    """Validate a suite's (include-merged) data; report every problem at once."""
    where = Locator(str(path), origins or {})
    problems: list[Problem] = []
    model: SuiteModel | None = None
    try:
        model = SuiteModel.model_validate(raw)
    except ValidationError as exc:
        problems.extend(where.problem(error_loc(e), schema_message(e, raw)) for e in exc.errors())
    # Registry checks read the raw data, so they run (and report) even when the schema failed.
    checks = ComponentChecks(where, problems)
    encoder_params, space = checks.source(raw, model)
    decoder_params = checks.decoders(raw, space, model)
    metric_params = checks.metrics(raw, model)
    problems.extend(where.problem(loc, message) for loc, message in gate_problems(raw))
    problems.extend(where.problem(loc, message) for loc, message in duplicate_problems(raw))
    if problems or model is None or encoder_params is None:
        raise SuiteError(list(dict.fromkeys(problems)))
    return Suite(model, path, texts or {}, decoder_params, encoder_params, metric_params)
