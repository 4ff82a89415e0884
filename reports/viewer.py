"""The side-by-side viewer: one page per case, every decoder next to the reference.

Zoom crops are chosen once per case on the reference (see crops.py) and
shown at the same place on every output, so invented detail is visible
where readers zoom in. Crops are drawn by the browser from the full-size
image files (CSS), so no crop files are written; outputs and references are
hard-linked into the report folder (copied across file systems), and each
reference gets a small thumbnail for the case index.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from harness.images import read_rgb
from harness.store import link_or_copy
from reports.aggregate import RunView
from reports.crops import Crop, choose_crops
from reports.leaderboard import format_number, status_label

THUMB_SIDE = 112
CROP_DISPLAY_PX = 200
PARALLEL_FROM_CASES = 48  # below this a worker pool costs more than it saves
CROP_LABELS = {"detail": "highest detail", "text": "text"}
Scores = dict[tuple[str, str], list[tuple[str, str, str]]]  # (decoder, case) → (metric, text, title)


@dataclass
class Tile:
    label: str
    src: str | None  # relative to the report root
    width: int
    height: int
    status: str = "ok"
    message: str = ""
    metrics: list[tuple[str, str, str]] = field(default_factory=list)  # (name, text, title)
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (metric, src)


@dataclass
class CaseCrop:
    crop: Crop

    @property
    def label(self) -> str:
        return CROP_LABELS.get(self.crop.reason, self.crop.reason)

    def style(self, tile: Tile) -> str:
        """Inline style of the zoomed image: scale the whole image, shift the crop into view."""
        scale = CROP_DISPLAY_PX / self.crop.size
        return (f"width:{tile.width * scale:.2f}px;height:{tile.height * scale:.2f}px;"
                f"transform:translate({-self.crop.x * scale:.2f}px,{-self.crop.y * scale:.2f}px)")


@dataclass
class CasePage:
    case: dict[str, Any]
    page: str  # relative to the report root
    thumb: str | None
    tiles: list[Tile]
    crops: list[CaseCrop]
    crops_from: str
    judge: list[dict[str, Any]]
    previous: str | None = None
    next: str | None = None


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:120]


def build_case_pages(view: RunView, out_dir: Path, metric_names: list[str]) -> list[CasePage]:
    suite = safe_name(view.suite_name)
    decoders = view.decoders
    scores = _per_case_metrics(view, metric_names)
    jobs, pages = [], []
    for case_id, case in view.cases.items():
        tiles = [_reference_tile(view, case, out_dir, suite)]
        tiles += [_decoder_tile(view, decoder, case, out_dir, suite, scores) for decoder in decoders]
        analysed = next((t for t in tiles if t.src is not None), None)
        thumb = f"thumbs/{suite}/{safe_name(case_id)}.jpg"
        jobs.append((str(out_dir / analysed.src) if analysed else None, str(out_dir / thumb)))
        pages.append(CasePage(
            case=case, page=f"cases/{suite}/{safe_name(case_id)}.html", thumb=thumb if analysed else None,
            tiles=tiles, crops=[], crops_from=analysed.label if analysed else "",
            judge=[r for r in view.judge_records if r.get("case") == case_id],
        ))
    for page, crops in zip(pages, _run_jobs(jobs), strict=True):
        page.crops = [CaseCrop(crop) for crop in crops]
    for before, after in pairwise(pages):
        before.next, after.previous = after.page, before.page
    return pages


def _reference_tile(view: RunView, case: dict[str, Any], out_dir: Path, suite: str) -> Tile:
    width, height = case["output_size"]
    reference = case.get("reference")
    if not reference:
        return Tile("reference", None, width, height, "missing", "this source has no reference image")
    src = f"images/{suite}/{reference}"
    if not link_or_copy(view.run_dir / reference, out_dir / src):
        return Tile("reference", None, width, height, "missing", f"{reference} is not in the run directory")
    return Tile("reference", src, width, height)


def _decoder_tile(view: RunView, decoder: str, case: dict[str, Any], out_dir: Path, suite: str,
                  scores: Scores) -> Tile:
    width, height = case["output_size"]
    record = view.decodes.get((decoder, case["id"]))
    if record is None:
        return Tile(decoder, None, width, height, "not run", "this run holds no decode of this case")
    if record["status"] != "ok":
        return Tile(decoder, None, width, height, status_label(record["status"]),
                    record.get("message") or "")
    src = f"images/{suite}/{record['image']}"
    tile = Tile(decoder, src, width, height, metrics=scores.get((decoder, case["id"]), []))
    if not link_or_copy(view.run_dir / record["image"], out_dir / src):
        tile.src, tile.status = None, "missing"
        tile.message = f"{record['image']} is not in the run directory"
    for metric, artifact in sorted(view.artifacts.get((decoder, case["id"]), {}).items()):
        target = f"artifacts/{suite}/{artifact}"
        if link_or_copy(view.run_dir / artifact, out_dir / target):
            tile.artifacts.append((metric, target))
    return tile


def _per_case_metrics(view: RunView, metric_names: list[str]) -> Scores:
    scores: Scores = {}
    for row in view.rows:
        for metric in metric_names:
            summary = row.metrics.get(metric)
            if summary is None:
                continue
            for case, value in summary.per_case.items():
                scores.setdefault((row.decoder, case), []).append((metric, format_number(value), ""))
            for case, status in summary.unscored.items():
                why = "\n".join(summary.messages)
                scores.setdefault((row.decoder, case), []).append((metric, status_label(status), why))
    return scores


def _run_jobs(jobs: list[tuple[str | None, str]]) -> list[list[Crop]]:
    if len(jobs) < PARALLEL_FROM_CASES or (os.cpu_count() or 1) < 2 or "fork" not in get_all_start_methods():
        return [analyse_case(*job) for job in jobs]
    # fork: the workers need only numpy, scipy and PIL, already imported here.
    workers = min(os.cpu_count() or 2, 8)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as executor:
        return list(executor.map(analyse_case, *zip(*jobs, strict=True), chunksize=32))


def analyse_case(image_path: str | None, thumb_path: str) -> list[Crop]:
    """Choose the crops on one image and write its thumbnail."""
    if image_path is None:
        return []
    image = Image.fromarray(read_rgb(Path(image_path)))
    crops = choose_crops(np.asarray(image.convert("L")))
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    Path(thumb_path).parent.mkdir(parents=True, exist_ok=True)
    image.save(thumb_path, format="JPEG", quality=85)
    return crops
