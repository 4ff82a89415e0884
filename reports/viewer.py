"""The side-by-side viewer: one page per case, every decoder next to the reference.

Outputs are shown at a size that follows their resolution (1:1 from 256 to 512 px, an integer
enlargement below, scaled down above — the pan-and-zoom panel shows every pixel). Crops are
chosen once per case (see crops.py: the most detail and text on the reference, and where the
decoders disagree most) and shown at the same place on every output at 1:1 and 2× of native
pixels, so invented detail is visible where readers zoom in. Difference maps (against the
reference, and between any two decoders in the A/B panel with its slider and flicker) are
composited by the browser (CSS `mix-blend-mode: difference`), and crops are drawn from the
full-size image files, so no crop or difference files are written; outputs and references are
hard-linked into the report folder (copied across file systems), and each reference gets a
small thumbnail for the case index. With many cases the pages are made in forked worker
processes (one per core), which share the run view with the parent instead of receiving it
pickled.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from harness.images import read_rgb
from harness.metrics.direction import Direction
from harness.records import Size
from harness.store import StoreError, inside, link_or_copy
from harness.view import Row, RunView
from reports.cells import INFINITY, Cell, format_number, status_label
from reports.crops import Crop, choose_crops, disagreement_crop

THUMB_SIDE = 112
TILE_MIN_PX, TILE_MAX_PX = 256, 512  # outputs show 1:1 between these, enlarged or reduced outside
CROP_SCALES = (1, 2)  # crops at the first enlargement that reaches CROP_MIN_PX, and at twice that
CROP_MIN_PX = 192  # the smallest a crop is shown (CSS px): a 64-px window of a 256² output at 3×
DIFFERENCE_GAIN = 4  # difference maps are |a − b| × this, so small errors are visible
PARALLEL_FROM_CASES = 48  # below this a worker pool costs more than it saves
CROP_LABELS = {"detail": "highest detail", "text": "text", "disagreement": "where the decoders disagree most"}


@dataclass(frozen=True)
class MetricLine:
    """One metric of one output on a case page: direction, value, best mark, reference value."""

    name: str
    arrow: str
    text: str
    title: str = ""
    best: bool = False
    reference: str = ""  # what the reference itself scores (legibility: the OCR floor)
    reason: str = ""  # why there is no value (numbered under the outputs: a phone has no hover)


Scores = dict[tuple[str, str], list[MetricLine]]  # (decoder, case) → its metric lines


@dataclass
class Tile:
    label: str
    src: str | None  # relative to the report root
    width: int
    height: int
    status: str = "ok"
    message: str = ""
    metrics: list[MetricLine] = field(default_factory=list)
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (metric, src)

    @property
    def scale(self) -> float:
        """Display pixels per output pixel: 1 from 256 to 512 px wide, an integer enlargement of
        smaller outputs, a reduction of larger ones (the pan-and-zoom panel shows them 1:1)."""
        if self.width < TILE_MIN_PX:
            return float(min(8, max(1, TILE_MIN_PX // max(self.width, 1))))
        return min(1.0, TILE_MAX_PX / self.width)

    @property
    def display_width(self) -> int:
        return round(self.width * self.scale)

    @property
    def display_height(self) -> int:
        return round(self.height * self.scale)

    @property
    def scale_label(self) -> str:
        return "1:1" if self.scale == 1 else (f"{self.scale:g}×" if self.scale > 1 else f"{self.scale:.2g}×")


@dataclass
class CaseCrop:
    crop: Crop

    @property
    def label(self) -> str:
        return CROP_LABELS.get(self.crop.reason, self.crop.reason)

    @property
    def scales(self) -> tuple[int, ...]:
        """Whole enlargements of native pixels, the first the smallest that shows the window at
        least CROP_MIN_PX wide (1:1 for windows of 192 px and more), the second twice that."""
        first = max(1, -(-CROP_MIN_PX // self.crop.size))
        return tuple(first * scale for scale in CROP_SCALES)

    def box(self, scale: int) -> int:
        """Side of the crop's box on the page (CSS px): the window at `scale` × native pixels."""
        return self.crop.size * scale

    def style(self, tile: Tile, scale: int) -> str:
        """Inline style of the zoomed image: the whole image at `scale`, the crop shifted into view."""
        return (f"width:{tile.width * scale}px;height:{tile.height * scale}px;"
                f"transform:translate({-self.crop.x * scale}px,{-self.crop.y * scale}px)")


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

    @property
    def shown(self) -> list[Tile]:
        """The tiles with an image: what the compare, difference and pan-and-zoom panels offer."""
        return [tile for tile in self.tiles if tile.src]

    @property
    def reference(self) -> Tile | None:
        return next((t for t in self.tiles if t.label == "reference" and t.src), None)

    @property
    def gain(self) -> int:
        return DIFFERENCE_GAIN

    @property
    def reasons(self) -> list[str]:
        """Why metrics have no value here, once each, in order (numbered on the tiles)."""
        return list(dict.fromkeys(m.reason for t in self.tiles for m in t.metrics if m.reason))


def safe_name(text: str) -> str:
    """A file name for `text`: unsafe characters replaced; long names keep a digest of the whole."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text)
    if len(name) <= 120 and name == text:
        return name
    return f"{name[:100]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _stored(view: RunView, relative: str) -> Path | None:
    """A store path the report may read or link: inside the run directory once symlinks are
    resolved (harness.store.inside), else None."""
    try:
        return inside(view.run_dir, relative)
    except StoreError:
        return None


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
        outputs = [str(self.out_dir / tile.src) for tile in tiles[1:] if tile.src]
        crops = analyse_case(str(view.run_dir / source) if source else None, thumb, outputs)
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
    if reference and (found := _stored(view, reference)) is not None and found.is_file():
        return "reference", reference
    for decoder in view.decoders:
        record = view.decodes.get((decoder, case["id"]))
        if record and record["status"] == "ok" and (found := _stored(view, record["image"])) is not None \
                and found.is_file():
            return decoder, record["image"]
    return "", None


def _reference_tile(view: RunView, case: dict[str, Any], out_dir: Path, suite: str) -> Tile:
    width, height = case["output_size"]
    reference = case.get("reference")
    if not reference:
        return Tile("reference", None, width, height, "missing", "this source has no reference image")
    src = f"images/{suite}/{reference}"
    found = _stored(view, reference)
    if found is None or not link_or_copy(found, out_dir / src):
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
    found = _stored(view, record["image"])
    if found is None or not link_or_copy(found, out_dir / src):
        tile.src, tile.status = None, "missing"
        tile.message = f"{record['image']} is not in the run directory"
    for metric, artifact in sorted(view.artifacts.get((decoder, case["id"]), {}).items()):
        target = f"artifacts/{suite}/{artifact}"
        found = _stored(view, artifact)
        if found is not None and link_or_copy(found, out_dir / target):
            tile.artifacts.append((metric, target))
    return tile


def _per_case_metrics(view: RunView, metric_names: list[str]) -> Scores:
    """Every decoder's value of every metric on every case, the case's best (by the metric's
    direction, ties sharing it) marked where two or more decoders have a value."""
    scores: Scores = {}
    for metric in metric_names:
        direction = view.direction(metric)
        arrow = direction.symbol if direction else ""
        values: dict[str, dict[str, float]] = {}  # case → decoder → value
        for row in view.rows:
            summary = row.metrics.get(metric)
            if summary is None:
                continue
            for case, value in summary.per_case.items():
                values.setdefault(case, {})[row.decoder] = value
            for case, status in summary.unscored.items():
                why = "\n".join(summary.messages) or f"{metric}: {status_label(status)}"
                scores.setdefault((row.decoder, case), []).append(
                    MetricLine(metric, arrow, status_label(status), why, reason=f"{metric}: {why}"))
        for row in view.rows:
            summary = row.metrics.get(metric)
            for case, value in (summary.per_case.items() if summary else ()):
                reference = summary.references.get(case)  # type: ignore[union-attr]
                shown = INFINITY if case in summary.infinite else format_number(value)  # type: ignore[union-attr]
                scores.setdefault((row.decoder, case), []).append(MetricLine(
                    metric, arrow, shown, best=_is_best(values[case], row.decoder, direction),
                    reference="" if reference is None else format_number(reference),
                    title=f"{direction.label} is better" if direction else "unknown direction"))
    return scores


def _is_best(values: dict[str, float], decoder: str, direction: Direction | None) -> bool:
    if direction is None or len(values) < 2:
        return False
    best = min(direction.badness(v) for v in values.values())
    return direction.badness(values[decoder]) == best


def analyse_case(image_path: str | None, thumb_path: str | None, outputs: list[str] | None = None
                 ) -> list[Crop]:
    """Choose the crops — detail and text on one image, disagreement over the decoders' outputs —
    and write the image's thumbnail."""
    if image_path is None or thumb_path is None:
        return []
    image = Image.fromarray(read_rgb(Path(image_path)))
    crops = choose_crops(np.asarray(image.convert("L")))
    shown = [np.asarray(Image.open(path).convert("L")) for path in outputs or []]
    disagreement = disagreement_crop(shown, crops)
    if disagreement is not None:
        crops.append(disagreement)
    image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    Path(thumb_path).parent.mkdir(parents=True, exist_ok=True)
    image.save(thumb_path, format="JPEG", quality=85)
    return crops


def case_index_rows(view: RunView, pages: list[CaseLink], metrics: list[str]
                    ) -> list[tuple[CaseLink, list[tuple[str, list[Cell]]]]]:
    """The case index: per case and per metric, each decoder's value (★ the best of the case); the
    page shows one metric at a time and its chooser switches."""
    rows = {(row.decoder, row.size): row for row in view.rows}
    return [(page, [(metric, _case_cells(view, page, metric, rows, view.direction(metric)))
                    for metric in metrics]) for page in pages]


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
