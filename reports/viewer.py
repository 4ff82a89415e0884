"""The side-by-side viewer: one page per case, every decoder next to the reference.

Zoom crops are chosen once per case on the reference (see crops.py) and
shown at the same place on every output, so invented detail is visible
where readers zoom in. Crops are drawn by the browser from the full-size
image files (CSS), so no crop files are written; outputs and references are
hard-linked into the report folder (copied across file systems), and each
reference gets a small thumbnail for the case index.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from harness.images import read_rgb
from harness.store import link_or_copy
from reports.aggregate import Row, RunView, Size
from reports.crops import Crop, choose_crops
from reports.leaderboard import Cell, format_number, status_label

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
    """A file name for `text`: unsafe characters replaced; long names keep a digest of the whole."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text)
    if len(name) <= 120 and name == text:
        return name
    return f"{name[:100]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _inside(relative: str) -> bool:
    """A store path the report may link: relative, and not climbing out of the run directory."""
    path = PurePosixPath(relative)
    return not path.is_absolute() and ".." not in path.parts


def build_case_pages(view: RunView, out_dir: Path, metric_names: list[str]) -> list[CasePage]:
    suite = safe_name(view.suite_name)
    decoders = view.decoders
    scores = _per_case_metrics(view, metric_names)
    verdicts: dict[str, list[dict[str, Any]]] = {}
    for record in view.judge_records:
        verdicts.setdefault(record.get("case") or "", []).append(record)
    sources = {case_id: _crop_source(view, case) for case_id, case in view.cases.items()}
    thumbs = {case_id: f"thumbs/{suite}/{safe_name(case_id)}.jpg" for case_id in view.cases}
    jobs = [(str(view.run_dir / path) if path else None, str(out_dir / thumbs[case_id]))
            for case_id, (_, path) in sources.items()]
    pages = []
    with _analysed(jobs) as results:  # crops and thumbnails are computed while the pages are assembled
        for case_id, case in view.cases.items():
            tiles = [_reference_tile(view, case, out_dir, suite)]
            tiles += [_decoder_tile(view, decoder, case, out_dir, suite, scores) for decoder in decoders]
            label, path = sources[case_id]
            pages.append(CasePage(
                case=case, page=f"cases/{suite}/{safe_name(case_id)}.html",
                thumb=thumbs[case_id] if path else None, tiles=tiles, crops=[], crops_from=label,
                judge=verdicts.get(case_id, []),
            ))
        for page, crops in zip(pages, results, strict=True):
            page.crops = [CaseCrop(crop) for crop in crops]
    for before, after in pairwise(pages):
        before.next, after.previous = after.page, before.page
    return pages


def _crop_source(view: RunView, case: dict[str, Any]) -> tuple[str, str | None]:
    """The image crops are chosen on: the reference, else the first decoded output."""
    reference = case.get("reference")
    if reference and _inside(reference) and (view.run_dir / reference).is_file():
        return "reference", reference
    for decoder in view.decoders:
        record = view.decodes.get((decoder, case["id"]))
        if record and record["status"] == "ok" and _inside(record["image"]) \
                and (view.run_dir / record["image"]).is_file():
            return decoder, record["image"]
    return "", None


def _reference_tile(view: RunView, case: dict[str, Any], out_dir: Path, suite: str) -> Tile:
    width, height = case["output_size"]
    reference = case.get("reference")
    if not reference:
        return Tile("reference", None, width, height, "missing", "this source has no reference image")
    src = f"images/{suite}/{reference}"
    if not _inside(reference) or not link_or_copy(view.run_dir / reference, out_dir / src):
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
    if not _inside(record["image"]) or not link_or_copy(view.run_dir / record["image"], out_dir / src):
        tile.src, tile.status = None, "missing"
        tile.message = f"{record['image']} is not in the run directory"
    for metric, artifact in sorted(view.artifacts.get((decoder, case["id"]), {}).items()):
        target = f"artifacts/{suite}/{artifact}"
        if _inside(artifact) and link_or_copy(view.run_dir / artifact, out_dir / target):
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


@contextmanager
def _analysed(jobs: list[tuple[str | None, str]]) -> Iterator[Iterator[list[Crop]]]:
    """analyse_case over the jobs, in worker processes when there are many; results in order."""
    if len(jobs) < PARALLEL_FROM_CASES or (os.cpu_count() or 1) < 2 or "fork" not in get_all_start_methods():
        yield (analyse_case(*job) for job in jobs)
        return
    # fork: the workers need only numpy, scipy and PIL, already imported here.
    workers = min(os.cpu_count() or 2, 8)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as executor:
        yield executor.map(analyse_case, *zip(*jobs, strict=True), chunksize=32)


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


def case_index_rows(view: RunView, pages: list[CasePage], metric: str | None,
                    higher: bool | None) -> list[tuple[CasePage, list[Cell]]]:
    """The case index: per case, each decoder's value of `metric` (★ the best of the case)."""
    rows = {(row.decoder, row.size): row for row in view.rows}
    return [(page, _case_cells(view, page, metric, rows, higher)) for page in pages]


def _case_cells(view: RunView, page: CasePage, metric: str | None,
                rows: dict[tuple[str, Size], Row], higher: bool | None) -> list[Cell]:
    cells = []
    case_id, size = page.case["id"], tuple(page.case["output_size"])
    for decoder in view.decoders:
        record = view.decodes.get((decoder, case_id))
        row = rows.get((decoder, size))  # type: ignore[arg-type]
        summary = row.metrics.get(metric) if row is not None and metric is not None else None
        if record is None:
            cells.append(Cell("not run", state="missing", title="no decode of this case in the run"))
        elif record["status"] != "ok":
            cells.append(Cell(status_label(record["status"]), state="failed",
                              title=record.get("message") or ""))
        elif summary is not None and case_id in summary.per_case:
            value = summary.per_case[case_id]
            cells.append(Cell(format_number(value), sort=value))
        elif summary is not None:
            status = summary.unscored.get(case_id, "not measured")
            cells.append(Cell(status_label(status), state="missing", title="\n".join(summary.messages)))
        else:
            cells.append(Cell("not measured", state="missing",
                              title=f"no {metric or 'quality metric'} values"))
    scored = [cell for cell in cells if cell.sort is not None]
    if higher is not None and len(scored) > 1:
        best = (max if higher else min)(cell.sort for cell in scored)  # type: ignore[type-var]
        for cell in scored:
            cell.best = cell.sort == best
    return cells
