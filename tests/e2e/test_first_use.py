"""Weights on first use: where the network is reachable a run fetches the lock-table files its
metrics need (from a local HTTP server here, never the real network), checked against their
sha256, with progress; offline (HF_HUB_OFFLINE=1, --offline) or unreachable, it fetches nothing
and names the skipped metrics in one line — once in `run`, once in `show`, short in the report."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import decoder_tables, invoke, suite_text

from harness.metrics import weights

ALEXNET = "alexnet-owt-7be5be79.pth"
PAYLOAD = b"not really AlexNet, but the bytes the lock table is told to expect" * 4096


class _Server:
    def __init__(self, folder: Path) -> None:
        self.requests: list[str] = []
        log = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                log.append(self.path)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / ALEXNET).write_bytes(PAYLOAD)
    served = _Server(folder)
    yield served
    served.httpd.shutdown()


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub import constants

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("DECODERBENCH_CACHE_DIR", str(tmp_path / "db"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path / "torch"


def _lock(monkeypatch: pytest.MonkeyPatch, url: str, digest: str | None = None) -> weights.WeightFile:
    """Point AlexNet's lock entry (LPIPS' backbone) at `url`, expecting PAYLOAD's sha256."""
    entries = list(weights.LOCK)
    index = next(i for i, e in enumerate(entries) if e.filename == ALEXNET)
    entries[index] = dataclasses.replace(entries[index], url=url, sha256_prefix=None,
                                         sha256=digest or hashlib.sha256(PAYLOAD).hexdigest())
    monkeypatch.setattr(weights, "LOCK", tuple(entries))
    return entries[index]


def _online(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def _suite(tmp_path: Path, image_folder: Path) -> Path:
    text = suite_text(image_folder, decoder_tables('name = "nearest"', 'name = "bilinear"'))
    path = tmp_path / "suite.toml"
    path.write_text(text.replace('metrics = ["psnr", "ssim"]', 'metrics = ["psnr", "lpips"]'))
    return path


def test_fetch_downloads_with_progress_and_checks_the_sha256(server: _Server, caches: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _online(monkeypatch)
    entry = _lock(monkeypatch, server.url(ALEXNET))
    seen: list[tuple[int, int | None]] = []
    path = weights.fetch(entry, lambda done, total: seen.append((done, total)))
    assert path == caches / "hub" / "checkpoints" / ALEXNET and path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) >= 1  # bytes so far, of the total
    assert weights.verify(entry).status == "ok"
    path.unlink()
    wrong = _lock(monkeypatch, server.url(ALEXNET), digest="0" * 64)
    with pytest.raises(weights.WeightsMissing, match="does not match the lock table"):
        weights.fetch(wrong)
    assert weights.locate(wrong) is None  # a file that does not match is removed


def test_a_run_fetches_what_its_metrics_need_before_it_starts(tmp_path: Path, image_folder: Path,
                                                               server: _Server, caches: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _online(monkeypatch)
    _lock(monkeypatch, server.url(ALEXNET))
    result = invoke("run", str(_suite(tmp_path, image_folder)), "--out", str(tmp_path / "run"), "--no-report")
    text = " ".join(result.output.split())
    assert server.requests == [f"/{ALEXNET}"]
    assert (caches / "hub" / "checkpoints" / ALEXNET).read_bytes() == PAYLOAD
    assert f"fetching: {ALEXNET} from 127.0.0.1" in text  # piped: progress lines, not a bar
    assert f"✓ {ALEXNET}:" in text and "(sha256 checked)" in text
    assert "skipped" not in text


def test_offline_runs_name_the_skipped_metrics_in_one_line(tmp_path: Path, image_folder: Path,
                                                            server: _Server, caches: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 (as in every test): nothing is fetched; one line in run, one in show, and
    the report's cells say it short (the full message stays in the manifest)."""
    _lock(monkeypatch, server.url(ALEXNET))
    run = tmp_path / "run"
    result = invoke("run", str(_suite(tmp_path, image_folder)), "--out", str(run))
    assert result.exit_code == 0, result.output
    line = ("lpips skipped: its weight files are not on this machine; `decoderbench weights fetch lpips` "
            "gets them")
    text = " ".join(result.output.split())
    assert text.count(line) == 1 and text.count("missing weight file") == 0
    assert server.requests == []
    shown = " ".join(invoke("show", str(run)).output.split())
    assert shown.count(line) == 1 and "missing weight file" not in shown
    report = run / "report"
    pages = [report / "index.html", *(report / "cases").rglob("*.html")]
    assert not any("missing weight file" in page.read_text() for page in pages)
    assert "`decoderbench weights fetch lpips` gets them" in (report / "index.html").read_text()


def test_offline_flag_and_an_unreachable_network_fetch_nothing(tmp_path: Path, image_folder: Path,
                                                                server: _Server, caches: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _online(monkeypatch)
    _lock(monkeypatch, server.url(ALEXNET))
    suite = _suite(tmp_path, image_folder)
    flagged = invoke("run", str(suite), "--offline", "--out", str(tmp_path / "a"), "--no-report")
    assert server.requests == [] and "lpips skipped" in " ".join(flagged.output.split())
    closed = ThreadingHTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there any more
    _lock(monkeypatch, f"http://127.0.0.1:{port}/{ALEXNET}")
    result = invoke("run", str(suite), "--out", str(tmp_path / "b"), "--no-report")
    unreachable = " ".join(result.output.split())
    assert f"weights: 127.0.0.1:{port} not reachable: nothing fetched from it" in unreachable
    assert "lpips skipped" in unreachable and not (caches / "hub" / "checkpoints" / ALEXNET).exists()


def test_a_resume_fetches_and_scores_again_what_was_skipped_for_want_of_weights(
        tmp_path: Path, image_folder: Path, server: _Server, caches: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A run made offline records lpips unavailable; resumed where the network is reachable, the
    files are fetched, those records move to results.jsonl.superseded and lpips is tried again, so
    each (decoder, case) still has one lpips record. Offline and without the files, a resume leaves
    them alone ("nothing to do")."""
    _lock(monkeypatch, server.url(ALEXNET))
    run = tmp_path / "run"
    assert invoke("run", str(_suite(tmp_path, image_folder)), "--out", str(run), "--no-report").exit_code == 0
    skipped = weights.short_missing("lpips")

    def lpips_records() -> list[dict]:
        return [r for r in map(json.loads, (run / "results.jsonl").read_text().splitlines())
                if r["kind"] == "metric" and r["metric"] == "lpips"]

    before = lpips_records()
    assert before and all(r["status"] == "unavailable" and r["message"] == skipped for r in before)
    still = invoke("run", "--resume", str(run), "--no-report")  # offline, no files: nothing to do
    assert "nothing to do" in still.output and lpips_records() == before, still.output
    _online(monkeypatch)
    resumed = invoke("run", "--resume", str(run), "--no-report")
    text = " ".join(resumed.output.split())
    assert server.requests == [f"/{ALEXNET}"] and "the weight files of lpips are here now" in text, text
    after = lpips_records()
    keys = [(r["decoder"], r["case"]) for r in after]
    assert len(keys) == len(set(keys)) == len(before)  # one record per (decoder, case), as before
    assert all(r["message"] != skipped for r in after)  # tried again (these bytes are no AlexNet)
    superseded = [json.loads(line) for line in (run / "results.jsonl.superseded").read_text().splitlines()]
    assert sorted(map(json.dumps, superseded)) == sorted(map(json.dumps, before))  # moved, not lost
