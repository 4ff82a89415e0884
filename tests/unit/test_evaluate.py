"""The evaluation phase through real runs: seed groups with artifacts, decoder facts (tile grids),
source annotations (text lines), set aggregates, unavailable metrics, and resume without duplicates."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers import decoder_tables, suite_text

from harness import images
from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.store import RunStore
from harness.suite import load_suite
from harness.view import load_run


def _metric_records(run_dir: Path) -> list[dict]:
    records, warning = RunStore.open(run_dir).records()
    assert warning is None
    return [r for r in records if r["kind"] == "metric"]


@pytest.fixture(autouse=True)
def empty_weight_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def test_groups_facts_unavailable_metrics_and_resume(write_suite, tmp_path, image_folder) -> None:
    text = suite_text(image_folder, decoder_tables(
        'name = "seeded-noise"', 'name = "tiled"\nparams = {tile_px = 8, step = 0.2}', 'name = "bilinear"'),
        seeds="[0, 1]").replace("seeds = [0]\n", "")
    text = text.replace('metrics = ["psnr", "ssim"]',
                        'metrics = ["psnr", "invention_std", "seam_score", "lpips"]')
    suite = load_suite(write_suite(text))
    cache = TensorCache(tmp_path / "cache")
    run_dir = Runner.new(suite, tmp_path / "run", cache).run().run_dir
    records = _metric_records(run_dir)
    by_metric = Counter(r["metric"] for r in records)
    assert by_metric == {"psnr": 18, "invention_std": 9, "seam_score": 18, "lpips": 18}
    invention = {(r["decoder"], r["case"]): r for r in records if r["metric"] == "invention_std"}
    cases = {c["id"]: c for c in RunStore.open(run_dir).cases()}
    for (decoder, case), record in invention.items():
        assert cases[case]["seed"] == 0 and len(record["cases"]) == 2
        assert {cases[c]["item_id"] for c in record["cases"]} == {cases[case]["item_id"]}
        heat = images.read_png(run_dir / record["artifact"])
        assert heat.shape == (3, 32, 32)
        assert record["artifact"] == f"artifacts/invention_std/{decoder}/{case}.png"
        if decoder == "seeded-noise":
            assert record["value"] > 0.01
        else:
            assert record["value"] == 0.0  # deterministic decoders invent nothing
    seams = [r for r in records if r["metric"] == "seam_score"]
    assert all(r["value"] > 2 for r in seams if r["decoder"] == "tiled")
    assert {r["status"] for r in seams if r["decoder"] != "tiled"} == {"not_applicable"}
    lpips = [r for r in records if r["metric"] == "lpips"]
    assert {r["status"] for r in lpips} == {"unavailable"}
    # records say it short; the manifest keeps which file is missing, where, and its source
    assert lpips[0]["message"] == ("lpips: weight files not on this machine; `decoderbench weights fetch "
                                   "lpips` gets them")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["metrics"]["lpips"]["status"] == "unavailable"
    assert "alexnet-owt-7be5be79.pth" in manifest["metrics"]["lpips"]["message"]
    assert manifest["metrics"]["invention_std"]["scope"] == "seed_group"
    assert manifest["metrics"]["seam_score"]["status"] == "ok"
    # Resume adds nothing; the summary shows the unavailable metric by its status.
    Runner.resume(run_dir, cache).run()
    assert _metric_records(run_dir) == records
    row = next(r for r in load_run(run_dir).rows if r.decoder == "seeded-noise")
    assert row.metrics["lpips"].statuses == {"unavailable": 6} and row.metrics["lpips"].headline is None
    assert row.metrics["invention_std"].n == 3


@pytest.mark.e2e
def test_text_annotations_reach_the_legibility_metric(write_suite, tmp_path) -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    text = """
name = "legibility"
metrics = ["legibility_cer"]
[source]
kind = "images"
builtin = ["legibility"]
limit = 1
[resolution]
input = 128
output_scale = 2
[[decoder]]
name = "lanczos"
[timing]
warmup = 0
repeats = 1
"""
    suite = load_suite(write_suite(text))
    run_dir = Runner.new(suite, tmp_path / "run", TensorCache(tmp_path / "c")).run().run_dir
    records = _metric_records(run_dir)
    per_case = [r for r in records if r["case"] is not None]
    aggregate = [r for r in records if r["case"] is None]
    assert len(per_case) == 1 and len(aggregate) == 1 and aggregate[0]["size"] == [256, 256]
    case = RunStore.open(run_dir).cases()[0]
    assert len(case["annotations"]["text_lines"]) == 14
    details = aggregate[0]["details"]
    # Font sizes in comparison pixels: the 512² chart is referenced at 256².
    assert set(details["cer_by_font_px"]) == {"3", "4", "5", "6", "8", "10", "12"}
    reference_cer = details["reference_cer_by_font_px"]
    assert reference_cer["12"] < 0.05 < reference_cer["3"]  # the OCR floor: tiny text is unreadable
    assert per_case[0]["value"] == pytest.approx(aggregate[0]["value"])
    assert set(per_case[0]["details"]["cer_by_font_px"]) == set(details["cer_by_font_px"])


DPG_CSV = """item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,\
question_natural_language
p0,a red square,,1,0,,,entity - whole (square),Is there a square?
p0,a red square,,2,1,,,attribute - color (square),Is the square red?
"""


def test_set_aggregates_are_written_once_and_completed_on_resume(write_suite, tmp_path, image_folder,
                                                                 monkeypatch) -> None:
    for index, image in enumerate(sorted(image_folder.glob("*.png"))):
        image.with_suffix(".txt").write_text("a red square" if index < 2 else "not in the benchmark")
    csv_path = tmp_path / "dpg_bench.csv"
    csv_path.write_text(DPG_CSV)
    script = tmp_path / "vqa.json"
    script.write_text(json.dumps({str(v): ["Is there a square?", "Is the square red?"] for v in range(256)}))
    monkeypatch.setenv("DECODERBENCH_TEST_VQA_SCRIPT", str(script))
    text = suite_text(image_folder, decoder_tables('name = "bilinear"'), seeds="[0, 1]")
    text = text.replace("seeds = [0]\n", "").replace(
        'metrics = ["psnr", "ssim"]',
        f'metrics = [{{name = "dpg_bench", params = {{questions = "{csv_path}", backend = "scripted", '
        f'protocol = "corrected"}}}}]')
    suite = load_suite(write_suite(text))
    cache = TensorCache(tmp_path / "cache")
    run_dir = Runner.new(suite, tmp_path / "run", cache).run().run_dir
    records = _metric_records(run_dir)
    assert Counter(r["status"] for r in records if r["case"]) == {"ok": 4, "not_applicable": 2}
    aggregate = [r for r in records if r["case"] is None]
    assert len(aggregate) == 1 and aggregate[0]["value"] == 100.0
    assert aggregate[0]["details"]["images_per_prompt"] == [4]  # 2 images × 2 seeds share one prompt
    # Killed after the per-case records, before the aggregate: resume adds only the aggregate.
    results = run_dir / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(line for line in lines if '"case": null' not in line))
    Runner.resume(run_dir, cache).run()
    again = _metric_records(run_dir)
    assert [r for r in again if r["case"]] == [r for r in records if r["case"]]
    assert [r["value"] for r in again if r["case"] is None] == [100.0]
    Runner.resume(run_dir, cache).run()
    assert _metric_records(run_dir) == again


def test_invention_compares_only_byte_identical_inputs(write_suite, tmp_path, image_folder) -> None:
    """Decoder seeds share the latent even at sigma > 0 (the input seed draws the noise), so a
    deterministic decoder invents exactly nothing; input seeds make separate groups."""
    text = suite_text(image_folder, decoder_tables('name = "bilinear"'),
                      sigmas="[0.5]", input_seeds="[0, 1]").replace("seeds = [0]\n", "seeds = [0, 1]\n")
    text = text.replace('metrics = ["psnr", "ssim"]', 'metrics = ["invention_std"]')
    suite = load_suite(write_suite(text))
    run_dir = Runner.new(suite, tmp_path / "run", TensorCache(tmp_path / "c")).run().run_dir
    records, _ = RunStore.open(run_dir).records()
    decodes = {r["case"]: r for r in records if r["kind"] == "decode"}
    cases = {c["id"]: c for c in RunStore.open(run_dir).cases()}
    invention = [r for r in records if r["kind"] == "metric"]
    assert len(invention) == 3 * 2  # items × input seeds; each group holds the two decoder seeds
    for record in invention:
        assert record["status"] == "ok" and record["value"] == 0.0
        members = record["cases"]
        assert sorted(cases[c]["seed"] for c in members) == [0, 1]
        assert len({cases[c]["input_seed"] for c in members}) == 1
        assert len({decodes[c]["input_sha256"] for c in members}) == 1
        assert record["details"]["input_sha256"] == decodes[members[0]]["input_sha256"]
    # The input seed, not the decoder seed, draws the noise: two input seeds, two latents per item.
    per_item: dict[str, set[str]] = {}
    for case_id, case in cases.items():
        per_item.setdefault(case["item_id"], set()).add(decodes[case_id]["input_sha256"])
    assert all(len(hashes) == 2 for hashes in per_item.values())


def test_invention_refuses_groups_whose_inputs_differ() -> None:
    from harness.metrics.base import ImageContext
    from harness.metrics.invention import InventionStd

    def context(seed: int, sha: str) -> ImageContext:
        return ImageContext(case_id=f"c{seed}", item_id="i", prompt=None, seed=seed, seed_group="g",
                            reference_key="r", output_size=(4, 4), native_size=None, input_sha256=sha)

    metric = InventionStd()
    pixels = torch.rand(2, 3, 4, 4)
    metric.update(["c0", "c1"], pixels, None, [context(0, "a" * 64), context(1, "b" * 64)])
    values = metric.compute()
    assert values.per_key == {}
    assert "byte-identical" in values.not_applicable["c0"]
    metric.reset()
    metric.update(["c0", "c1"], pixels, None, [context(0, "a" * 64), context(1, "a" * 64)])
    assert metric.compute().per_key["c0"] > 0


def _values(records: list[dict]) -> dict:
    return {(r["metric"], r["decoder"], r["case"]): (r["status"], r["value"]) for r in records}


def _alone(run_dir: Path, suite, metric_name: str) -> dict:
    """What one metric gives fed on its own, set by set, every image read from its PNG."""
    import torch

    from harness.metrics import METRICS

    store = RunStore.open(run_dir)
    cases = {c["id"]: c for c in store.cases()}
    decodes = [r for r in store.records()[0] if r["kind"] == "decode" and r["status"] == "ok"]
    metric = METRICS.get(metric_name)(suite.metric_params[metric_name])
    values = {}
    for decoder in sorted({r["decoder"] for r in decodes}):
        metric.reset()
        mine = [r for r in decodes if r["decoder"] == decoder]
        preds = torch.stack([images.read_png(run_dir / r["image"]) for r in mine])
        targets = torch.stack([images.read_png(run_dir / cases[r["case"]]["reference"]) for r in mine])
        metric.update([r["case"] for r in mine], images.to_float(preds), images.to_float(targets))
        values.update({(metric_name, decoder, key): ("ok", value)
                       for key, value in metric.compute().per_key.items()})
    return values


def test_one_read_per_image_feeds_every_metric_the_values_it_gives_alone(
        write_suite, tmp_path, image_folder, monkeypatch) -> None:
    """The shared pass decodes each stored PNG once (references once for all decoders) and every
    metric gets exactly the values it computes when fed alone."""
    reads: Counter = Counter()
    read_png = images.read_png
    monkeypatch.setattr(images, "read_png", lambda path: reads.update([Path(path)]) or read_png(path))
    text = suite_text(image_folder, decoder_tables('name = "nearest"', 'name = "bilinear"'))
    text = text.replace('metrics = ["psnr", "ssim"]',
                        'metrics = ["psnr", "ssim", "spectral_distance", "hf_energy_ratio"]')
    suite = load_suite(write_suite(text.replace("[timing]", "[evaluation]\nbatch_size = 2\n[timing]")))
    run_dir = Runner.new(suite, tmp_path / "run", TensorCache(tmp_path / "cache")).run().run_dir
    stored = [*(run_dir / "images").rglob("*.png"), *(run_dir / "references").glob("*.png")]
    assert len(stored) == 9 and {path: reads[path] for path in stored} == dict.fromkeys(stored, 1)
    records = _metric_records(run_dir)
    assert len(records) == 4 * 6
    for name in ("psnr", "ssim", "spectral_distance", "hf_energy_ratio"):
        alone = _alone(run_dir, suite, name)
        assert {k: v for k, v in _values(records).items() if k[0] == name} == alone


def test_a_failing_metric_or_file_spoils_only_its_own_records(write_suite, tmp_path, image_folder,
                                                               monkeypatch) -> None:
    from harness.metrics.fullref import SSIM

    def broken(self, preds, targets):
        raise RuntimeError("ssim broke")

    text = suite_text(image_folder, decoder_tables('name = "nearest"'))
    suite = load_suite(write_suite(text.replace("[timing]", "[evaluation]\nbatch_size = 1\n[timing]")))
    cache = TensorCache(tmp_path / "cache")
    run_dir = Runner.new(suite, tmp_path / "run", cache).run().run_dir
    # Re-evaluate with SSIM broken and one output unreadable.
    results = run_dir / "results.jsonl"
    results.write_text("".join(line for line in results.read_text().splitlines(keepends=True)
                               if '"kind": "metric"' not in line))
    spoiled = sorted((run_dir / "images").rglob("*.png"))[0]
    spoiled.write_bytes(b"not a png")
    monkeypatch.setattr(SSIM, "score", broken)
    Runner.resume(run_dir, cache).run()
    records = _metric_records(run_dir)
    assert Counter((r["metric"], r["status"]) for r in records) == {
        ("psnr", "ok"): 2, ("psnr", "error"): 1, ("ssim", "error"): 3}
    unreadable = [r for r in records if r["case"] == spoiled.stem]
    assert all(spoiled.name in r["message"] for r in unreadable)
    assert all(r["message"] == "RuntimeError: ssim broke" for r in records
               if r["metric"] == "ssim" and r["case"] != spoiled.stem)


def test_text_alignment_metrics_get_a_pass_of_their_own() -> None:
    from harness.evaluate import passes

    assert passes(dict.fromkeys(["psnr", "clipscore", "ssim", "geneval"])) == [
        ["psnr", "ssim"], ["clipscore"], ["geneval"]]
    assert passes(dict.fromkeys(["clipscore"])) == [["clipscore"]]


@pytest.mark.e2e
def test_the_reader_stays_a_bounded_number_of_batches_ahead(monkeypatch) -> None:
    """Memory is bounded by batches in flight, not by the run: the reader blocks when it is ahead."""
    import threading

    import torch

    from harness.evaluate import READ_AHEAD_BATCHES, Batch, Reader

    loaded: list[str] = []
    lock = threading.Lock()

    def fake_read(path):
        with lock:
            loaded.append(Path(path).name)
        return torch.zeros(3, 4, 4, dtype=torch.uint8)

    monkeypatch.setattr(images, "read_png", fake_read)
    decodes = {("d", f"c{i}"): {"image": f"c{i}.png"} for i in range(20)}
    reader = Reader(Path("/nowhere"), decodes, {}, needs_targets=False, device=torch.device("cpu"))
    batches = reader.read([Batch(("d", (4, 4)), [("d", f"c{i}")]) for i in range(20)])
    for taken in range(1, 6):
        batch = next(batches)
        assert batch.units == [("d", f"c{taken - 1}")] and batch.preds.shape == (1, 3, 4, 4)
        threading.Event().wait(0.2)  # let the reader run as far ahead as it may
        assert len(loaded) <= taken + READ_AHEAD_BATCHES + 1
    batches.close()  # stops the reader thread
    assert len(loaded) < 20


def test_a_metric_is_not_loaded_when_nothing_it_would_score_applies(write_suite, tmp_path, image_folder,
                                                                     monkeypatch) -> None:
    """Every decoded image is not applicable (random weights): the records say so, and no metric
    model is loaded for nothing (a metric that cannot load is not 'unavailable' then either)."""
    from harness.metrics.fullref import PSNR

    def refuse(self, device):
        raise AssertionError("psnr was loaded with nothing to score")

    monkeypatch.setattr(PSNR, "load", refuse)
    text = suite_text(image_folder, decoder_tables(
        'name = "fault"\nparams = {quality_not_applicable = "random weights: performance-only"}'))
    run_dir = Runner.new(load_suite(write_suite(text.replace('["psnr", "ssim"]', '["psnr"]'))),
                         tmp_path / "run", TensorCache(tmp_path / "cache")).run().run_dir
    records = _metric_records(run_dir)
    assert records and {r["status"] for r in records} == {"not_applicable"}
    assert {r["message"] for r in records} == {"random weights: performance-only"}
    info = RunStore.open(run_dir).manifest()["metrics"]["psnr"]
    assert info["status"] == "ok" and info["images"] == 0
