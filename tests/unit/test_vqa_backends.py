"""DPG-Bench's built-in VQA backends on tiny random models saved like users' checkpoints."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.metrics.base import ImageContext, MetricUnavailable
from harness.metrics.dpg import DPGBench
from harness.metrics.vqa import BlipParams, BlipVQABackend, parse_yes_no

pytest.importorskip("transformers")
WORDS = ["is", "there", "a", "cat", "dog", "red", "yes", "no", "?"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny_models import tiny_blip_vqa, tiny_llava

    root = tmp_path_factory.mktemp("vqa")
    from transformers import BlipForQuestionAnswering

    random = tiny_blip_vqa(root / "blip-random", WORDS, "yes")
    model = BlipForQuestionAnswering.from_pretrained(random)
    with torch.no_grad():  # give the decoder back an input-dependent output layer
        model.text_decoder.cls.predictions.decoder.weight.normal_(0, 1)
        model.text_decoder.cls.predictions.bias.normal_(0, 1)
    model.save_pretrained(random)
    return {"blip-random": random, "blip-yes": tiny_blip_vqa(root / "blip-yes", WORDS, "yes"),
            "vlm-yes": tiny_llava(root / "vlm-yes", "Yes,"),
            "vlm-maybe": tiny_llava(root / "vlm-maybe", "maybe")}


def test_replies_are_read_as_yes_or_no() -> None:
    assert [parse_yes_no(r) for r in ("Yes.", " no, it is not", "**Yes**", "YES", "(no)")] == \
        ["yes", "no", "yes", "yes", "no"]
    assert parse_yes_no(" Maybe. ") == "maybe." and parse_yes_no("") == ""
    assert parse_yes_no("Yesterday") == "yesterday"  # the whole first word, not a prefix


@pytest.mark.e2e
def test_blip_answers_a_batch_as_generate_answers_each_question(checkpoints) -> None:
    from transformers import BlipForQuestionAnswering, BlipProcessor

    backend = BlipVQABackend(BlipParams(model=str(checkpoints["blip-random"]), max_new_tokens=3))
    backend.load(torch.device("cpu"))
    image = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)
    questions = ["is there a cat ?", "is there a red dog", "cat"]
    answers = backend.answer(image, questions)
    model = BlipForQuestionAnswering.from_pretrained(checkpoints["blip-random"]).eval()
    processor = BlipProcessor.from_pretrained(checkpoints["blip-random"])
    expected = []
    for question in questions:
        inputs = processor(images=image, text=question, return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=3)
        expected.append(processor.decode(output[0], skip_special_tokens=True).strip())
    assert answers == expected and any(answers)
    assert backend.describe()["model"] == str(checkpoints["blip-random"])
    assert any(k.endswith("model.safetensors") for k in backend.weights())


def _dpg_csv(path: Path) -> Path:
    path.write_text("item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,"
                    "question_natural_language\n"
                    "skip,x,,1,0,,,entity - whole (x),is there x\n"
                    "p,a red cat,,1,0,,,entity - whole (cat),is there a cat ?\n"
                    "p,a red cat,,2,1,,,attribute - color (cat),is there a red cat ?\n")
    return path


@pytest.mark.parametrize(("backend", "options", "score"), [
    ("blip-vqa", {"model": "blip-yes", "max_new_tokens": 1}, 100.0),
    ("vlm", {"model": "vlm-yes", "dtype": "float32"}, 100.0),  # "Yes, Yes, ..." → "yes"
    ("vlm", {"model": "vlm-maybe", "dtype": "float32"}, 0.0),
])
def test_dpg_bench_end_to_end_through_each_backend(checkpoints, tmp_path: Path, backend: str,
                                                   options: dict, score: float) -> None:
    options = {**options, "model": str(checkpoints[options["model"]])}
    metric = DPGBench(DPGBench.Params(questions=str(_dpg_csv(tmp_path / "q.csv")), backend=backend,
                                      backend_options=options))
    metric.load(torch.device("cpu"))
    context = ImageContext("k", "p", "a red cat", 0, "g", "r", (64, 64), (64, 64))
    metric.update(["k"], torch.rand(1, 3, 64, 64), None, [context])
    values = metric.compute()
    assert values.per_key == {"k": score} and values.aggregate == score
    answers = values.details["k"]["answers"]
    assert set(answers.values()) == ({"yes"} if score else {" ".join(["maybe"] * 8)})
    assert metric.protocol()["backend"]["name"] == backend


def test_missing_vqa_models_are_unavailable_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    questions = str(_dpg_csv(tmp_path / "q.csv"))
    began = time.perf_counter()
    absent = r"DPG-Bench VQA model 'someone/absent-vl': config\.json is not in the Hugging Face cache"
    with pytest.raises(MetricUnavailable, match=absent + r".*hf download someone/absent-vl"):
        DPGBench(DPGBench.Params(questions=questions, backend="vlm",
                                 backend_options={"model": "someone/absent-vl"})).load(torch.device("cpu"))
    with pytest.raises(MetricUnavailable, match=r"missing weight file config.json .*models--Salesforce--"
                                                r"blip-vqa-base.*decoderbench weights fetch dpg_bench"):
        DPGBench(DPGBench.Params(questions=questions)).load(torch.device("cpu"))
    assert time.perf_counter() - began < 5
    with pytest.raises(MetricUnavailable, match="backend 'vlm' options: model: Field required"):
        DPGBench(DPGBench.Params.model_construct(questions=questions, backend="vlm", backend_options={},
                                                 protocol="ella")).load(torch.device("cpu"))
