"""The local VLM judge through transformers' real API, on a tiny random LLaVA saved to disk.

The checkpoint is built from configs (no hub): a 1-layer CLIP vision tower, a
1-layer Llama, a word-level tokenizer and a chat template, saved with
save_pretrained and loaded back by the backend with AutoProcessor /
AutoModelForImageTextToText.from_pretrained, exactly as a user's checkpoint.
Its lm_head is all zeros, so greedy decoding always emits vocabulary id 0:
the tests choose what that token is (a valid JSON answer, or junk).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch
from judge_runs import judge_records, make_run
from tiny_models import tiny_llava

from harness.images import write_png
from harness.judge.budget import Budget, Pricing
from harness.judge.config import JudgeConfig
from harness.judge.local_vlm import LocalVLMBackend
from harness.judge.media import JudgeImage, load_for_judge
from harness.judge.phase import JUDGE_JSON, run_judge
from harness.judge.prompts import BUILTIN_CRITERIA, build_prompt
from harness.judge.protocol import BackendUnavailable
from harness.judge.retry import BackoffPolicy, StopSignal, execute
from harness.progress import SilentReporter

transformers = pytest.importorskip("transformers")
ANSWER = '{"verdict":"B","reason":"finer-texture"}'


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm")
    return {"answers": tiny_llava(root / "answers", ANSWER),
            "babbles": tiny_llava(root / "babbles", "blah")}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, JudgeImage]:
    root = tmp_path_factory.mktemp("pictures")
    found = {}
    for name, value in (("first", 40), ("second", 200)):
        write_png(torch.full((3, 30, 40), value, dtype=torch.uint8), root / f"{name}.png")
        found[name] = load_for_judge(root / f"{name}.png", 1024)
    return found


def _config(model: Path | str, **extra) -> JudgeConfig:
    return JudgeConfig(backend="local", model=str(model), device="cpu", dtype="float32", max_output_tokens=16,
                       **extra)


class _Spy:
    """Wraps model.generate to see what the processor fed the model."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, []
        self.generate = model.generate
        model.generate = self

    def __call__(self, **inputs):
        self.calls.append({k: v.clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)})
        return self.generate(**inputs)


def _ask(backend: LocalVLMBackend, prompt):
    config = backend.config
    return execute(prompt, backend, Budget(10, 1.0), Pricing.of(config, backend.priced),
                   BackoffPolicy(0, 0.0, 0.0), StopSignal())


def test_a_local_checkpoint_judges_through_the_chat_template(checkpoints, pictures) -> None:
    backend = LocalVLMBackend.load(_config(checkpoints["answers"]))
    assert backend.priced is False and backend.max_concurrency == 1
    spy = _Spy(backend.model)
    prompt = build_prompt(BUILTIN_CRITERIA["faithfulness"], pictures["first"], pictures["second"],
                          pictures["first"], "a grey card")
    outcome = _ask(backend, prompt)
    assert (outcome.status, outcome.verdict, outcome.attempts) == ("ok", "B", 1)
    assert outcome.reason == "finer-texture"
    assert outcome.cost_usd == 0.0
    fed = spy.calls[0]
    image_token = backend.processor.tokenizer.convert_tokens_to_ids("<image>")
    assert fed["pixel_values"].shape[:2] == (3, 3)  # reference, Image A, Image B
    assert int((fed["input_ids"] == image_token).sum()) == 3 * 4  # 2×2 patches per image
    # The pixels reach the model in reading order: dark, bright, dark... the reference comes first.
    means = fed["pixel_values"].mean(dim=(1, 2, 3))
    assert means[0] == pytest.approx(means[1]) and means[2] > means[1]


def test_a_babbling_checkpoint_is_retried_once_then_invalid(checkpoints, pictures) -> None:
    backend = LocalVLMBackend.load(_config(checkpoints["babbles"]))
    spy = _Spy(backend.model)
    prompt = build_prompt(BUILTIN_CRITERIA["overall_quality"], pictures["first"], pictures["second"],
                          None, None)
    outcome = _ask(backend, prompt)
    assert (outcome.status, outcome.verdict, outcome.attempts) == ("invalid", None, 2)
    assert outcome.reason.startswith("no JSON object in the answer: blah blah")
    assert len(spy.calls) == 2 and spy.calls[1]["input_ids"].shape[1] > spy.calls[0]["input_ids"].shape[1]
    first, retry = (backend.processor.batch_decode(call["input_ids"])[0] for call in spy.calls)
    assert "blah" in retry and "blah" not in first  # the retry's correction quotes the bad answer


def test_missing_weights_are_unavailable_fast_with_how_to_get_them(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llava"}')  # no processor, no weights
    cases = [(tmp_path / "nowhere", "has no config.json"),
             ("someone/absent-vlm-7b", "config.json is not in the Hugging Face cache")]
    for model, words in cases:
        began = time.perf_counter()
        with pytest.raises(BackendUnavailable, match=words) as info:
            LocalVLMBackend.load(_config(model))
        assert time.perf_counter() - began < 1.0
    assert "hf download someone/absent-vlm-7b" in str(info.value)
    with pytest.raises(BackendUnavailable, match=re.escape(f"cannot load judge model '{broken}': OSError")):
        LocalVLMBackend.load(_config(broken))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_cuda_requested_without_a_gpu_is_unavailable(checkpoints) -> None:
    config = JudgeConfig(backend="local", model=str(checkpoints["answers"]), device="cuda")
    with pytest.raises(BackendUnavailable, match=re.escape('set judge.device = "cpu"')):
        LocalVLMBackend.load(config)


def test_the_judge_phase_runs_a_local_checkpoint(checkpoints, tmp_path, write_suite, image_folder) -> None:
    """The always-"B" checkpoint contradicts itself across orders: every pair is a tie, inconsistent."""
    judge = f'backend = "local"\nmodel = "{checkpoints["answers"]}"\ndevice = "cpu"\ndtype = "float32"\n'
    suite, store = make_run(tmp_path / "run", write_suite, image_folder, judge + "max_output_tokens = 16\n")
    outcome = run_judge(suite, store, tmp_path / "cache", SilentReporter())
    assert outcome.counts == {"ok": 4} and outcome.spent_usd == 0.0
    verdicts = {(r["case"], r["order"]): r["verdict"] for r in judge_records(store)}
    assert verdicts == {(case, order): "b" if order == "ab" else "a"
                        for case in ("case0", "case1") for order in ("ab", "ba")}
    entry = json.loads((store.root / JUDGE_JSON).read_text())["criteria"]["overall_quality"]
    assert entry["judge_model"] == str(checkpoints["answers"]) and entry["consistency_rate"] == 0.0
    assert entry["pairs"][0]["ties"] == 2 and entry["pairs"][0]["inconsistent"] == 2
