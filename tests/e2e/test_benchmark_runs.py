"""GenEval and DPG-Bench end to end: a benchmark prompts source, a text-to-pixel decoder in its
spawned worker, both metrics through scripted plug-in backends, the records and the papers' tables.

One source holds both benchmarks (as suites/l2p-paper.toml does): each metric scores its own
benchmark's cases and records the other's as not applicable. The stand-in decoder paints each
image with a red value that names its prompt and seed; the scripted backends answer by that value.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from helpers import invoke

from harness.runner import Runner
from harness.sources import benchmarks
from harness.sources.cache import TensorCache
from harness.store import RunStore
from harness.suite import load_suite

GENEVAL = [  # prompt, metadata, base red (seed s paints base + s)
    ("a photo of a bench", {"tag": "single_object", "include": [{"class": "bench", "count": 1}]}, 10),
    ("a photo of a bench and a cow", {"tag": "two_object", "include": [{"class": "bench", "count": 1},
                                                                        {"class": "cow", "count": 1}]}, 20),
    ("a photo of three clocks", {"tag": "counting", "include": [{"class": "clock", "count": 3}],
                                 "exclude": [{"class": "clock", "count": 4}]}, 30),
    ("a photo of a red car",
     {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}]}, 40),
    ("a photo of a dog right of a teddy bear", {"tag": "position", "include": [
        {"class": "teddy bear", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}]}, 50),
    ("a photo of a purple wine glass and a green apple", {"tag": "color_attr", "include": [
        {"class": "wine glass", "count": 1, "color": "purple"},
        {"class": "apple", "count": 1, "color": "green"}]}, 60),
]


def _obj(name: str, x: int = 0, colour: str | None = None, score: float = 0.95) -> dict:
    return {"class": name, "box": [x, 0, x + 10, 10], "score": score, "colour": colour}


DETECTIONS = {  # red → what the scripted detector finds; ✓/✗ per image
    10: [_obj("bench")], 11: [_obj("bench")],  # ✓ ✓  single_object 1.0
    20: [_obj("bench"), _obj("cow", 50)], 21: [_obj("bench")],  # ✓ ✗  two_object 0.5
    30: [_obj("clock"), _obj("clock", 20)], 31: [],  # ✗ ✗  counting 0.0
    40: [_obj("car", 0, "red")], 41: [_obj("car", 0, "blue")],  # ✓ ✗  colors 0.5
    50: [_obj("teddy bear"), _obj("dog", 100)], 51: [_obj("teddy bear"), _obj("dog", 100)],  # ✓ ✓  1.0
    60: [_obj("wine glass", 0, "purple"), _obj("apple", 50, "red")],  # ✗
    61: [_obj("wine glass", 0, "purple"), _obj("apple", 50, "green")],  # ✓  color_attr 0.5
}
DPG = {"p1": ("a red cat on a mat", 100), "p2": ("a tall tower", 110)}
DPG_ROWS = [("zz", "skipped by ella", 1, "0", "entity - whole (z)", "Is there z?"),
            ("p1", "a red cat on a mat", 1, "0", "entity - whole (cat)", "Is there a cat?"),
            ("p1", "a red cat on a mat", 2, "1", "attribute - color (cat, red)", "Is the cat red?"),
            ("p2", "a tall tower", 1, "0", "entity - whole (tower)", "Is there a tower?")]
VQA = {"100": {"Is there a cat?": "yes", "Is the cat red?": "yes"},  # 1
       "101": {"Is there a cat?": "yes", "Is the cat red?": "no"},  # 1/2  → p1 3/4
       "110": {"Is there a tower?": "yes"}, "111": {}}  # 1, 0       → p2 1/2


@pytest.fixture
def benchmark_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metadata = tmp_path / "evaluation_metadata.jsonl"
    lines = [json.dumps({**entry, "prompt": prompt}) + "\n" for prompt, entry, _ in GENEVAL]
    metadata.write_text("".join(lines))
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    for item_id, (text, _) in DPG.items():
        (prompts / f"{item_id}.txt").write_text(text)
    questions = tmp_path / "dpg_bench.csv"
    with questions.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "text", "keywords", "proposition_id", "dependency", "category_broad",
                         "category_detailed", "tuple", "question_natural_language"])
        for item, text, qid, dependency, tuple_, question in DPG_ROWS:
            writer.writerow([item, text, "", qid, dependency, "", "", tuple_, question])
    files = {"geneval": {"evaluation_metadata.jsonl": metadata},
             "dpg-bench": {"dpg_bench.csv": questions, "prompts": prompts}}
    monkeypatch.setattr(benchmarks, "require", lambda name: files[name])
    script = {str(red + dx): [{**o, "box": o["box"]} for o in DETECTIONS[red + dx]]
              for red in (10, 20, 30, 40, 50, 60) for dx in (0, 1)}
    (tmp_path / "geneval.json").write_text(json.dumps(script))
    (tmp_path / "vqa.json").write_text(json.dumps(VQA))
    monkeypatch.setenv("DECODERBENCH_TEST_GENEVAL_SCRIPT", str(tmp_path / "geneval.json"))
    monkeypatch.setenv("DECODERBENCH_TEST_VQA_SCRIPT", str(tmp_path / "vqa.json"))


def test_geneval_and_dpg_bench_run_end_to_end(benchmark_data, tmp_path: Path, write_suite) -> None:
    reds = {prompt: red for prompt, _, red in GENEVAL} | {text: red for text, red in DPG.values()}
    text = f"""
name = "bench"
seeds = [0, 1]
metrics = [{{name = "geneval", params = {{backend = "scripted"}}}},
           {{name = "dpg_bench", params = {{backend = "scripted", protocol = "ella"}}}}]
[source]
kind = "prompts"
benchmark = ["geneval", "dpg-bench"]
[resolution]
input = 32
output_scale = 1
[timing]
repeats = 1
[[decoder]]
name = "prompt-painter"
label = "painter"
params = {{reds = {json.dumps(reds)}}}
published = {{geneval = 0.55, dpg_bench = 60.0, source = "a made-up paper, Table 1"}}
"""
    suite = load_suite(write_suite(text.replace('": ', '" = ')))
    outcome = Runner.new(suite, tmp_path / "run", TensorCache(tmp_path / "cache")).run()
    assert outcome.failed_units == 0
    records, _ = RunStore.open(outcome.run_dir).records()
    metrics = [r for r in records if r["kind"] == "metric"]
    geneval = {r["case"]: r for r in metrics if r["metric"] == "geneval"}
    overall = geneval.pop(None)
    # (1 + 1/2 + 0 + 1/2 + 1 + 1/2) / 6
    assert overall["value"] == pytest.approx(3.5 / 6) and overall["details"]["images"] == 12
    assert overall["details"]["tasks"] == {"single_object": 1.0, "two_object": 0.5, "counting": 0.0,
                                           "colors": 0.5, "position": 1.0, "color_attr": 0.5}
    statuses = [r["status"] for r in geneval.values()]
    assert statuses.count("ok") == 12 and statuses.count("not_applicable") == 4  # the DPG-Bench cases
    dpg = {r["case"]: r for r in metrics if r["metric"] == "dpg_bench"}
    assert dpg.pop(None)["value"] == pytest.approx(100 * (3 / 4 + 1 / 2) / 2)
    assert [r["status"] for r in dpg.values()].count("not_applicable") == 12  # the GenEval cases

    shown = invoke("show", str(outcome.run_dir))
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()

    def table_row(header_word: str) -> tuple[list[str], list[str]]:
        """A table in the log layout (the test's output is not a terminal): columns apart by 2+ spaces."""
        at = next(i for i, line in enumerate(lines) if header_word in line and line.startswith("decoder"))
        row = next(line for line in lines[at:] if line.startswith("painter"))
        return re.split(r"\s{2,}", lines[at].strip()), re.split(r"\s{2,}", row.strip())

    header, row = table_row("Single object")
    assert header == ["decoder", "Overall", "Single object", "Two object", "Counting", "Colors", "Position",
                      "Color attribution", "images"]
    assert row == ["painter", "0.583", "1.000", "0.500", "0.000", "0.500", "1.000", "0.500", "12"]
    assert "backend scripted (comparable only with the same backend)" in shown.output
    header, row = table_row("Attribute")
    assert header == ["decoder", "Global", "Entity", "Attribute", "Relation", "Other", "Overall", "prompts"]
    # ella categories: the raw answers of seed 1: cat yes, red no; tower no.
    assert row == ["painter", "—", "50.00", "0.00", "—", "—", "62.50", "2"]
    assert "protocol ella" in shown.output
    published = next(line for line in lines if "a made-up paper" in line and "geneval" in line)
    assert "0.5833 @ 32×32" in published and "0.55" in published


def test_offline_runs_name_everything_they_miss_before_starting(tmp_path: Path, write_suite,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODERBENCH_BENCHMARKS_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    suite = write_suite('name = "offline"\nmetrics = ["geneval", {name = "dpg_bench", params = {backend = '
                        '"vlm", backend_options = {model = "someone/vl"}}}]\n[source]\nkind = "prompts"\n'
                        'benchmark = "geneval"\npipeline = {family = "sd3", weights = "someone/absent-sd3"}\n'
                        '[resolution]\ninput = 64\noutput_scale = 1\n[[decoder]]\nname = "prompt-painter"\n')
    result = invoke("run", str(suite), "--out", str(tmp_path / "run"), "-q")
    assert result.exit_code == 2
    # Notes wrap between words at the console width: read them back as paragraphs.
    missing = [" ".join(("missing: " + part).split())
               for part in re.split(r"^missing: ", result.output, flags=re.M)[1:]]
    assert len(missing) == 2, result.output
    assert missing[0].startswith(f"missing: geneval benchmark data missing: {tmp_path / 'data/geneval'}")
    assert "someone/absent-sd3 is not in the Hugging Face cache" in missing[1]
    # metrics whose lock-table weights are missing: one line (dpg_bench names its own model: not here)
    skipped = " ".join(result.output.split())
    assert "note: geneval skipped: its weight files are not on this machine; `decoderbench weights fetch " \
           "geneval` gets them" in skipped
