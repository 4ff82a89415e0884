"""The pairwise judge end to end through the real google-genai client and a local Gemini REST server.

The client is google-genai's `genai.Client` pointed at tests/support/fake_gemini.py via
`HttpOptions(base_url=...)` (googleapis/python-genai, google/genai/types.py
HttpOptions and google/genai/_api_client.py at commit
79f0d7469288c9273adba217932657ad792b597c, checked against the installed 3.4.0).
Runs are hand-built run directories (decode records + PNGs), so no decoder runs
except in the last test.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import judge_runs
import numpy as np
import pytest

pytest.importorskip("google.genai", reason="the judge extra (google-genai) is not installed")
from fake_gemini import FakeGemini, labelled_images, sharpness
from helpers import cli, decoder_tables, suite_text
from judge_runs import judge_records, texture
from PIL import Image

from decoders.resample import resize
from harness import images
from harness.cli.judge import judge_run
from harness.judge.aggregate import wilson_interval
from harness.judge.phase import JUDGE_JSON, run_judge
from harness.judge.prompts import ANSWER_SCHEMA, BUILTIN_CRITERIA, CORRECTION
from harness.progress import SilentReporter
from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.store import RunStore
from harness.suite import Suite, load_suite

KEY = "AIzaTEST-not-a-real-key-7c1e5b"
FAST = "retries = 2\nbackoff_initial_s = 0.01\nbackoff_max_s = 0.05\ntimeout_s = 5\n"


@pytest.fixture
def gemini(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with FakeGemini() as server:
        yield server


def _png_pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def make_run(root: Path, write_suite, image_folder: Path, base_url: str, judge: str, **options
             ) -> tuple[Suite, RunStore]:
    gemini = f'model = "gemini-test"\nbase_url = "{base_url}"\n'
    return judge_runs.make_run(root, write_suite, image_folder, gemini + judge, **options)


def test_requests_carry_images_criterion_schema_and_both_orders(gemini, tmp_path, write_suite,
                                                                image_folder) -> None:
    judge = 'criteria = ["overall_quality", "faithfulness"]\nmax_side = 32\nconcurrency = 2\n'
    judge += 'thinking_level = "low"\ntemperature = 0.0\n' + FAST
    suite, store = make_run(tmp_path / "run", write_suite, image_folder, gemini.base_url, judge)
    outcome = run_judge(suite, store, tmp_path / "cache", SilentReporter())
    assert outcome.counts == {"ok": 8} and outcome.cached == 0

    assert len(gemini.requests) == 8  # 2 cases × 1 pair × 2 criteria × 2 orders
    expected_sharp = {}
    for i in range(2):  # what the judge must see: the stored output, Lanczos-downscaled to max side 32
        small = resize(images.to_float(texture(i))[None], (32, 27), "lanczos")[0]
        expected_sharp[i] = images.quantize(small).permute(1, 2, 0).numpy()
    shown: dict[tuple[str, str], list[tuple[bytes, bytes]]] = {}
    for request in gemini.requests:
        assert request["path"].endswith("/models/gemini-test:generateContent")
        assert request["headers"]["x-goog-api-key"] == KEY
        body = request["body"]
        config = body["generationConfig"]
        assert config["responseMimeType"] == "application/json"
        assert config["responseJsonSchema"] == ANSWER_SCHEMA
        assert config["temperature"] == 0.0 and config["maxOutputTokens"] == 2048
        thinking = config["thinkingConfig"]  # proto JSON takes either spelling; this client sends snake_case
        assert thinking.get("thinkingLevel", thinking.get("thinking_level")) == "LOW"
        assert config["candidateCount"] == 1
        prompt = " ".join(p["text"] for p in body["contents"][0]["parts"] if "text" in p)
        criterion = next(c for c in ("overall_quality", "faithfulness")
                         if BUILTIN_CRITERIA[c].instruction in prompt)
        case = next(i for i in range(2) if f'"caption number {i}"' in prompt)
        pictures = labelled_images(body)
        assert set(pictures) == ({"Image A:", "Image B:", "Reference image:"} if criterion == "faithfulness"
                                 else {"Image A:", "Image B:"})
        assert all(_png_pixels(p).shape == (27, 32, 3) for p in pictures.values())
        sharp = max(pictures["Image A:"], pictures["Image B:"], key=sharpness)
        np.testing.assert_array_equal(_png_pixels(sharp), expected_sharp[case])
        shown.setdefault((f"case{case}", criterion), []).append((pictures["Image A:"], pictures["Image B:"]))
    for pairs in shown.values():  # both orders: the second request shows the first one's images swapped
        assert len(pairs) == 2 and pairs[0] == pairs[1][::-1] and pairs[0][0] != pairs[0][1]

    records = judge_records(store)
    assert len(records) == 8
    for record in records:
        assert record["status"] == "ok" and record["verdict"] == "a" and not record["cached"]
        assert (record["a"], record["b"]) == ("sharp", "blurry") and record["judge_model"] == "gemini-test"
        assert record["calls"] == 1 and record["cost_usd"] == pytest.approx((1000 * 0.5 + 20 * 3) / 1e6)
    criteria = ("overall_quality", "faithfulness")
    assert {(r["case"], r["order"], r["criterion"]) for r in records} == {
        (c, o, k) for c in ("case0", "case1") for o in ("ab", "ba") for k in criteria}

    summary = json.loads((store.root / JUDGE_JSON).read_text())
    entry = summary["criteria"]["overall_quality"]
    assert entry["judge_model"] == "gemini-test" and entry["consistency_rate"] == 1.0
    pair = entry["pairs"][0]
    assert {k: pair[k] for k in ("a", "b", "n", "wins_a", "wins_b", "ties", "inconsistent")} == {
        "a": "sharp", "b": "blurry", "n": 2, "wins_a": 2, "wins_b": 0, "ties": 0, "inconsistent": 0}
    assert pair["win_rate_a"] == 1.0 and pair["wilson95_a"] == pytest.approx(list(wilson_interval(2, 2)))
    strengths = {row["decoder"]: row["strength"] for row in entry["bradley_terry"]}
    assert strengths["sharp"] > 0 > strengths["blurry"]
    manifest = store.manifest()
    assert manifest["judge"]["resize"]["max_side"] == 32 and manifest["judge"]["spent"]["calls"] == 8


def test_a_second_run_is_answered_from_the_cache(gemini, tmp_path, write_suite, image_folder) -> None:
    suite, store = make_run(tmp_path / "first", write_suite, image_folder, gemini.base_url, FAST)
    plan = run_judge(suite, store, tmp_path / "cache", SilentReporter(), dry_run=True)
    images_and_output = (2 * 1120 * 0.50 + 2048 * 3.00) / 1e6  # per request, before the prompt text
    assert plan.counts == {"to_ask": 4} and gemini.requests == [] and judge_records(store) == []
    assert 4 * images_and_output < plan.estimate_usd < 4 * (images_and_output + 300 * 0.50 / 1e6)
    first = run_judge(suite, store, tmp_path / "cache", SilentReporter())
    assert first.counts == {"ok": 4} and len(gemini.requests) == 4
    # Resuming the same run: every request is finished; nothing is asked or recorded again.
    again = run_judge(suite, store, tmp_path / "cache", SilentReporter())
    assert sum(again.counts.values()) == 0 and len(judge_records(store)) == 4
    # A new run with byte-identical outputs: answered from disk, the server sees no request.
    suite2, store2 = make_run(tmp_path / "second", write_suite, image_folder, gemini.base_url, FAST)
    second = run_judge(suite2, store2, tmp_path / "cache", SilentReporter())
    assert second.counts == {"ok": 4} and second.cached == 4 and len(gemini.requests) == 4
    cached = judge_records(store2)
    assert all(r["cached"] and r["calls"] == 0 and r["cost_usd"] == 0 for r in cached)
    assert sorted((r["case"], r["order"], r["verdict"]) for r in cached) == sorted(
        (r["case"], r["order"], r["verdict"]) for r in judge_records(store))
    # The resize policy is part of the question: another max_side asks again.
    suite3, store3 = make_run(tmp_path / "third", write_suite, image_folder, gemini.base_url,
                              FAST + "max_side = 64\n")
    assert run_judge(suite3, store3, tmp_path / "cache", SilentReporter()).cached == 0
    # A damaged cache entry is a miss, answered again and rewritten.
    entries = sorted((tmp_path / "cache" / "judge").rglob("*.json"))
    assert len(entries) == 8
    entries[0].write_text('{"status": "ok"')
    suite4, store4 = make_run(tmp_path / "fourth", write_suite, image_folder, gemini.base_url, FAST)
    suite5, store5 = make_run(tmp_path / "fifth", write_suite, image_folder, gemini.base_url,
                              FAST + "max_side = 64\n")
    asked = len(gemini.requests)
    cached = [run_judge(s, st, tmp_path / "cache", SilentReporter()).cached
              for s, st in ((suite4, store4), (suite5, store5))]
    assert sorted(cached) == [3, 4] and len(gemini.requests) == asked + 1
    assert json.loads(entries[0].read_text())["status"] == "ok"


def test_one_question_is_asked_once_per_run(gemini, tmp_path, write_suite, image_folder) -> None:
    suite, store = make_run(tmp_path / "run", write_suite, image_folder, gemini.base_url, FAST, n_cases=3,
                            repeated=True)
    outcome = run_judge(suite, store, tmp_path / "cache", SilentReporter())
    assert outcome.counts == {"ok": 6} and len(gemini.requests) == 2 and outcome.cached == 4
    records = judge_records(store)
    assert sum(r["calls"] for r in records) == 2 and {r["verdict"] for r in records} == {"a"}


FAULTS = [  # scripted answers for the first request ("ab"), then its end state
    (["429", "ok"], "ok", None, 2, "A "),
    (["timeout"] * 3, "failed", "timeout", 3, "no answer within 0.3 s (gave up after 3 call(s))"),
    (["500"] * 3, "failed", "server_error", 3, "HTTP 500 INTERNAL: internal error"),
    (["500", "500", "ok"], "ok", None, 3, "A "),
    (["malformed", "malformed"], "invalid", None, 2, "no JSON object in the answer: I think A looks better."),
    (["malformed", "ok"], "ok", None, 2, "A "),
    (["bad-verdict", "bad-verdict"], "invalid", None, 2, "verdict must be one of A, B, tie"),
    (["empty", "empty"], "invalid", None, 2, "empty answer (finish: SAFETY)"),
    (["403"], "failed", "auth", 1, "HTTP 403 PERMISSION_DENIED: API key not valid"),
]


@pytest.mark.e2e
@pytest.mark.parametrize(("faults", "status", "failure", "calls", "words"), FAULTS,
                         ids=["429-then-ok", "timeout", "500", "500-then-ok", "malformed",
                              "malformed-then-ok", "bad-verdict", "empty-candidate", "403"])
def test_faults_end_in_the_right_recorded_state(gemini, tmp_path, write_suite, image_folder, faults, status,
                                                failure, calls, words) -> None:
    gemini.slow_s = 1.0
    gemini.faults.extend(faults)
    judge = "concurrency = 1\n" + FAST.replace("timeout_s = 5", "timeout_s = 0.3")
    suite, store = make_run(tmp_path / "run", write_suite, image_folder, gemini.base_url, judge, n_cases=1)
    run_judge(suite, store, tmp_path / "cache", SilentReporter())
    records = {r["order"]: r for r in judge_records(store)}
    first, second = records["ab"], records["ba"]
    assert (first["status"], first.get("failure"), first["calls"]) == (status, failure, calls), first
    assert words in first["reason"]
    assert (first["verdict"] == "a") == (status == "ok") and (first["verdict"] is None) == (status != "ok")
    if faults[0] == "403":  # a refused key stops what was not sent yet
        assert second["status"] == "failed" and second["calls"] == 0 and len(gemini.requests) == 1
        assert second["reason"].startswith("not sent: an earlier request failed: HTTP 403")
    else:
        assert second["status"] == "ok" and second["verdict"] == "a"
        assert len(gemini.requests) == calls + 1
    if faults[0] in ("malformed", "bad-verdict", "empty"):  # the one retry says what was wrong
        retry = gemini.requests[1]["body"]["contents"][0]["parts"][-1]["text"]
        assert retry.startswith(CORRECTION.split("(")[0])
    if status == "invalid":
        assert first["calls"] == 2 and first["cost_usd"] > 0  # both answers were paid for


def test_a_429_retry_delay_is_honoured(gemini, tmp_path, write_suite, image_folder) -> None:
    gemini.faults.append("429-retry-info")  # RetryInfo asks for 0.3 s; our own back-off is ≤ 0.05 s
    judge = "concurrency = 1\nretries = 2\nbackoff_initial_s = 0.01\nbackoff_max_s = 1.0\n"
    suite, store = make_run(tmp_path / "run", write_suite, image_folder, gemini.base_url, judge, n_cases=1)
    run_judge(suite, store, tmp_path / "cache", SilentReporter())
    assert [r["status"] for r in judge_records(store)] == ["ok", "ok"]
    assert gemini.requests[1]["time"] - gemini.requests[0]["time"] >= 0.3


def test_the_api_key_is_never_written(gemini, tmp_path, write_suite, image_folder) -> None:
    gemini.faults.extend(["echo-key"] * 3)
    suite, store = make_run(tmp_path / "run", write_suite, image_folder, gemini.base_url,
                            "concurrency = 1\n" + FAST, n_cases=1)
    run_judge(suite, store, tmp_path / "cache", SilentReporter())
    echoed = [r for r in judge_records(store) if r["status"] == "failed"]
    assert len(echoed) == 1 and "key [redacted] broke me" in echoed[0]["reason"]
    written = [p for p in tmp_path.rglob("*") if p.is_file()]  # run dir, verdict cache, suite
    assert any(p.name == "results.jsonl" for p in written) and any("judge" in p.parts for p in written)
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path


def test_request_and_cost_caps_stop_sending(gemini, tmp_path, write_suite, image_folder) -> None:
    three = ("sharp", "blurry", "blurrier")  # 3 pairs × 2 orders = 6 requests
    suite, store = make_run(tmp_path / "run", write_suite, image_folder, gemini.base_url,
                            "concurrency = 1\nmax_requests = 4\n" + FAST, decoders=three, n_cases=1)
    outcome = run_judge(suite, store, tmp_path / "cache", SilentReporter())
    assert outcome.counts == {"ok": 4, "failed": 2} and len(gemini.requests) == 4
    refused = [r for r in judge_records(store) if r["status"] == "failed"]
    assert all(r["reason"] == "not sent: max_requests (4) reached" and r["calls"] == 0 for r in refused)
    # The cap is per run: resuming does not grant four more calls; the refused ones are recorded again.
    run_judge(suite, store, tmp_path / "cache", SilentReporter())
    assert len(gemini.requests) == 4 and len(judge_records(store)) == 8

    cap = 0.01  # one worst-case estimate is ≈ $0.0074; an answer costs $0.00056
    suite, store = make_run(tmp_path / "capped", write_suite, image_folder, gemini.base_url,
                            f"concurrency = 1\ncost_cap_usd = {cap}\n" + FAST, decoders=three, n_cases=1)
    gemini.requests.clear()
    run_judge(suite, store, tmp_path / "other-cache", SilentReporter())
    records = judge_records(store)
    sent = [r for r in records if r["calls"]]
    assert 0 < len(sent) < 6 and len(gemini.requests) == len(sent)
    assert sum(r["cost_usd"] for r in records) <= cap
    assert all(r["reason"].startswith("not sent: cost cap $0.01 reached") for r in records if not r["calls"])


def test_concurrency_is_limited(tmp_path, write_suite, image_folder, monkeypatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with FakeGemini(delay_s=0.2) as server:
        suite, store = make_run(tmp_path / "run", write_suite, image_folder, server.base_url,
                                "concurrency = 2\n" + FAST, decoders=("sharp", "blurry", "blurrier"),
                                n_cases=1)
        run_judge(suite, store, tmp_path / "cache", SilentReporter())
    assert len(server.requests) == 6 and server.max_in_flight == 2


def test_a_position_biased_judge_is_caught(gemini, tmp_path, write_suite, image_folder) -> None:
    gemini.faults.extend(["always-a"] * 4)
    suite, store = make_run(tmp_path / "run", write_suite, image_folder, gemini.base_url, FAST)
    run_judge(suite, store, tmp_path / "cache", SilentReporter())
    assert sorted(r["verdict"] for r in judge_records(store)) == ["a", "a", "b", "b"]
    entry = json.loads((store.root / JUDGE_JSON).read_text())["criteria"]["overall_quality"]
    assert entry["consistency_rate"] == 0.0
    assert {k: entry["pairs"][0][k] for k in ("n", "wins_a", "wins_b", "ties", "inconsistent")} == {
        "n": 2, "wins_a": 0, "wins_b": 0, "ties": 2, "inconsistent": 2}


def test_without_a_key_requests_fail_as_unavailable_but_cached_ones_need_none(
        gemini, tmp_path, write_suite, image_folder, monkeypatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    suite, store = make_run(tmp_path / "nokey", write_suite, image_folder, gemini.base_url, FAST)
    began = time.perf_counter()
    outcome = run_judge(suite, store, tmp_path / "cache", SilentReporter())
    assert time.perf_counter() - began < 1.0 and gemini.requests == []
    assert outcome.counts == {"failed": 4}
    assert {r["failure"] for r in judge_records(store)} == {"unavailable"}
    assert any("set GEMINI_API_KEY (or GOOGLE_API_KEY)" in note for note in outcome.notes)
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)  # the failed requests are asked again once a key is there
    assert run_judge(suite, store, tmp_path / "cache", SilentReporter()).counts == {"ok": 4}
    monkeypatch.delenv("GOOGLE_API_KEY")
    suite2, store2 = make_run(tmp_path / "cached", write_suite, image_folder, gemini.base_url, FAST)
    assert run_judge(suite2, store2, tmp_path / "cache", SilentReporter()).counts == {"ok": 4}
    summary = json.loads((store.root / JUDGE_JSON).read_text())["criteria"]["overall_quality"]
    assert summary["pairs"][0]["n"] == 2 and summary["requests"] == {"ok": 4, "invalid": 0, "failed": 0}


@pytest.mark.e2e
def test_runner_judges_after_metrics_and_the_verb_rejudges(gemini, tmp_path, write_suite,
                                                           image_folder) -> None:
    text = suite_text(image_folder, decoder_tables('name = "nearest"', 'name = "bilinear"'))
    text += f'\n[judge]\nmodel = "gemini-test"\nbase_url = "{gemini.base_url}"\n' + FAST
    suite = load_suite(write_suite(text))
    outcome = Runner.new(suite, tmp_path / "run", TensorCache(tmp_path / "cache")).run()
    store = RunStore.open(outcome.run_dir)
    kinds = [r["kind"] for r in store.records()[0]]
    assert kinds.count("judge") == 6 and kinds.index("judge") > max(i for i, k in enumerate(kinds)
                                                                    if k == "metric")
    manifest = store.manifest()
    assert "judge_s" in manifest["phases"][-1] and manifest["judge"]["model"] == "gemini-test"
    assert len(gemini.requests) == 6

    override = write_suite('[judge]\ncriteria = ["overall_quality", "detail_realism"]\n', "override.toml")
    result = cli("judge", str(outcome.run_dir), "--suite-override", str(override), "-q")
    assert result.returncode == 0, result.stderr
    assert len(gemini.requests) == 12  # only the new criterion was asked
    assert "detail_realism" in result.stdout and "nearest" in result.stdout
    summary = json.loads((outcome.run_dir / JUDGE_JSON).read_text())
    assert set(summary["criteria"]) == {"overall_quality", "detail_realism"}
    plan = judge_run(outcome.run_dir, override, None, {"max_requests": None}, SilentReporter(), dry_run=True)
    assert plan.counts == {"to_ask": 0} and len(gemini.requests) == 12
    assert len([r for r in RunStore.open(outcome.run_dir).records()[0] if r["kind"] == "judge"]) == 12
    for path in [*outcome.run_dir.rglob("*"), *(tmp_path / "cache").rglob("*")]:  # logs, manifest, report
        assert not path.is_file() or KEY.encode() not in path.read_bytes(), path
