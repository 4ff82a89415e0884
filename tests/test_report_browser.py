"""The report of a demo-like run, opened in headless Chromium (Debian `chromium` + Playwright).

The run is real (spawned workers, the classical decoders and a decoder that runs out of
memory, PSNR/SSIM), with a prompt that tries to inject a script, judge results and a
memory-wall sweep next to it. Checks: no console errors from file:// or from a static web
server, every decoder appears, sorting reorders rows, the prompt shows as text; the
screenshots go to test-artifacts/.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import REPO
from helpers import decoder_tables, suite_text
from synthetic_runs import write_judge, write_sweep

from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.suite import load_suite
from reports.html import render_reports

EVIL = "<script>alert(1)</script>"
CHROMIUM = (
    os.environ.get("DECODERBENCH_CHROMIUM")
    or next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    or "/usr/bin/chromium"
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
ARTIFACTS = REPO / "test-artifacts"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (extra: report)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    folder = root / "images"
    folder.mkdir()
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    for index in range(3):
        yy, xx = np.mgrid[0:64, 0:64]
        base = np.stack([xx / 64, yy / 64, ((xx // 8 + yy // 8) % 2) * 0.8], axis=-1)
        array = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
        Image.fromarray((array * 255).astype(np.uint8)).save(folder / f"img{index}.png")
    (folder / "img0.txt").write_text(f"{EVIL} a red fox")
    text = suite_text(
        folder,
        decoder_tables(
            'name = "nearest"',
            'name = "lanczos"',
            'name = "fault"\nlabel = "big-decoder"\nparams = {mode = "oom"}',
        ),
    )
    (root / "suite.toml").write_text(text.replace('name = "t"', 'name = "demo-like"'))
    run_dir = (
        Runner.new(load_suite(root / "suite.toml"), root / "run", TensorCache(root / "cache")).run().run_dir
    )
    cases = [
        line.split('"id": "')[1].split('"')[0] for line in (run_dir / "cases.jsonl").read_text().splitlines()
    ]
    write_judge(run_dir, ["lanczos", "nearest"], cases, reason=f"{EVIL} crisper edges")
    sweep = write_sweep(root / "sweep", "lanczos", [256, 512, 1024, 2048], oom_from=2048)
    render_reports([run_dir, sweep], root / "report")
    return root / "report"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        instance.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return page, problems


def _decoders(page) -> list[str]:
    return page.locator("table.leaderboard tbody tr").evaluate_all("rows => rows.map(r => r.dataset.decoder)")


def test_leaderboard_in_chromium(report: Path, browser) -> None:
    page, problems = _open(browser, (report / "index.html").as_uri())
    assert _decoders(page) == ["nearest", "lanczos", "big-decoder"]  # the suite's order
    row = page.locator("tr[data-decoder='big-decoder']")
    assert row.locator("td.failed").first.inner_text() == "0/3"
    oom = row.locator("td.failed", has_text="OOM")
    # latency, batch, throughput, peak RSS, RSS increment, first call, cold start, psnr, ssim:
    # never blank, never zero
    assert oom.count() == 9
    assert "can't allocate memory" in oom.first.get_attribute("title")

    page.locator("table.leaderboard thead th", has_text="decoder").click()
    assert _decoders(page) == ["big-decoder", "lanczos", "nearest"]  # rows really moved
    header = page.locator("table.leaderboard thead th", has_text="latency / image")
    column = page.locator("table.leaderboard thead th").evaluate_all(
        "cells => cells.findIndex(c => c.textContent.includes('latency / image'))") + 1
    header.click()  # lower is better: best first, the OOM row last
    first = _decoders(page)
    header.click()
    second = _decoders(page)
    assert first[-1] == second[-1] == "big-decoder" and first[:2] == second[:2][::-1]
    values = page.locator(f"table.leaderboard tbody tr td:nth-child({column})").evaluate_all(
        "cells => cells.map(c => c.dataset.sort)"
    )
    assert float(values[0]) >= float(values[1]) and values[2] == ""
    assert header.get_attribute("aria-sort") == "descending"

    for text in ("Pareto", "Bradley–Terry", "Memory wall", "Run facts"):
        assert page.get_by_text(text).first.is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert problems == []


def test_viewer_shows_the_prompt_as_text(report: Path, browser) -> None:
    page, problems = _open(browser, (report / "cases" / "demo-like" / "index.html").as_uri())
    assert page.get_by_text(f"{EVIL} a red fox").count() == 1
    assert page.locator("script").count() == 1  # only the report's own script
    page.get_by_role("link", name="img0", exact=False).first.click()
    page.wait_for_load_state("networkidle")
    assert page.locator(".prompt-text").inner_text() == f"{EVIL} a red fox"
    tiles = page.locator(".grid .tile").evaluate_all("tiles => tiles.map(t => t.dataset.decoder)")
    assert tiles == ["reference", "nearest", "lanczos", "big-decoder"]
    assert page.locator(".zoomrow").count() >= 1  # the same crop on every decoder
    assert page.locator(".zoomrow").first.locator(".cell").count() == 4
    assert page.get_by_text(f"{EVIL} crisper edges").count() == 2  # both orders, as text
    broken = page.locator("img").evaluate_all(
        "imgs => imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
    )
    assert broken == []
    page.screenshot(path=str(ARTIFACTS / "report-case.png"), full_page=True)
    assert problems == []


def test_report_works_from_a_static_web_server(report: Path, browser) -> None:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(report))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for path in ("/index.html", "/cases/demo-like/index.html"):
            page, problems = _open(browser, base + path)
            assert page.locator("img").count() > 0
            assert problems == [], path
    finally:
        server.shutdown()
