"""The demo's weight-free metrics give the values they gave before evaluation was made fast.

`evaluation_values.json` was written by the evaluation as it was before the streamed evaluation
and the tiled SSIM (git 9992788: one metric at a time, each reading every PNG itself, SSIM by
grouped float64 convolutions), with

    PYTHONPATH=<checkout of 9992788> python tests/e2e/test_evaluation_values.py --freeze

on a small version of the demo (a text chart and two photographs, two classical decoders, 256²).
Main's evaluation at a0396e9 (input seeds, the seam score redesign, unavailable metrics) writes
the same file byte for byte, so the values still pin the code before the speed-up.
It holds every metric record's value and the sha256 of every stored image, so the comparison is
made only where the run's pixels are the same (other PIL / scikit-image versions may resample
differently; the test then skips, naming the first differing image).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
FROZEN = TESTS / "data" / "evaluation_values.json"
SUITE = """
name = "values"
metrics = ["psnr", "ssim", "ms_ssim", "spectral_distance", "hf_energy_ratio", "piqe", "legibility_cer"]
[source]
kind = "images"
builtin = ["textchart", "photos"]
limit = 3
encoder = "pixels"
[resolution]
input = 64
output_scale = 4
[[decoder]]
name = "nearest"
[[decoder]]
name = "bilinear"
[timing]
warmup = 0
repeats = 1
"""
# Float64 metrics agree to rounding (tiles sum in another order); the others exactly.
TOLERANCE = {"psnr": 1e-12, "ssim": 1e-13, "ms_ssim": 1e-13, "spectral_distance": 1e-12,
             "hf_energy_ratio": 1e-13}


def run_values(root: Path) -> dict:
    """Run the small demo under root; its stored images' sha256 and every metric record's value."""
    from harness import images
    from harness.runner import Runner
    from harness.sources.cache import TensorCache
    from harness.store import RunStore
    from harness.suite import load_suite

    (root / "values.toml").write_text(SUITE)
    suite = load_suite(root / "values.toml")
    run_dir = Runner.new(suite, root / "run", TensorCache(root / "cache")).run().run_dir
    records = RunStore.open(run_dir).records()[0]
    pixels = {str(path.relative_to(run_dir)): images.pixels_sha256(images.read_png(path))
              for folder in ("images", "references") for path in sorted((run_dir / folder).rglob("*.png"))}
    values = {f"{r['metric']}|{r['decoder']}|{r['case']}": [r["status"], r["value"]]
              for r in records if r["kind"] == "metric"}
    return {"pixels": pixels, "values": dict(sorted(values.items()))}


def test_the_demo_metrics_keep_their_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyiqa")
    pytest.importorskip("rapidocr_onnxruntime")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    frozen = json.loads(FROZEN.read_text())
    now = run_values(tmp_path)
    changed = [name for name, digest in frozen["pixels"].items() if now["pixels"].get(name) != digest]
    if changed:
        pytest.skip(f"the run's pixels differ from the frozen run's ({changed[0]}): other image libraries")
    assert now["values"].keys() == frozen["values"].keys()
    for key, (status, value) in frozen["values"].items():
        metric = key.split("|")[0]
        assert now["values"][key][0] == status, key
        if value is None:
            assert now["values"][key][1] is None, key
        else:
            assert now["values"][key][1] == pytest.approx(value, abs=TOLERANCE.get(metric, 0)), key
    assert {key.split("|")[0] for key in frozen["values"]} == set(TOLERANCE) | {"piqe", "legibility_cer"}


if __name__ == "__main__" and sys.argv[1:] == ["--freeze"]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        frozen = run_values(Path(folder))
    FROZEN.parent.mkdir(exist_ok=True)
    FROZEN.write_text(json.dumps(frozen, indent=1) + "\n")
    print(f"wrote {FROZEN}: {len(frozen['values'])} values, {len(frozen['pixels'])} images")
