"""The report of a demo-like run, opened in headless Chromium (Debian `chromium` + Playwright).

The run is real (spawned workers, the classical decoders and a decoder that runs out of
memory, PSNR/SSIM at 512², two noise levels), with a prompt that tries to inject a script,
judge results and a memory-wall sweep next to it. Checks, on a desktop (1440×900) and a phone
(390×844): no console errors from file:// or from a static web server, no page wider than the
screen, no table header broken inside a word, numbers on the first phone screen, the decoder
column stays in view while the table scrolls sideways, reasons readable without hover, rows in
the summary's order, the column chooser, sorting reorders rows, the prompt shows as text, outputs
shown 1:1, crops at least 192 px wide, difference maps and the A/B panel composited by the
browser, synchronized pan and zoom, the viewer's heading counting what the filter shows and its
metric chooser, and no label of a plot overlapping another label or a marker (bounding boxes in
the SVG). The screenshots go to test-artifacts/.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import REPO
from helpers import decoder_tables, started, suite_text
from synthetic_runs import write_judge, write_sweep

from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.suite import load_suite
from reports.html import render_reports
from reports.leaderboard import build_leaderboards

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
    import skimage.data
    from PIL import Image

    for index, name in enumerate(("astronaut", "coffee", "chelsea")):  # ship with scikit-image
        array = getattr(skimage.data, name)()
        side = min(array.shape[:2])
        square = Image.fromarray(array[:side, (array.shape[1] - side) // 2 :][:, :side])
        square.resize((512, 512), Image.Resampling.LANCZOS).save(folder / f"img{index}.png")
    (folder / "img0.txt").write_text(f"{EVIL} a red fox")
    text = suite_text(
        folder,
        decoder_tables(
            'name = "nearest"',
            'name = "lanczos"',
            'name = "fault"\nlabel = "big-decoder"\nparams = {mode = "oom"}',
        ),
    )
    text = text.replace('name = "t"', 'name = "demo-like"\nsigmas = [0.0, 0.1]')
    text = text.replace("input = 16", "input = 128").replace("output_scale = 2", "output_scale = 4")
    (root / "suite.toml").write_text(text)
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
        instance = started(playwright.chromium.launch, executable_path=CHROMIUM, args=ARGS,
                           retry_on=(sync_api.Error,))  # a browser that died starting on a loaded machine
        yield instance
        instance.close()


DESKTOP, PHONE = {"width": 1440, "height": 900}, {"width": 390, "height": 844}


def _open(browser, url: str, viewport: dict[str, int] = DESKTOP):
    page = browser.new_page(viewport=viewport)
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed ({r.failure}): {r.url}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return page, problems


# Every word of every visible table header on one line and inside its cell.
BROKEN_HEADER_WORDS = """() => {
  const broken = [];
  for (const th of document.querySelectorAll("table thead th")) {
    if (!th.offsetParent) continue;
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.data.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const lines = new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top)));
        const word = range.getBoundingClientRect(), cell = th.getBoundingClientRect();
        if (lines.size > 1 || word.right > cell.right + 1 || word.left < cell.left - 1) broken.push(m[0]);
      }
    }
  }
  return broken;
}"""

# The labels and markers of a plot (SVG groups with ids label-… and marker-…): their boxes.
PLOT_BOXES = """() => Array.from(document.querySelectorAll("[id^='label-'], [id^='marker-']")).map(g => {
  const r = g.getBoundingClientRect();
  return {id: g.id, x0: r.left, y0: r.top, x1: r.right, y1: r.bottom};
})"""


def _decoders(page) -> list[str]:
    return page.locator("table.leaderboard tbody tr").evaluate_all("rows => rows.map(r => r.dataset.decoder)")


def _load_every_image(page) -> None:
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')")
    page.wait_for_load_state("networkidle")
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")


def _overflow(page) -> int:
    """How far the page is wider than the screen (CSS px): 0 when nothing sticks out."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def _case_page(report: Path) -> Path:
    """img0 at σ = 0: the case the screenshots show."""
    cases = [json.loads(line) for line in (report.parent / "run" / "cases.jsonl").read_text().splitlines()]
    case = next(c for c in cases if c["item_id"].startswith("img0") and c["sigma"] == 0.0)
    return report / "cases" / "demo-like" / f"{case['id']}.html"


def _summary_order(report: Path) -> list[str]:
    from harness.view import load_run

    (board,) = build_leaderboards(load_run(report.parent / "run"))
    return [row.decoder for row, _ in board.rows]


def test_leaderboard_in_chromium(report: Path, browser) -> None:
    page, problems = _open(browser, (report / "index.html").as_uri())
    order = _summary_order(report)
    assert _decoders(page) == order and order[-1] == "big-decoder"  # the summary's order, OOM last
    assert page.evaluate(BROKEN_HEADER_WORDS) == []
    row = page.locator("tr[data-decoder='big-decoder']")
    assert row.locator("td.failed").first.evaluate("c => c.firstChild.textContent") == "0/6"
    oom = row.locator("td.failed", has_text="OOM")
    # latency, batch, throughput, peak RSS, RSS increment, energy, price, first call, cold start,
    # psnr, ssim: never blank, never zero
    assert oom.count() == 11
    assert "can't allocate memory" in oom.first.get_attribute("title")
    reasons = page.locator("ol.reasons li")  # the same reasons, readable without hover
    assert any("can't allocate memory" in reason for reason in reasons.all_inner_texts())
    # what the run cannot price (no [cost] table) is named there too
    assert any(reason.startswith("the suite has no [cost] table") for reason in reasons.all_inner_texts())

    page.locator("table.leaderboard thead th", has_text="decoder").click()
    assert _decoders(page) == sorted(order)  # rows really moved
    header = page.locator("table.leaderboard thead th", has_text="latency / image")
    column = (
        page.locator("table.leaderboard thead th").evaluate_all(
            "cells => cells.findIndex(c => c.textContent.includes('latency / image'))"
        )
        + 1
    )
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

    chooser = page.locator("details.chooser").first  # a hidden column comes back when chosen
    cold = page.locator("table.leaderboard thead th", has_text="cold start")
    assert not cold.is_visible()
    before = chooser.locator(".shown-count").inner_text()
    chooser.locator("summary").click()
    chooser.locator("label", has_text="cold start").locator("input").check()
    assert cold.is_visible() and int(chooser.locator(".shown-count").inner_text()) == int(before) + 1
    for text in ("Pareto", "Bradley–Terry", "Memory wall", "Run facts", "Fidelity–plausibility dial"):
        assert page.get_by_text(text).first.is_visible()
    chooser = page.locator("select.figure-choice").first  # the plotted metric, chosen on the page
    assert chooser.locator("option").all_inner_texts() == ["psnr", "ssim"]
    assert page.locator("[data-metric='psnr']").first.is_visible()
    chooser.select_option("ssim")
    assert page.locator("[data-metric='ssim'] img").first.is_visible()
    assert page.locator("[data-metric='ssim'] img").count() == 2  # latency and memory panels
    _load_every_image(page)  # the chosen panels load before the reload below (else it aborts them)
    assert page.locator("[data-metric='ssim'] img").evaluate_all(
        "imgs => imgs.map(i => i.naturalWidth > 0)"
    ) == [
        True,
        True,
    ]
    assert not page.locator("[data-metric='psnr']").first.is_visible()
    assert "1 decoders" not in page.content() and _overflow(page) == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.reload()  # the suite's order, the first metric plotted
    _load_every_image(page)
    page.screenshot(path=str(ARTIFACTS / "report-leaderboard-desktop.png"), full_page=True)
    assert problems == []


def test_leaderboard_on_a_phone(report: Path, browser) -> None:
    page, problems = _open(browser, (report / "index.html").as_uri(), PHONE)
    assert _overflow(page) == 0  # long hashes and paths wrap; wide tables scroll inside their box
    assert page.evaluate(BROKEN_HEADER_WORDS) == []
    first = page.locator("table.leaderboard tbody tr").first.locator("td").nth(1)  # overall win rate
    box = first.bounding_box()
    assert re.fullmatch(r"★? ?\d+%", first.inner_text().strip()), first.inner_text()
    assert box["y"] + box["height"] <= PHONE["height"] and box["x"] + box["width"] <= PHONE["width"]
    wrap = page.locator(".table-wrap").first
    assert wrap.evaluate("w => w.scrollWidth > w.clientWidth")  # the leaderboard is wider than a phone
    name = page.locator("table.leaderboard tbody tr").first.locator("td").first
    other = page.locator("table.leaderboard tbody tr").first.locator("td").nth(3)
    before = name.bounding_box()["x"], other.bounding_box()["x"]
    wrap.evaluate("w => { w.scrollLeft = 300; }")
    after = name.bounding_box()["x"], other.bounding_box()["x"]
    assert after[0] == pytest.approx(before[0], abs=1)  # the decoder column stays
    assert after[1] < before[1] - 200  # the rest scrolled
    wrap.evaluate("w => { w.scrollLeft = 0; }")
    assert page.locator("ol.reasons li").first.is_visible()
    _load_every_image(page)
    page.screenshot(path=str(ARTIFACTS / "report-leaderboard-phone.png"), full_page=True)
    assert problems == []


def test_viewer_shows_the_prompt_as_text_and_counts_what_the_filter_shows(report: Path, browser) -> None:
    page, problems = _open(browser, (report / "cases" / "demo-like" / "index.html").as_uri())
    assert page.get_by_text(f"{EVIL} a red fox").count() == 2  # img0 at both noise levels
    assert page.locator("script").count() == 1  # only the report's own script
    heading = page.locator("h1")
    assert heading.inner_text() == "demo-like · 6 cases"
    case_id = _case_page(report).stem
    page.locator("input.filter").fill(case_id)
    assert heading.inner_text() == "demo-like · 1 of 6 case"
    page.locator("input.filter").fill("img0")
    assert heading.inner_text() == "demo-like · 2 of 6 cases"
    page.locator("input.filter").fill("")
    metric = page.locator("select.metric-choice")  # the index shows one metric at a time
    assert metric.locator("option").all_inner_texts() == ["psnr ↑", "ssim ↑"]
    assert page.locator("td[data-metric='psnr']").first.is_visible()
    metric.select_option("ssim")
    assert page.locator("td[data-metric='ssim']").first.is_visible()
    assert not page.locator("td[data-metric='psnr']").first.is_visible()
    _load_every_image(page)  # nothing in flight when the link leaves the page
    page.get_by_role("link", name="img0", exact=False).first.click()
    page.wait_for_load_state("networkidle")
    assert page.locator(".prompt-text").inner_text() == f"{EVIL} a red fox"
    assert problems == []


def test_case_page_shows_what_the_decoders_did(report: Path, browser) -> None:
    page, problems = _open(browser, _case_page(report).as_uri())
    _load_every_image(page)
    tiles = page.locator(".grid.outputs .tile").evaluate_all("tiles => tiles.map(t => t.dataset.decoder)")
    assert tiles == ["reference", "nearest", "lanczos", "big-decoder"]
    shown = page.locator(".grid.outputs img.full").evaluate_all("imgs => imgs.map(i => i.clientWidth)")
    assert shown == [512, 512, 512]  # a 512² output at 1:1
    metrics = page.locator(".grid.outputs .tile[data-decoder='lanczos'] dt").all_inner_texts()
    assert metrics == ["psnr ↑", "ssim ↑"]  # the direction on every metric
    assert page.locator(".grid.outputs dd.best").count() == 2  # the case's best, per metric
    crops = page.locator(".zoomrow").evaluate_all("rows => rows.map(r => r.dataset.crop)")
    assert "detail" in crops and "disagreement" in crops
    for row in page.locator(".zoomrow").all():
        size = int(row.get_attribute("data-size"))  # 128 px windows of a 512² output: 2× and 4×
        zooms = row.locator(".cell").nth(1).locator(".zoom")
        scales = [int(s) for s in zooms.evaluate_all("zs => zs.map(z => z.dataset.scale)")]
        widths = zooms.evaluate_all("zs => zs.map(z => z.clientWidth)")
        assert widths == [size * scale for scale in scales] and min(widths) >= 192
        assert zooms.nth(1).locator("img").evaluate("i => i.getBoundingClientRect().width") == scales[1] * 512
    badge = page.locator(".zoomcell .scale").first.bounding_box()
    crop = page.locator(".zoomcell .zoom").first.bounding_box()
    assert badge["y"] >= crop["y"] + crop["height"] - 1  # the scale sits under the crop, never over it
    maps = page.locator(".diffmap")
    assert maps.count() == 2  # nearest and lanczos against the reference (big-decoder has no image)
    blend = maps.first.evaluate("m => getComputedStyle(m.querySelector('img.over')).mixBlendMode")
    assert blend == "difference"
    assert "brightness(4)" in maps.first.evaluate("m => getComputedStyle(m).filter")
    compare = page.locator(".compare")
    compare.locator("input[value='difference']").check()
    stage = compare.locator(".stage")
    assert stage.get_attribute("data-mode") == "difference"
    assert stage.locator("img.b").evaluate("i => getComputedStyle(i).mixBlendMode") == "difference"
    assert stage.evaluate("s => s.clientWidth") >= 192  # a region at a whole enlargement, not 128 px
    compare.locator("input[value='slider']").check()
    compare.locator(".split").fill("30")
    assert "30%" in stage.locator("img.b").evaluate("i => i.style.clipPath")
    page.locator(".panzoom [data-zoom='2']").click()
    transforms = page.locator(".panzoom .port img").evaluate_all("imgs => imgs.map(i => i.style.transform)")
    assert len(transforms) == 3 and len(set(transforms)) == 1 and "scale(2)" in transforms[0]  # in sync
    assert page.get_by_text(f"{EVIL} crisper edges").count() == 2  # both orders, as text
    broken = page.locator("img").evaluate_all("imgs => imgs.filter(i => !i.naturalWidth).map(i => i.src)")
    assert broken == [] and _overflow(page) == 0
    page.locator(".panzoom [data-zoom='fit']").click()
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header back on top of a full-page shot
    page.screenshot(path=str(ARTIFACTS / "report-case-512-desktop.png"), full_page=True)
    assert problems == []


def test_case_page_on_a_phone(report: Path, browser) -> None:
    page, problems = _open(browser, _case_page(report).as_uri(), PHONE)
    _load_every_image(page)
    assert _overflow(page) == 0
    assert page.locator(".zoomrow .zoom").first.evaluate("z => z.clientWidth") >= 192
    assert page.locator(".grid.outputs img.full").first.evaluate("i => i.clientWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "report-case-512-phone.png"), full_page=True)
    assert problems == []


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_plot_labels_never_overlap_each_other_or_a_marker(report: Path, browser, viewport) -> None:
    """Each cost–quality and memory-wall figure opened as the browser draws it: every decoder's or
    failure's label is a box of its own, off every marker."""
    folder = report / "figures"
    figures = sorted(folder.glob("cost-*.svg")) + sorted(folder.glob("sweep-*.svg"))
    assert len(figures) >= 5
    for figure in figures:
        page, problems = _open(browser, figure.as_uri(), viewport)
        boxes = page.evaluate(PLOT_BOXES)
        labels = [b for b in boxes if b["id"].startswith("label-")]
        assert labels, figure.name
        for index, box in enumerate(labels):
            for other in [*labels[index + 1 :], *(b for b in boxes if b["id"].startswith("marker-"))]:
                apart = (
                    box["x1"] <= other["x0"]
                    or other["x1"] <= box["x0"]
                    or box["y1"] <= other["y0"]
                    or other["y1"] <= box["y0"]
                )
                assert apart, (figure.name, box, other)
        assert problems == []
        page.close()
    cost = next(f for f in figures if f.name.startswith("cost-"))
    page, _ = _open(browser, (report / "index.html").as_uri(), PHONE)
    shown = page.locator(f"img[src='figures/{cost.name}']")
    shown.scroll_into_view_if_needed()
    _load_every_image(page)
    assert 340 <= shown.evaluate("i => i.clientWidth") <= 390  # a phone shows a panel full width
    shown.screenshot(path=str(ARTIFACTS / "report-cost-quality-phone.png"))


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
