"""Prompt alignment: CLIPScore against torchmetrics, GenEval and DPG-Bench scoring on hand-made
detections and answers with known correct scores.

References:
- Lightning-AI/torchmetrics 1.9.0, src/torchmetrics/functional/multimodal/clip_score.py
  (`_clip_score_update`: 100 · cosine of unit-normalised CLIP features; `CLIPScore.compute`
  clamps at 0). transformers ≥ 5 returns model outputs from get_*_features, which torchmetrics
  1.9 does not unwrap; the test model returns the projected embeddings as tensors.
- djghosh13/geneval @ 16f1681160a110fd077309eb04c1e004f951e06d, evaluation/evaluate_images.py
  (thresholds, `relative_position`, `evaluate`) and evaluation/summary_scores.py (mean of task means).
- TencentQQGYLab/ELLA @ 025f650e9b36b9603d606042635d98da09e870de, dpg_bench/compute_dpg_bench.py
  (yes-only scoring, parent zeroing, mean over crops then prompts, ×100).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from conftest import SHARED
from helpers import write_dpg_csv

from harness.metrics.base import ImageContext
from harness.metrics.dpg import DPGBench, DPGTally, ImageResult, Question, question_scores, read_questions
from harness.metrics.geneval import (
    Detection,
    GenEval,
    Rules,
    evaluate_image,
    read_metadata,
    relative_position,
    select_objects,
    summarise,
)
from harness.metrics.textalign import CLIPScore


def _context(key: str, prompt: str | None, seed: int = 0) -> ImageContext:
    return ImageContext(case_id=key, item_id=key, prompt=prompt, seed=seed, seed_group=key,
                        reference_key="r", output_size=(64, 64), native_size=(64, 64))


def _solid(*reds: int) -> torch.Tensor:
    """Images told apart by scripted backends through their red value."""
    return torch.stack([torch.full((3, 64, 64), red / 255) for red in reds])


# --------------------------------------------------------------------------- CLIPScore


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight CLIP with the real CLIP tokenizer (built from the openai-clip package's BPE)."""
    simple_tokenizer = pytest.importorskip("clip.simple_tokenizer")
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = tmp_path_factory.mktemp("tiny-clip")
    with gzip.open(simple_tokenizer.default_bpe()) as handle:
        lines = handle.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    vocab = list(simple_tokenizer.bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    torch.manual_seed(0)
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=224, patch_size=32)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _clipscore(folder: Path, policy: str = "truncate") -> CLIPScore:
    metric = CLIPScore(CLIPScore.Params(model=str(folder), long_captions=policy))
    metric.load(torch.device("cpu"))
    return metric


@pytest.mark.e2e
def test_clipscore_equals_torchmetrics(tiny_clip: Path) -> None:
    from torchmetrics.multimodal.clip_score import CLIPScore as Reference
    from transformers import CLIPModel, CLIPProcessor

    class TensorCLIP(CLIPModel):
        def get_text_features(self, *args, **kwargs):
            return super().get_text_features(*args, **kwargs).pooler_output

        def get_image_features(self, *args, **kwargs):
            return super().get_image_features(*args, **kwargs).pooler_output

    reference = Reference(model_name_or_path=lambda: (TensorCLIP.from_pretrained(tiny_clip),
                                                      CLIPProcessor.from_pretrained(tiny_clip)))
    metric = _clipscore(tiny_clip)
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (3, 3, 96, 128), generator=generator, dtype=torch.uint8)
    prompts = ["a photo of a cat", "a red car parked on a street", "two dogs"]
    contexts = [_context(k, p) for k, p in zip("abc", prompts, strict=True)]
    metric.update(["a", "b", "c"], images.float() / 255, None, contexts)
    values = metric.compute()
    for key, image, prompt in zip("abc", images, prompts, strict=True):
        reference.reset()
        expected = float(reference(image, prompt))
        assert values.per_key[key] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert values.details["a"] == {"prompt_tokens": 7, "text_windows": 1}
    assert values.warnings == []


@pytest.mark.e2e
def test_clipscore_long_captions_are_truncated_or_chunked_never_silently(tiny_clip: Path) -> None:
    long_prompt = " ".join(["a small red house beside a tall green tree"] * 12)  # ~110 tokens
    image = torch.rand(1, 3, 64, 64)
    truncated, chunked = _clipscore(tiny_clip, "truncate"), _clipscore(tiny_clip, "chunk")
    for metric in (truncated, chunked):
        metric.update(["x", "y"], torch.cat([image, image]), None,
                      [_context("x", long_prompt), _context("y", None)])
    t_values, c_values = truncated.compute(), chunked.compute()
    tokens = t_values.details["x"]["prompt_tokens"]
    assert tokens > 77 and t_values.details["x"]["text_windows"] == 1
    assert c_values.details["x"]["text_windows"] == -(-(tokens - 2) // 75)
    assert "1 of 1 prompts exceed 77 CLIP tokens and were truncated" in t_values.warnings[0]
    assert "chunked" in c_values.warnings[0]
    assert t_values.not_applicable == {"y": "the case has no prompt"}
    # Truncation keeps the end token: the first window equals the tokenizer's own truncation.
    windows, _ = truncated.token_windows(long_prompt)
    expected = truncated.tokenizer(long_prompt, truncation=True, max_length=77)["input_ids"]
    assert windows == [expected] and expected[-1] == truncated.tokenizer.eos_token_id
    with torch.no_grad():
        embedding = truncated.image_embeddings(image)[0]
        text = truncated.model.get_text_features(input_ids=torch.tensor([expected])).pooler_output[0]
    cosine = float(torch.nn.functional.cosine_similarity(embedding, text, dim=0))
    assert t_values.per_key["x"] == pytest.approx(100 * max(cosine, 0), rel=1e-4, abs=1e-4)
    assert c_values.per_key["x"] != pytest.approx(t_values.per_key["x"])


# --------------------------------------------------------------------------- GenEval


def _box(x0: float, y0: float, x1: float, y1: float, score: float = 0.8) -> Detection:
    return Detection((x0, y0, x1, y1), score)


def _no_colours(found: list[Detection], classname: str) -> list[str]:
    raise AssertionError("no colour clause here")


def test_geneval_object_and_count_rules() -> None:
    rules = Rules()
    single = {"tag": "single_object", "include": [{"class": "bench", "count": 1}]}
    assert evaluate_image(single, select_objects({"bench": [_box(0, 0, 9, 9, 0.5)]}, "single_object", rules),
                          _no_colours)[0]
    below = select_objects({"bench": [_box(0, 0, 9, 9, 0.25)]}, "single_object", rules)
    assert evaluate_image(single, below, _no_colours) == (False, ["expected bench>=1, found 0"])
    two = {"tag": "two_object", "include": [{"class": "bench", "count": 1}, {"class": "cow", "count": 1}]}
    assert not evaluate_image(two, {"bench": [_box(0, 0, 9, 9)]}, _no_colours)[0]
    counting = {"tag": "counting", "include": [{"class": "clock", "count": 2}],
                "exclude": [{"class": "clock", "count": 3}]}
    clocks = [_box(0, 0, 9, 9, 0.95), _box(20, 0, 29, 9, 0.92), _box(40, 0, 49, 9, 0.5)]
    assert evaluate_image(counting, select_objects({"clock": clocks}, "counting", rules), _no_colours)[0]
    # Under the ordinary 0.3 threshold the third clock would count and break the exclude clause.
    assert not evaluate_image(counting, select_objects({"clock": clocks}, "single_object", rules),
                              _no_colours)[0]
    extra = [*clocks, _box(60, 0, 69, 9, 0.91)]
    kept = select_objects({"clock": extra}, "counting", rules)
    correct, reasons = evaluate_image(counting, kept, _no_colours)
    assert not correct and reasons == ["expected clock<3, found 3"]
    many = select_objects({"kite": [_box(i, 0, i + 5, 5, 0.5 + i / 100) for i in range(20)]}, "x", rules)
    assert len(many["kite"]) == 16 and many["kite"][0].score == pytest.approx(0.69)  # most confident first


def test_geneval_colour_and_position_rules() -> None:
    colours = {"car": ["red"], "wine glass": ["purple"], "apple": ["green"]}
    classify = lambda found, name: colours[name][: len(found)]  # noqa: E731
    red_car = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}]}
    assert evaluate_image(red_car, {"car": [_box(0, 0, 9, 9)]}, classify)[0]
    blue_car = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "blue"}]}
    assert not evaluate_image(blue_car, {"car": [_box(0, 0, 9, 9)]}, classify)[0]
    attr = {"tag": "color_attr", "include": [{"class": "wine glass", "count": 1, "color": "purple"},
                                             {"class": "apple", "count": 1, "color": "black"}]}
    correct, reasons = evaluate_image(attr, {"wine glass": [_box(0, 0, 9, 9)], "apple": [_box(20, 0, 29, 9)]},
                                      classify)
    assert not correct and reasons == ["expected black apple>=1, found 0 black; and 1 green"]
    position = {"tag": "position", "include": [{"class": "teddy bear", "count": 1},
                                               {"class": "dog", "count": 1, "position": ["right of", 0]}]}
    bear = _box(0, 0, 100, 100)
    for dog, expected in ((_box(300, 0, 400, 100), True), (_box(110, 0, 210, 100), True),
                          (_box(15, 0, 115, 100), False), (_box(-200, 0, -100, 100), False)):
        assert evaluate_image(position, {"teddy bear": [bear], "dog": [dog]}, classify)[0] is expected
    assert not evaluate_image(position, {"dog": [_box(300, 0, 400, 100)]}, classify)[0]  # no target
    # Offsets within 0.1 × (sum of sizes) do not count; a diagonal offset gives two relations.
    assert relative_position(_box(15, 0, 115, 100), bear, 0.1) == set()
    assert relative_position(_box(100, 100, 150, 150), _box(0, 0, 50, 50), 0.1) == {"right of", "below"}
    assert relative_position(_box(0, 0, 50, 50), _box(0, 200, 50, 250), 0.1) == {"above"}


def test_geneval_score_is_the_mean_of_task_means() -> None:
    overall, tasks = summarise([("single_object", True), ("single_object", False), ("two_object", True)])
    assert tasks == {"single_object": 0.5, "two_object": 1.0} and overall == 0.75


def test_geneval_metric_through_a_plug_in_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metadata = tmp_path / "metadata.jsonl"
    entries = [{"tag": "single_object", "include": [{"class": "cow", "count": 1}],
                "prompt": "a photo of a cow"},
               {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}],
                "prompt": "a photo of a red car"},
               {"tag": "counting", "include": [{"class": "cup", "count": 2}],
                "prompt": "a photo of two cups"}]
    metadata.write_text("".join(json.dumps(e) + "\n" for e in entries))
    script = tmp_path / "script.json"
    script.write_text(json.dumps({
        "10": [{"class": "cow", "box": [0, 0, 20, 20], "score": 0.9}],
        "20": [{"class": "dog", "box": [0, 0, 20, 20], "score": 0.9}],
        "30": [{"class": "car", "box": [0, 0, 20, 20], "score": 0.9, "colour": "red"}],
    }))
    monkeypatch.setenv("DECODERBENCH_TEST_GENEVAL_SCRIPT", str(script))
    metric = GenEval(GenEval.Params(metadata=str(metadata), backend="scripted"))
    metric.load(torch.device("cpu"))
    contexts = [_context("a", "a photo of a cow"), _context("b", "a photo of a cow"),
                _context("c", "a photo of a red car"), _context("d", "not a GenEval prompt")]
    metric.update(list("abcd"), _solid(10, 20, 30, 40), None, contexts)
    values = metric.compute()
    assert values.per_key == {"a": 1.0, "b": 0.0, "c": 1.0}
    assert values.details["b"]["reasons"] == ["expected cow>=1, found 0"]
    assert values.details["a"]["objects"] == {"cow": [[0.0, 0.0, 20.0, 20.0, 0.9]]}
    assert values.aggregate_details["correct_of"] == {"single_object": [1, 2], "colors": [1, 1]}
    assert values.aggregate == pytest.approx((0.5 + 1.0) / 2)
    assert values.aggregate_details["tasks"] == {"single_object": 0.5, "colors": 1.0}
    assert list(values.not_applicable) == ["d"]
    assert values.warnings == ["GenEval score over 2 of 6 tasks; no image of Two object, Counting, Position, "
                               "Color attribution (not comparable with full runs)"]
    assert metric.protocol()["weights_sha256"] == {"scripted": "none"}


def test_geneval_unknown_backend_is_unavailable(tmp_path: Path) -> None:
    from harness.metrics.base import MetricUnavailable

    metadata = tmp_path / "m.jsonl"
    metadata.write_text(json.dumps({"tag": "x", "include": [], "prompt": "p"}) + "\n")
    with pytest.raises(MetricUnavailable, match="unknown GenEval backend 'nope'"):
        GenEval(GenEval.Params(metadata=str(metadata), backend="nope")).load(torch.device("cpu"))


@pytest.mark.skipif(not (SHARED / "benchmarks/geneval/evaluation_metadata.jsonl").exists(),
                    reason="GenEval metadata not available")
def test_geneval_metadata_from_the_benchmark() -> None:
    entries = read_metadata(SHARED / "benchmarks/geneval/evaluation_metadata.jsonl")
    tags: dict[str, int] = {}
    for entry in entries.values():
        tags[entry["tag"]] = tags.get(entry["tag"], 0) + 1
    assert len(entries) == 553
    assert tags == {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100,
                    "color_attr": 100}
    # Detections that realise each prompt exactly make every image correct.
    for entry in entries.values():
        objects, x = {}, 0
        for clause in entry["include"]:
            boxes = []
            for _ in range(clause["count"]):
                boxes.append(_box(x, 0, x + 10, 10, 0.95))
                x += 100
            objects[clause["class"]] = boxes
        if entry["tag"] == "position":  # place clause 1 relative to clause 0 as asked
            relation = entry["include"][1]["position"][0]
            offsets = {"left of": (-300, 0), "right of": (300, 0), "above": (0, -300), "below": (0, 300)}
            dx, dy = offsets[relation]
            objects[entry["include"][1]["class"]] = [_box(dx, dy, dx + 10, dy + 10, 0.95)]
        wanted = {c["class"]: c.get("color") for c in entry["include"]}
        assert evaluate_image(entry, objects, lambda found, name, w=wanted: [w[name]] * len(found))[0], entry


# --------------------------------------------------------------------------- DPG-Bench


DPG_ROWS = [  # item_id, text, proposition_id, dependency, tuple, question
    ("p1", "a red cat on a mat", 1, "0", "entity - whole (cat)", "Is there a cat?"),
    ("p1", "a red cat on a mat", 2, "1", "attribute - color (cat, red)", "Is the cat red?"),
    ("p1", "a red cat on a mat", 3, "0", "entity - whole (mat)", "Is there a mat?"),
    ("p1", "a red cat on a mat", 4, "1,3", "relation - spatial (cat, mat, on)", "Is the cat on the mat?"),
    ("p2", "a tall tower", 2, "1", "attribute - scale (tower, tall)", "Is the tower tall?"),
    ("p2", "a tall tower", 1, "0", "entity - whole (tower)", "Is there a tower?"),
]


@pytest.fixture
def dpg_csv(tmp_path: Path) -> Path:
    return write_dpg_csv(tmp_path / "dpg_bench.csv", DPG_ROWS)


def test_dpg_dependency_zeroing_is_transitive_and_order_free() -> None:
    questions = (Question(3, (2,), "c", "q3"), Question(1, (), "a", "q1"), Question(2, (1,), "b", "q2"))
    scores = question_scores(questions, {1: "no", 2: "yes", 3: " YES "})
    assert scores == {1: 0.0, 2: 0.0, 3: 0.0}  # 1 is "no" → 2 zeroed → 3 zeroed
    assert question_scores(questions, {1: "yes", 2: "yes", 3: "yes"}) == {1: 1.0, 2: 1.0, 3: 1.0}
    assert question_scores(questions, {1: "yes", 2: "yes, it is", 3: "yes"})[3] == 0.0  # only "yes" counts


def test_dpg_scores_and_categories_after_zeroing_over_all_images(dpg_csv: Path) -> None:
    """The `corrected` protocol (see tests/unit/test_dpg_protocols.py for `ella`)."""
    prompts = read_questions(dpg_csv)
    cat = prompts["p1"]
    assert cat.text == "a red cat on a mat" and [q.id for q in prompts["p2"].questions] == [2, 1]
    tally = DPGTally()
    # Image A: no cat, but "red" and "on the mat" answered yes; image B: everything right.
    answers_a, answers_b = {1: "no", 2: "yes", 3: "yes", 4: "yes"}, {1: "yes", 2: "yes", 3: "yes", 4: "yes"}
    image_a, image_b = question_scores(cat.questions, answers_a), question_scores(cat.questions, answers_b)
    assert image_a == {1: 0.0, 2: 0.0, 3: 1.0, 4: 0.0} and image_b == dict.fromkeys((1, 2, 3, 4), 1.0)
    tally.add(cat, ImageResult(0, image_a, {1: 0.0, 2: 1.0, 3: 1.0, 4: 1.0}))
    tally.add(cat, ImageResult(1, image_b, image_b))
    tower = prompts["p2"]
    tally.add(tower, ImageResult(0, question_scores(tower.questions, {1: "yes", 2: "no"}), {1: 1.0, 2: 0.0}))
    summary = tally.summary("corrected")
    assert summary.score == pytest.approx(100 * ((0.25 + 1.0) / 2 + 0.5) / 2)
    # After zeroing, over both images: "attribute - color" = (0 + 1) / 2, not the raw last-crop 1.0.
    assert summary.l2 == {"attribute - color": 50.0, "attribute - scale": 0.0, "entity - whole": 80.0,
                          "relation - spatial": 50.0}
    assert summary.l1 == pytest.approx({"attribute": 100 / 3, "entity": 80.0, "relation": 50.0})


def test_dpg_metric_through_a_plug_in_backend(dpg_csv: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "vqa.json"
    script.write_text(json.dumps({"10": ["Is the cat red?", "Is there a mat?", "Is the cat on the mat?"],
                                  "20": [q for *_, q in DPG_ROWS], "30": ["Is there a tower?"]}))
    monkeypatch.setenv("DECODERBENCH_TEST_VQA_SCRIPT", str(script))
    metric = DPGBench(DPGBench.Params(questions=str(dpg_csv), backend="scripted", protocol="corrected"))
    metric.load(torch.device("cpu"))
    contexts = [_context("a0", "a red cat on a mat", 0), _context("a1", "a red cat on a mat", 1),
                _context("b0", "a tall tower"), _context("x", "something else")]
    metric.update(["a0", "a1", "b0", "x"], _solid(10, 20, 30, 40), None, contexts)
    values = metric.compute()
    assert values.per_key == {"a0": 25.0, "a1": 100.0, "b0": 50.0}
    assert values.aggregate == pytest.approx(100 * ((0.25 + 1.0) / 2 + 0.5) / 2)
    assert values.aggregate_details["l2_categories"]["attribute - color"] == 50.0
    assert values.aggregate_details["images_per_prompt"] == [1, 2]
    assert values.aggregate_details["protocol"] == "corrected"
    assert values.details["a0"]["question_scores"] == {"1": 0.0, "2": 0.0, "3": 1.0, "4": 0.0}
    assert list(values.not_applicable) == ["x"]
