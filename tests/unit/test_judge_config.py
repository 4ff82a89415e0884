"""The [judge] suite table, prompts, answer parsing and the resize policy."""

from __future__ import annotations

import pytest
import torch
from helpers import decoder_tables, suite_text

from harness.images import write_png
from harness.judge.media import JudgeImage, fit_size, load_for_judge
from harness.judge.prompts import (
    BUILTIN_CRITERIA,
    Criterion,
    MalformedAnswer,
    build_prompt,
    parse_answer,
    template_version,
)
from harness.judge.retry import BackoffPolicy
from harness.suite import SuiteError, load_suite

THREE = decoder_tables('name = "nearest"', 'name = "bilinear"', 'name = "lanczos"')


def _suite(write_suite, image_folder, judge: str):
    return load_suite(write_suite(suite_text(image_folder, THREE) + "\n[judge]\n" + judge))


def _problems(write_suite, image_folder, judge: str) -> str:
    with pytest.raises(SuiteError) as info:
        _suite(write_suite, image_folder, judge)
    return str(info.value)


def test_judge_table_defaults_and_pairs(write_suite, image_folder) -> None:
    suite = _suite(write_suite, image_folder, 'model = "gemini-3-flash-preview"\n')
    judge = suite.model.judge
    assert judge is not None and judge.backend == "gemini" and judge.max_side == 1024
    ids = [d.id for d in suite.model.decoder]
    assert judge.pair_list(ids) == [("nearest", "bilinear"), ("nearest", "lanczos"), ("bilinear", "lanczos")]
    assert [c.name for c in judge.criterion_list()] == ["overall_quality"]
    versus = _suite(write_suite, image_folder, 'model = "m"\nreference = "lanczos"\n').model.judge
    assert versus is not None and versus.pair_list(ids) == [("nearest", "lanczos"), ("bilinear", "lanczos")]
    faces = '{name = "faces", instruction = "Which image renders faces better?"}'
    custom = _suite(write_suite, image_folder, 'model = "m"\npairs = [["lanczos", "nearest"]]\n'
                    f'criteria = ["text_legibility", {faces}]\n')
    assert custom.model.judge is not None
    assert [c.name for c in custom.model.judge.criterion_list()] == ["text_legibility", "faces"]
    assert custom.model.judge.pair_list(ids) == [("lanczos", "nearest")]


def test_suites_without_judge_dump_and_hash_as_before(write_suite, image_folder) -> None:
    plain = load_suite(write_suite(suite_text(image_folder, THREE)))
    assert "judge" not in plain.model.model_dump(mode="json")
    judged = _suite(write_suite, image_folder, 'model = "m"\n')
    assert judged.model.model_dump(mode="json")["judge"]["model"] == "m"
    assert judged.sha256 != plain.sha256


@pytest.mark.parametrize(("judge", "message"), [
    ('model = "m"\nconcurency = 2\n',
     "judge.concurency: unknown key 'concurency' (did you mean 'concurrency'?)"),
    ('concurrency = 2\n', "judge.model: required key is missing"),
    ('model = "m"\npairs = [["nearest", "esrgan"]]\n', "judge: unknown decoder id(s) ['esrgan']"),
    ('model = "m"\nreference = "pid"\n', "judge: unknown decoder id(s) ['pid']"),
    ('model = "m"\nreference = "lanczos"\npairs = [["nearest", "bilinear"]]\n', "either pairs or reference"),
    ('model = "m"\npairs = [["nearest", "nearest"]]\n', "a pair needs two different decoders"),
    ('model = "m"\ncriteria = ["sharpness"]\n', "unknown criterion 'sharpness'"),
    ('model = "m"\nbackend = "openai"\n', "judge.backend: expected 'gemini' or 'local'"),
])
def test_judge_table_problems_name_the_key(write_suite, image_folder, judge: str, message: str) -> None:
    assert message in _problems(write_suite, image_folder, judge)


def test_answers_are_validated() -> None:
    assert parse_answer('{"verdict": "B", "reason": "crisper"}').verdict == "B"
    assert parse_answer('```json\n{"verdict": "tie", "reason": "same"}\n```').verdict == "tie"
    assert parse_answer('Sure! {"verdict": "a", "reason": " sharper edges "}').reason == "sharper edges"
    for text, words in [("", "empty answer"), ("A is better", "no JSON object"),
                        ('{"verdict": "C", "reason": "x"}', "verdict must be one of"),
                        ('{"verdict": "A"}', "no string 'reason'"), ("[1, 2]", "no JSON object")]:
        with pytest.raises(MalformedAnswer, match=words):
            parse_answer(text)


def test_prompt_layout_and_template_version() -> None:
    image = JudgeImage(b"png", (8, 8))
    quality = BUILTIN_CRITERIA["overall_quality"]
    prompt = build_prompt(quality, image, image, None, 'a "red" fox')
    assert prompt.parts[1:] == ("Image A:", image, "Image B:", image, prompt.parts[-1])
    assert quality.instruction in prompt.parts[0] and '"a \\"red\\" fox"' in prompt.parts[0]
    faithful = build_prompt(BUILTIN_CRITERIA["faithfulness"], image, image, image, None)
    assert faithful.parts[1:3] == ("Reference image:", image) and faithful.image_count == 3
    with pytest.raises(ValueError, match="needs the case's reference"):
        build_prompt(BUILTIN_CRITERIA["faithfulness"], image, image, None, None)
    edited = Criterion("overall_quality", quality.instruction + " Ignore colour.")
    assert template_version(edited) != template_version(quality)
    assert template_version(quality).startswith("1-")


def test_resize_policy_keeps_aspect_and_never_upscales(tmp_path) -> None:
    assert fit_size(2048, 1536, 1024) == (1024, 768)
    assert fit_size(100, 3000, 1024) == (34, 1024)
    assert fit_size(512, 256, 1024) == (512, 256)
    path = tmp_path / "x.png"
    write_png(torch.full((3, 40, 100), 200, dtype=torch.uint8), path)
    image = load_for_judge(path, 50)
    assert image.size == (50, 20) and image.pil().size == (50, 20)
    assert image.pil().getpixel((10, 10)) == (200, 200, 200)


def test_backoff_grows_with_jitter_and_honours_retry_after() -> None:
    policy = BackoffPolicy(retries=5, initial_s=1.0, max_s=8.0)
    for index, step in enumerate([1.0, 2.0, 4.0, 8.0, 8.0]):
        delays = [policy.delay(index) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays) and len(set(delays)) > 100
    assert policy.delay(0, retry_after_s=5.0) >= 5.0
    assert policy.delay(0, retry_after_s=100.0) <= 8.0
