"""DPG-Bench's two scoring protocols on a hand-worked example.

`ella` follows TencentQQGYLab/ELLA @ 3c228f1 dpg_bench/compute_dpg_bench.py line by line:
prepare_dpg_data skips data row 0 (`if i == 0: continue`) and starts a fresh entry whenever
item_id differs from the previous row's; compute_dpg_one_sample scores `float(answer == 'yes')`,
copies the raw scores (qid2scores_orig) before one zeroing pass over qid2dependency in insertion
order (`qid2scores[parent_id] == 0` — a KeyError for a parent that is not there, caught in main(),
which then drops the file), averages per crop and over the crops; main() averages over files and
pools, per category (tuple text before "("), the raw scores of the last crop.

The table below has four prompts, two images each (seeds 0 and 1; the "last crop" is seed 1).
Every expected number is worked out by hand in the comments.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import write_dpg_csv

from harness.metrics.base import ImageContext
from harness.metrics.dpg import (
    DPGBench,
    Question,
    ScriptFailure,
    question_scores,
    question_scores_ella,
    read_questions,
    read_questions_ella,
)

ROWS = [  # item_id, text, proposition_id, dependency, tuple, question
    ("A", "a red cat", 1, "0", "entity - whole (cat)", "Is there a cat?"),  # data row 0: ELLA skips it
    ("A", "a red cat", 2, "1", "attribute - color (cat, red)", "Is the cat red?"),
    ("A", "a red cat", 3, "0", "entity - whole (mat)", "Is there a mat?"),
    ("B", "a tall tower", 3, "2", "attribute - scale (tower, tall)", "Is the tower tall?"),
    ("B", "a tall tower", 1, "0", "entity - whole (tower)", "Is there a tower?"),
    ("B", "a tall tower", 2, "1", "relation - spatial (tower, hill, on)", "Is the tower on a hill?"),
    ("C", "a green box", 5, "0", "entity - whole (old)", "Is there an old thing?"),  # replaced by ELLA
    ("D", "two dogs", 1, "0", "entity - whole (dog)", "Are there dogs?"),
    ("D", "two dogs", 2, "1,0", "other - count (dog, ==2)", "Are there two dogs?"),
    ("C", "a green box", 1, "0", "entity - whole (box)", "Is there a box?"),
    ("C", "a green box", 2, "1", "attribute - color (box, green)", "Is the box green?"),
]
# Answers per image (item, seed) → mean red of the test image the scripted backend sees.
ANSWERS = {
    ("A", 0): {"Is there a cat?": "yes", "Is the cat red?": "yes", "Is there a mat?": "no"},
    ("A", 1): {"Is there a cat?": "no", "Is the cat red?": "yes", "Is there a mat?": "yes"},
    ("B", 0): {"Is there a tower?": "no", "Is the tower on a hill?": "yes", "Is the tower tall?": "yes"},
    ("B", 1): {"Is there a tower?": "yes", "Is the tower on a hill?": "Yes", "Is the tower tall?": "yes"},
    ("C", 0): {"Is there a box?": "yes", "Is the box green?": "no"},
    ("C", 1): {"Is there a box?": "no", "Is the box green?": "yes"},
    ("D", 0): {"Are there dogs?": "yes", "Are there two dogs?": "yes"},
    ("D", 1): {"Are there dogs?": "yes", "Are there two dogs?": "no"},
}
RED = {("A", 0): 10, ("A", 1): 11, ("B", 0): 20, ("B", 1): 21, ("C", 0): 30, ("C", 1): 31, ("D", 0): 40,
       ("D", 1): 41}


@pytest.fixture
def dpg_csv(tmp_path: Path) -> Path:
    return write_dpg_csv(tmp_path / "dpg_bench.csv", ROWS)


def test_ella_reads_the_csv_as_prepare_dpg_data_does(dpg_csv: Path) -> None:
    ella, every = read_questions_ella(dpg_csv), read_questions(dpg_csv)
    assert {k: [q.id for q in p.questions] for k, p in ella.items()} == {
        "A": [2, 3], "B": [3, 1, 2], "C": [1, 2], "D": [1, 2]}  # row 0 gone; C's first run replaced
    assert {k: [q.id for q in p.questions] for k, p in every.items()} == {
        "A": [1, 2, 3], "B": [3, 1, 2], "C": [5, 1, 2], "D": [1, 2]}
    assert ella["D"].questions[1] == Question(2, (1,), "other - count", "Are there two dogs?")


def test_ella_scores_one_image_in_one_pass_with_exact_yes() -> None:
    tower = (Question(3, (2,), "attribute - scale", ""), Question(1, (), "entity - whole", ""),
             Question(2, (1,), "relation - spatial", ""))
    # q3 is visited before q2 is zeroed, so it keeps its 1; `corrected` zeroes it transitively.
    assert question_scores_ella(tower, {1: "no", 2: "yes", 3: "yes"}) == {3: 1.0, 1: 0.0, 2: 0.0}
    assert question_scores(tower, {1: "no", 2: "yes", 3: "yes"}) == {3: 0.0, 1: 0.0, 2: 0.0}
    # "Yes" is not "yes" for ELLA; it is after strip/lower.
    assert question_scores_ella(tower, {1: "yes", 2: "Yes", 3: "yes"}) == {3: 0.0, 1: 1.0, 2: 0.0}
    assert question_scores(tower, {1: "yes", 2: " Yes", 3: "yes"}) == {3: 1.0, 1: 1.0, 2: 1.0}
    missing_parent = (Question(2, (7, 1), "x", ""), Question(1, (), "y", ""))
    with pytest.raises(ScriptFailure, match="question 2 depends on question 7"):
        question_scores_ella(missing_parent, {1: "yes", 2: "yes"})
    # A zero parent visited first stops the loop before the missing one, as in the script.
    zero_first = (Question(1, (), "y", ""), Question(2, (1, 7), "x", ""))
    assert question_scores_ella(zero_first, {1: "no", 2: "yes"}) == {1: 0.0, 2: 0.0}


def _run(dpg_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str) -> tuple:
    script = {str(RED[key]): answers for key, answers in ANSWERS.items()}
    (tmp_path / "vqa.json").write_text(json.dumps(script))
    monkeypatch.setenv("DECODERBENCH_TEST_VQA_SCRIPT", str(tmp_path / "vqa.json"))
    metric = DPGBench(DPGBench.Params(questions=str(dpg_csv), backend="scripted", protocol=protocol))
    metric.load(torch.device("cpu"))
    texts = {row[0]: row[1] for row in ROWS}
    keys, contexts = [], []
    for (item, seed) in RED:
        key = f"{item}{seed}"
        keys.append(key)
        # B and D are benchmark cases (matched by item id); A and C are matched by their prompt.
        annotations = {"benchmark": {"name": "dpg-bench", "item_id": item}} if item in "BD" else {}
        contexts.append(ImageContext(key, item, texts[item] if item in "AC" else "ignored", seed, item, "r",
                                     (64, 64), (64, 64), annotations=annotations))
    images = torch.stack([torch.full((3, 64, 64), RED[k] / 255) for k in RED])
    metric.update(keys, images, None, contexts)
    return metric, metric.compute()


def test_ella_protocol_on_the_hand_worked_table(dpg_csv: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _, values = _run(dpg_csv, tmp_path, monkeypatch, "ella")
    # A: question 2's parent 1 was never read → the script fails on A's images; A is left out.
    # B (order 3[2], 1, 2[1]): seed 0 raw {3:1, 1:0, 2:1} → q3 keeps 1 (q2 not zeroed yet), q2 → 0: 1/3;
    #    seed 1 raw {3:1, 1:1, 2:0 ("Yes")} → q3 zeroed by q2: 1/3.            B = 1/3
    # C (q1, q2[1]): seed 0 {1:1, 2:0}: 1/2; seed 1 raw {1:0, 2:1} → q2 zeroed: 0.  C = 1/4
    # D (q1, q2[1]): seed 0: 1; seed 1 {1:1, 2:0}: 1/2.                          D = 3/4
    # score = 100 · (1/3 + 1/4 + 3/4) / 3 = 400/9
    assert values.aggregate == pytest.approx(400 / 9)
    assert values.per_key == pytest.approx({"B0": 100 / 3, "B1": 100 / 3, "C0": 50.0, "C1": 0.0, "D0": 100.0,
                                            "D1": 50.0})
    assert set(values.not_applicable) == {"A0", "A1"}
    assert "depends on question 1" in values.not_applicable["A0"]
    details = values.aggregate_details
    assert details["left_out"] == ["A"] and details["prompts"] == 3 and details["protocol"] == "ella"
    # Categories: raw answers (before zeroing) of each prompt's last image (seed 1):
    # B {scale: 1, whole: 1, spatial: 0}, C {whole: 0, color: 1}, D {whole: 1, count: 0}.
    assert details["l2_categories"] == pytest.approx({
        "attribute - color": 100.0, "attribute - scale": 100.0, "entity - whole": 200 / 3,
        "other - count": 0.0, "relation - spatial": 0.0})
    assert details["l1_categories"] == pytest.approx({"attribute": 100.0, "entity": 200 / 3, "other": 0.0,
                                                      "relation": 0.0})
    assert values.details["B1"]["answers"]["2"] == "Yes" and values.details["B1"]["question_scores"] == {
        "3": 0.0, "1": 1.0, "2": 0.0}
    assert any("1 prompt(s) left out" in w for w in values.warnings)
    assert any("4 images per prompt; this set has [2]" in w for w in values.warnings)


def test_corrected_protocol_on_the_same_table(dpg_csv: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    corrected, values = _run(dpg_csv, tmp_path, monkeypatch, "corrected")
    # Every row read; "Yes" counts; zeroing transitive.
    # A (q1, q2[1], q3): seed 0 {1,1,0}: 2/3; seed 1 {0, 0 (parent), 1}: 1/3.     A = 1/2
    # B: seed 0 q1 no → q2, q3 zeroed: 0; seed 1 all yes: 1.                      B = 1/2
    # C (q5 unanswered "no", q1, q2[1]): seed 0 {0,1,0}: 1/3; seed 1 {0,0,0}: 0.  C = 1/6
    # D: 3/4.   score = 100 · (1/2 + 1/2 + 1/6 + 3/4) / 4 = 100 · 23/48
    assert values.aggregate == pytest.approx(100 * 23 / 48)
    assert values.not_applicable == {} and values.aggregate_details["left_out"] == []
    # Categories after zeroing, over both images: entity - whole A1[1,0] A3[0,1] B1[0,1] C5[0,0]
    # C1[1,0] D1[1,1] = 6/12; attribute - color A2[1,0] C2[0,0] = 1/4; the others 1/2.
    assert values.aggregate_details["l2_categories"] == pytest.approx({
        "attribute - color": 25.0, "attribute - scale": 50.0, "entity - whole": 50.0, "other - count": 50.0,
        "relation - spatial": 50.0})
    assert values.aggregate_details["l1_categories"] == pytest.approx(
        {"attribute": 100 / 3, "entity": 50.0, "other": 50.0, "relation": 50.0})
    ella, _ = _run(dpg_csv, tmp_path, monkeypatch, "ella")
    assert ella.protocol()["params"]["protocol"] == "ella"
    assert ella.protocol_sha256() != corrected.protocol_sha256()


def test_unknown_backend_options_are_suite_errors(write_suite) -> None:
    from harness.suite import SuiteError, load_suite

    text = ('name = "d"\nmetrics = [{name = "dpg_bench", params = {backend = "blip-vqa", backend_options = '
            '{modle = "x"}}}]\n[source]\nkind = "prompts"\nprompts = ["a"]\n[resolution]\ninput = 64\n'
            'output_scale = 1\n[[decoder]]\nname = "prompt-painter"\n')
    with pytest.raises(SuiteError, match=r"metrics\[0\].params: backend 'blip-vqa' options: unknown key "
                                         r"'modle' \(known: model, "):
        load_suite(write_suite(text))


def test_corrected_counts_a_repeated_proposition_once_in_images_and_categories(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """D's 'Are there dogs?' row appears twice. Before, the image score merged the two rows (one
    proposition id) while the categories counted both: 'entity - whole' went from 6/12 to 8/14 while
    the image scores did not move. Now both count it once, and a warning names the repeated line."""
    rows = [*ROWS, ("D", "two dogs", 1, "0", "entity - whole (dog)", "Are there dogs?")]
    doubled = write_dpg_csv(tmp_path / "doubled.csv", rows)
    assert [q.id for q in read_questions(doubled)["D"].questions] == [1, 2]
    assert read_questions(doubled)["D"].repeated == (
        "doubled.csv:13 repeats proposition 1 of item D (line 9): counted once",)
    _, once = _run(write_dpg_csv(tmp_path / "once.csv", ROWS), tmp_path, monkeypatch, "corrected")
    _, twice = _run(doubled, tmp_path, monkeypatch, "corrected")
    assert twice.aggregate == pytest.approx(once.aggregate)
    assert twice.aggregate_details["l2_categories"] == pytest.approx(once.aggregate_details["l2_categories"])
    assert twice.per_key == pytest.approx(once.per_key)
    assert any("1 question row(s) repeat a proposition id" in w for w in twice.warnings)
