"""The Ray executor on a local Ray instance (`ray.init(num_cpus=2)`): the same records and
byte-identical images as the local executor, and a Ray worker killed mid-unit is recovered."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from helpers import decoder_tables, suite_text

from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.store import RunStore
from harness.suite import load_suite

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'decoderbench[cluster]')")

# What differs between any two runs, or says where a record was made.
PER_RUN = {"time", "worker_pid", "batch_id", "latency", "memory", "warmup", "placement", "slot", "unit"}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def _run(write_suite, tmp_path: Path, text: str, name: str, **execution):
    suite = load_suite(write_suite(text, name=f"{name}.toml"))
    outcome = Runner.new(suite, tmp_path / name, TensorCache(tmp_path / "cache"), **execution).run()
    store = RunStore.open(outcome.run_dir)
    records = store.records()[0]
    decodes = {(r["decoder"], r["case"]): r for r in records if r["kind"] == "decode"}
    assert len(decodes) == sum(r["kind"] == "decode" for r in records)  # one record per unit
    return store, records, decodes


def test_ray_gives_the_local_records_and_byte_identical_images(
        local_ray, write_suite, tmp_path, image_folder) -> None:
    text = suite_text(image_folder, decoder_tables('name = "bicubic"', 'name = "seeded-noise"'),
                      seeds="[0, 1]").replace("seeds = [0]\n", "")
    local, _, by_local = _run(write_suite, tmp_path, text, "local")
    remote, records, by_ray = _run(write_suite, tmp_path, text, "ray", executor="ray")
    assert set(by_ray) == set(by_local) and len(by_ray) == 12
    for key, record in by_ray.items():
        mine, theirs = ({k: v for k, v in r.items() if k not in PER_RUN} for r in (record, by_local[key]))
        assert mine == theirs, key  # status, sizes, input and image hashes, facts, ...
        assert (remote.root / record["image"]).read_bytes() == (local.root / record["image"]).read_bytes()
        assert record["placement"]["host"] and record["slot"].startswith("ray")
    execution = remote.manifest()["executions"][-1]
    assert execution["executor"] == "ray" and execution["actor_options"]["num_gpus"] == 0
    loads = [r for r in records if r["kind"] == "load"]
    assert len({r["pid"] for r in loads}) == len(loads) == 2  # one actor process per decoder


def test_a_ray_worker_killed_mid_unit_is_retried_once(local_ray, write_suite, tmp_path, image_folder) -> None:
    marker = tmp_path / "killed-once"
    table = f'name = "fault"\nparams = {{die_once_marker = "{marker}"}}'
    text = suite_text(image_folder, decoder_tables(table))
    store, records, decodes = _run(write_suite, tmp_path, text, "killed", executor="ray")
    assert marker.exists()  # the first actor did die
    assert {r["status"] for r in decodes.values()} == {"ok"} and len(decodes) == 3
    retried = [r for r in decodes.values() if r.get("retried_after")]
    assert len(retried) == 1 and "Ray worker died" in retried[0]["retried_after"]
    loads = [r for r in records if r["kind"] == "load"]
    units = {r["unit"] for r in decodes.values()}  # the 3 cases in 2 shards, one per Ray slot
    assert len(loads) == len(units) + 1 == len({r["pid"] for r in loads})  # a fresh actor took over
    assert any("unit retried once" in note for note in store.manifest()["notes"])
    # Resume works the same: a unit without its record is decoded again, once, by a Ray actor.
    lost = retried[0]
    lines = (store.root / "results.jsonl").read_text().splitlines()
    (store.root / "results.jsonl").write_text("".join(
        line + "\n" for line in lines if json.loads(line) != lost))
    Runner.resume(store.root, TensorCache(tmp_path / "cache"), executor="ray").run()
    again = [r for r in RunStore.open(store.root).records()[0]
             if r["kind"] == "decode" and r["case"] == lost["case"]]
    assert len(again) == 1 and again[0]["status"] == "ok" and again[0]["slot"].startswith("ray")
    assert again[0]["image_sha256"] == lost["image_sha256"]
