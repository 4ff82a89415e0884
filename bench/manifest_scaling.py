"""How `validate` and `run` scale with the number of entries of an images manifest (issue 24).

    PYTHONPATH=. python bench/manifest_scaling.py [--sizes 1000 10000 100000] [--distinct]

A measurement (tests/unit/test_hostile.py checks that listing opens only the items `limit`
keeps). For each size N it writes a JSON-lines manifest of N entries (by
default all naming one small PNG; --distinct writes N files) and times, each in a fresh
interpreter (wall time, start-up included):

- `validate` with `limit = 2` (the listing: every entry parsed and its id checked, two files opened),
- `validate` without a limit (every item opened, hashed and its header checked),
- `run` with `limit = 2` (listing, preparing and decoding two items with `nearest`, metrics),

and, in this process, `list_items` alone with and without the limit. Linear listing means the
time per 1,000 entries stays flat as N grows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

SUITE = """name = "scaling"
metrics = ["psnr"]

[source]
kind = "images"
manifest = "{manifest}"
{limit}

[resolution]
input = 16
output_scale = 2

[timing]
warmup = 0
repeats = 1

[[decoder]]
name = "nearest"
"""


def write_manifest(folder: Path, size: int, distinct: bool) -> Path:
    rng = np.random.default_rng(0)
    image = folder / "shared.png"
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image)
    lines = []
    for index in range(size):
        path = image
        if distinct:
            path = folder / "images" / f"{index // 1000:03d}" / f"i{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
        lines.append(json.dumps({"image": str(path), "id": f"item-{index:06d}"}))
    manifest = folder / f"items-{size}.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def suite_file(folder: Path, manifest: Path, limit: int | None) -> Path:
    path = folder / f"{manifest.stem}-{limit or 'all'}.toml"
    path.write_text(SUITE.format(manifest=manifest, limit=f"limit = {limit}" if limit else ""))
    return path


def timed(args: list[str]) -> float:
    begin = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True)
    elapsed = time.perf_counter() - begin
    if done.returncode not in (0, 1):
        raise SystemExit(f"decoderbench {' '.join(args)} failed:\n{done.stderr}")
    return elapsed


def listing_s(suite: Path) -> float:
    from harness.sources.listing import list_items
    from harness.suite import load_suite

    loaded = load_suite(suite)
    begin = time.perf_counter()
    list_items(loaded)
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--distinct", action="store_true", help="one image file per entry")
    args = parser.parse_args()
    print(f"{'entries':>8} {'list, limit 2':>14} {'list, all':>10} {'validate, limit 2':>18} "
          f"{'validate, all':>14} {'run, limit 2':>13}   (seconds; validate and run in a fresh interpreter)")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for size in args.sizes:
            folder = root / str(size)
            folder.mkdir()
            manifest = write_manifest(folder, size, args.distinct)
            limited, everything = suite_file(folder, manifest, 2), suite_file(folder, manifest, None)
            row = [listing_s(limited), listing_s(everything), timed(["validate", str(limited)]),
                   timed(["validate", str(everything)]),
                   timed(["run", str(limited), "--out", str(folder / "run"), "--cache-dir",
                          str(folder / "cache"), "-q", "--no-report"])]
            print(f"{size:>8} " + " ".join(f"{value:>{width}.2f}" for value, width in
                                           zip(row, (14, 10, 18, 14, 13), strict=True)), flush=True)


if __name__ == "__main__":
    main()
