"""Every metric of the reference table (tests/support/metric_references.py, shared with
bench/metrics.py): its values against the library's, the same values however the images are
batched, nothing kept across reset(), and a protocol hash that follows its parameters."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
import torch
from metric_references import REFERENCES, Case, Inputs, difference, photo_inputs

from harness.metrics import METRICS

IMAGES = 2  # batching needs more than one


def _param(name: str, *values: Any) -> Any:
    marks = [pytest.mark.e2e] if REFERENCES[name].slow else []
    return pytest.param(name, *values, id="-".join(map(str, (name, *values))), marks=marks)


def _case(name: str, size: int, metric: Any = None) -> tuple[Case, Inputs]:
    reference = REFERENCES[name]
    for module in reference.requires:
        pytest.importorskip(module)
    torch.manual_seed(0)
    inputs = photo_inputs(size, IMAGES, torch.device("cpu"))
    case = reference.build(inputs) if metric is None else reference.build(inputs, metric=metric)
    return case, case.inputs or inputs


def _values(metric: Any, case: Case, inputs: Inputs, batches: list[slice]) -> dict[str, float]:
    """Feed `batches` of the case's images through update() after a reset; compute()'s values."""
    preds, targets = inputs.floats("preds"), inputs.floats("targets")
    contexts = case.contexts
    keys = [context.case_id for context in contexts] if contexts else [f"c{i}" for i in range(len(preds))]
    metric.reset()
    for part in batches:
        metric.update(keys[part], preds[part], targets[part] if metric.needs_targets() else None,
                      contexts[part] if contexts else None)
    return metric.compute().per_key


@pytest.mark.parametrize(("name", "size"), [
    _param(name, size) for name, reference in REFERENCES.items() if reference.tolerance is not None
    for size in reference.sizes])
def test_values_equal_the_librarys(name: str, size: int) -> None:
    case, _ = _case(name, size)
    assert case.theirs is not None
    assert np.all(np.isfinite(case.ours()))
    assert difference(case) <= REFERENCES[name].tolerance


@pytest.mark.parametrize("name", [
    _param(name) for name, reference in REFERENCES.items() if name not in ("fid", "invention_std")])
def test_batching_and_reset_change_no_value(name: str) -> None:
    """One image per update gives the whole batch's values; reset() forgets everything."""
    case, inputs = _case(name, REFERENCES[name].sizes[0])
    metric = case.metric
    whole = _values(metric, case, inputs, [slice(0, IMAGES)])
    assert len(whole) == IMAGES and all(np.isfinite(list(whole.values())))
    metric.reset()
    assert metric.compute().per_key == {}
    one_by_one = _values(metric, case, inputs, [slice(i, i + 1) for i in range(IMAGES)])
    assert one_by_one == pytest.approx(whole, rel=REFERENCES[name].batch_tolerance, abs=1e-12)
    assert _values(metric, case, inputs, [slice(0, IMAGES)]) == pytest.approx(whole, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_protocol_hash_follows_the_parameters(name: str) -> None:
    """Fresh metrics hash alike; a parameter change changes the hash (and, where the table's case
    takes a configured metric, the values it records)."""
    cls = METRICS.get(name)
    first, second = cls(), cls()
    assert first.protocol_sha256() == second.protocol_sha256()
    assert len(first.protocol_sha256()) == 64 and first.protocol()["name"] == name
    vary = REFERENCES[name].vary
    if not vary:
        assert not cls.Params.model_fields, f"{name} has parameters: give the table a `vary`"
        return
    changed = cls(cls.Params(**vary))
    assert changed.protocol_sha256() != first.protocol_sha256()
    if "metric" in inspect.signature(REFERENCES[name].build).parameters:
        size = REFERENCES[name].sizes[0]
        assert _case(name, size, changed)[0].ours() != _case(name, size)[0].ours()
