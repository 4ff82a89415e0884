"""Hand-built run directories for judge tests: what the decode phase leaves behind, without decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from helpers import decoder_tables, suite_text

from harness import images
from harness.records import CaseLine, DecodeRecord, JudgeRecord, judges
from harness.store import RunStore
from harness.suite import Suite, load_suite


def texture(seed: int, size: tuple[int, int] = (48, 40)) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (3, size[1], size[0]), dtype=np.uint8))


def _blur(pixels: torch.Tensor) -> torch.Tensor:
    x = images.to_float(pixels)[None]
    return images.quantize(torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2,
                                                          count_include_pad=False)[0])


def make_run(root: Path, write_suite, image_folder: Path, judge: str,
             decoders: tuple[str, ...] = ("sharp", "blurry"), n_cases: int = 2,
             repeated: bool = False) -> tuple[Suite, RunStore]:
    """A run directory as the decode phase leaves it: cases, references, ok decode records, PNGs.

    "sharp" outputs are the case's texture, "blurry" a blurred copy, "blurrier" blurred twice.
    `repeated`: every case has the same texture and caption (like seeds of deterministic decoders)."""
    tables = decoder_tables(*[f'name = "nearest"\nlabel = "{d}"' for d in decoders])
    text = suite_text(image_folder, tables) + "\n[judge]\n" + judge
    suite = load_suite(write_suite(text, f"{root.name}.toml"))
    store = RunStore.create(root, {"suite": {
        "name": suite.name, "sha256": suite.sha256, "path": str(suite.path), "texts": suite.texts,
        "resolved": suite.model.model_dump(mode="json")}, "cache_dir": str(root.parent / "cache")})
    cases = []
    for i in range(n_cases):
        case_id, content = f"case{i}", 0 if repeated else i
        pixels = texture(content)
        outputs = {"sharp": pixels, "blurry": _blur(pixels), "blurrier": _blur(_blur(pixels))}
        reference = f"references/ref{i}.png"
        images.write_png(pixels, root / reference)
        cases.append(CaseLine(id=case_id, prompt=f"caption number {content}", reference=reference))  # type: ignore[typeddict-item]
        for decoder in decoders:
            relpath = RunStore.image_relpath(decoder, case_id)
            images.write_png(outputs[decoder], root / relpath)
            store.append(DecodeRecord(kind="decode", decoder=decoder, case=case_id, status="ok",
                                      image=relpath, image_sha256=images.pixels_sha256(outputs[decoder])))
    store.write_cases(cases)
    return suite, store


def judge_records(store: RunStore) -> list[JudgeRecord]:
    return judges(store.records()[0])


