"""Report rendering time of a synthetic run: 10 decoders × 1,000 cases at 256×256.

    PYTHONPATH=. python bench/report.py [--decoders 10] [--cases 1000] [--keep DIR]

References are the demo's
13 real images (12 scikit-image photographs and a text chart) cycled over the
cases, outputs are those plus per-decoder noise, so crop selection and
thumbnails do real work. Prints the time of `render_reports` (the whole
report: leaderboards, figures, 1,000 viewer pages, thumbnails, crops).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from synthetic_runs import SynthDecoder, write_run

SIZE = (256, 256)


def _pool() -> list[np.ndarray]:
    import skimage.data

    from harness.images import to_rgb_array
    from harness.sources.listing import PHOTOS
    from harness.sources.textchart import render_chart

    arrays = [to_rgb_array(getattr(skimage.data, name)()) for name in PHOTOS]
    arrays.append(to_rgb_array(render_chart(0)[0]))
    return [np.asarray(Image.fromarray(a).resize(SIZE, Image.Resampling.LANCZOS)) for a in arrays]


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def build(root: Path, n_decoders: int, n_cases: int) -> Path:
    rng = np.random.default_rng(0)
    decoders = [
        SynthDecoder(
            f"decoder-{d:02d}",
            latency_ms=5.0 * (d + 1),
            peak_bytes=(d + 1) * 2**28,
            metrics={
                "psnr": lambda i, d=d: 20 + d + (i % 7) / 7,
                "ssim": lambda i, d=d: 0.5 + d / 40 + (i % 5) / 100,
                "lpips": lambda i, d=d: 0.4 - d / 40 + (i % 3) / 100,
            },
        )
        for d in range(n_decoders)
    ]
    decoders[-1].failures = {i: ("oom", "CUDA out of memory") for i in range(0, n_cases, 10)}
    write_run(
        root,
        decoders,
        n_cases,
        {"psnr": True, "ssim": True, "lpips": False},
        suite="bench",
        size=SIZE,
        images=False,
        prompts=["a photo of <b>something</b>", None],
    )
    pool = _pool()
    references = [_png(a) for a in pool]
    outputs = {
        d.id: [_png(np.clip(a + rng.normal(0, 4 + 2 * k, a.shape), 0, 255).astype(np.uint8)) for a in pool]
        for k, d in enumerate(decoders)
    }
    from harness.store import read_jsonl

    cases, _ = read_jsonl(root / "cases.jsonl")
    index_of = {c["id"]: i for i, c in enumerate(cases)}
    for i, case in enumerate(cases):
        (root / case["reference"]).parent.mkdir(parents=True, exist_ok=True)
        (root / case["reference"]).write_bytes(references[i % len(pool)])
    records, _ = read_jsonl(root / "results.jsonl")
    for record in records:
        if record["kind"] == "decode" and record["status"] == "ok":
            target = root / record["image"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(outputs[record["decoder"]][index_of[record["case"]] % len(pool)])
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoders", type=int, default=10)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        began = time.perf_counter()
        run_dir = build(root / "run", args.decoders, args.cases)
        print(f"built {args.decoders} decoders × {args.cases} cases in {time.perf_counter() - began:.1f} s")
        from reports.html import render_reports

        began = time.perf_counter()
        index = render_reports([run_dir], root / "report")
        print(f"render_reports: {time.perf_counter() - began:.2f} s → {index}")


if __name__ == "__main__":
    main()
