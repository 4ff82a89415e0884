"""The side-by-side viewer: one page per case, every decoder next to the reference.

Zoom crops are chosen once per case on the reference (see crops.py) and
shown at the same place on every output, so invented detail is visible
where readers zoom in. Crops are drawn by the browser from the full-size
image files (CSS), so no crop files are written; outputs and references are
hard-linked into the report folder (copied across file systems), and each
reference gets a small thumbnail for the case index. With many cases the
pages are made in forked worker processes (one per core), which share the
run view with the parent instead of receiving it pickled.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from harness.images import read_rgb
from harness.metrics.direction import Direction
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


@dataclass(frozen=True)
class CaseLink:
    """A case in the case index: the case, its page and its thumbnail (relative to the report)."""

    case: dict[str, Any]
    page: str
    thumb: str | None


@dataclass
class _Viewer:
    """What every case page is made from; forked workers share it instead of pickling it."""

    view: RunView
    out_dir: Path
    write: Callable[[CasePage], None]
    scores: Scores
    verdicts: dict[str, list[dict[str, Any]]]
    links: list[CaseLink]

    def complete(self, index: int) -> None:
        """Link the images, choose the crops, write the thumbnail and the page of one case."""
        link, view = self.links[index], self.view
        case, suite = link.case, safe_name(view.suite_name)
        tiles = [_reference_tile(view, case, self.out_dir, suite)]
        tiles += [_decoder_tile(view, decoder, case, self.out_dir, suite, self.scores)
                  for decoder in view.decoders]
        label, source = _crop_source(view, case)
        thumb = str(self.out_dir / link.thumb) if link.thumb else None
        crops = analyse_case(str(view.run_dir / source) if source else None, thumb)
        self.write(CasePage(
            case=case, page=link.page, thumb=link.thumb, tiles=tiles, crops=[CaseCrop(c) for c in crops],
            crops_from=label, judge=self.verdicts.get(case["id"], []),
            previous=self.links[index - 1].page if index > 0 else None,
            next=self.links[index + 1].page if index + 1 < len(self.links) else None,
        ))


_SHARED: _Viewer | None = None  # set in the parent just before the workers are forked


def _complete_shared(index: int) -> None:
    assert _SHARED is not None
    _SHARED.complete(index)


def write_case_pages(view: RunView, out_dir: Path, metric_names: list[str],
                     write: Callable[[CasePage], None]) -> list[CaseLink]:
    """Build every case's page and hand it to `write`; in forked worker processes when there
    are many cases. Returns the links for the case index."""
    global _SHARED
    suite = safe_name(view.suite_name)
    verdicts: dict[str, list[dict[str, Any]]] = {}
    for record in view.judge_records:
        verdicts.setdefault(record.get("case") or "", []).append(record)
    links = [CaseLink(case, f"cases/{suite}/{safe_name(case_id)}.html",
                      f"thumbs/{suite}/{safe_name(case_id)}.jpg" if _crop_source(view, case)[1] else None)
             for case_id, case in view.cases.items()]
    viewer = _Viewer(view, out_dir, write, _per_case_metrics(view, metric_names), verdicts, links)
    if len(links) < PARALLEL_FROM_CASES or (os.cpu_count() or 1) < 2 or "fork" not in get_all_start_methods():
        for index in range(len(links)):
            viewer.complete(index)
        return links
    _SHARED = viewer
    try:
        workers = min(os.cpu_count() or 2, 8)
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as executor:
            for _ in executor.map(_complete_shared, range(len(links)), chunksize=16):
                pass  # surfaces a worker's exception here
    finally:
        _SHARED = None
    return links


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


def analyse_case(image_path: str | None, thumb_path: str | None) -> list[Crop]:
    """Choose the crops on one image and write its thumbnail."""
    if image_path is None or thumb_path is None:
        return []
    image = Image.fromarray(read_rgb(Path(image_path)))
    crops = choose_crops(np.asarray(image.convert("L")))
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    Path(thumb_path).parent.mkdir(parents=True, exist_ok=True)
    image.save(thumb_path, format="JPEG", quality=85)
    return crops


def case_index_rows(view: RunView, pages: list[CaseLink], metric: str | None,
                    direction: Direction | None) -> list[tuple[CaseLink, list[Cell]]]:
    """The case index: per case, each decoder's value of `metric` (★ the best of the case)."""
    rows = {(row.decoder, row.size): row for row in view.rows}
    return [(page, _case_cells(view, page, metric, rows, direction)) for page in pages]


def _case_cells(view: RunView, page: CaseLink, metric: str | None,
                rows: dict[tuple[str, Size], Row], direction: Direction | None) -> list[Cell]:
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
            cells.append(Cell(format_number(value), sort=direction.badness(value) if direction else value))
        elif summary is not None:
            status = summary.unscored.get(case_id, "not measured")
            cells.append(Cell(status_label(status), state="missing", title="\n".join(summary.messages)))
        else:
            cells.append(Cell("not measured", state="missing",
                              title=f"no {metric or 'quality metric'} values"))
    scored = [cell for cell in cells if cell.sort is not None]
    if direction is not None and len(scored) > 1:
        best = min(cell.sort for cell in scored)  # type: ignore[type-var]  # sort keys: smaller is better
        for cell in scored:
            cell.best = cell.sort == best
    return cells
