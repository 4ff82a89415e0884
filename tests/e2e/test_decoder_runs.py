"""Suites with learned decoders end to end: real spawned workers, a spawned source worker,
identical inputs for every decoder, unavailable decoders recorded while the others complete."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import TINY_VAE, sd3_pipeline

from decoders.t2i import PipelineParams, TextToLatent
from decoders.tae import TaeParams, load_half
from harness.runner import Runner
from harness.sources.cache import TensorCache, tensor_sha256
from harness.store import RunStore
from harness.suite import load_suite

TINY = "{" + ", ".join(f"{k} = {json.dumps(v)}" for k, v in TINY_VAE.items()) + "}"


def _run(write_suite, tmp_path: Path, text: str) -> tuple[Path, list[dict]]:
    suite = load_suite(write_suite(text))
    outcome = Runner.new(suite, tmp_path / "run", TensorCache(tmp_path / "cache")).run()
    records, warning = RunStore.open(outcome.run_dir).records()
    assert warning is None
    return outcome.run_dir, records


def _decodes(records: list[dict]) -> dict[tuple[str, str], dict]:
    units = Counter((r["decoder"], r["case"]) for r in records if r["kind"] == "decode")
    assert all(n == 1 for n in units.values())
    return {(r["decoder"], r["case"]): r for r in records if r["kind"] == "decode"}


def test_images_source_with_a_learned_encoder(write_suite, tmp_path: Path, image_folder: Path) -> None:
    weights = tmp_path / "taef1"  # a decoder with weights from files: its quality would be measurable...
    weights.mkdir()
    for part in ("encoder", "decoder"):
        torch.save(load_half(TaeParams(variant="taef1", weights="random"), part).state_dict(),
                   weights / f"taef1_{part}.pth")
    text = f"""
name = "learned"
seeds = [0]
sigmas = [0.0, 0.3]
metrics = ["psnr"]

[source]
kind = "images"
folder = "{image_folder}"
limit = 2
encoder = {{name = "tae", params = {{variant = "taef1", weights = "random"}}}}

[resolution]
input = 32
output_scale = 2

[[decoder]]
name = "vae-tiled"
params = {{space = "flux1", weights = "random", tile_px = 16, overlap_px = 8, config = {TINY}}}

[[decoder]]
name = "tae"
params = {{variant = "taef1", weights = "random"}}

[[decoder]]
name = "tae"
label = "tae-files"
params = {{variant = "taef1", weights = "{weights}"}}

[[decoder]]
name = "pid"

[[decoder]]
name = "l2p"
params = {{variant = "4k"}}     # 64×64: a multiple of its patch (the 1K DiT needs (H/16)·(W/16) % 32 = 0)

[timing]
warmup = 1
repeats = 1
timeout_s = 120
"""
    run_dir, records = _run(write_suite, tmp_path, text)
    decodes = _decodes(records)
    cases = RunStore.open(run_dir).cases()
    assert len(cases) == 4
    for case in cases:  # the very bytes the source worker made reach every decoder
        received = {decodes[(d, case["id"])]["input_sha256"] for d in ("vae-tiled", "tae")}
        assert received == {case["input_sha256"]}
        assert tensor_sha256(load_file(case["input_path"])["latent"]) == case["input_sha256"]
        assert case["latent_shape"] == [16, 4, 4] and case["input_sigma"] == case["sigma"]
    statuses = Counter((d, r["status"]) for (d, _), r in decodes.items())
    assert statuses == {("vae-tiled", "ok"): 4, ("tae", "ok"): 4, ("tae-files", "ok"): 4,
                        ("pid", "unavailable"): 4, ("l2p", "unavailable"): 4}
    pid_message = next(r["message"] for (d, _), r in decodes.items() if d == "pid")
    assert "PiD runs on CUDA only" in pid_message
    l2p_message = next(r["message"] for (d, _), r in decodes.items() if d == "l2p")
    assert "git clone https://github.com/HaojunChen663/PixVerve-95K" in l2p_message
    tiled = next(r for (d, _), r in decodes.items() if d == "vae-tiled")
    assert tiled["facts"]["tile_grid"] == {"tile_px": 16, "overlap_px": 8, "x_seams": [12, 20],
                                           "y_seams": [12, 20], "x_overlaps": [8, 8], "y_overlaps": [8, 8],
                                           "native_size": [32, 32]}
    assert tiled["native_size"] == [32, 32] and tiled["resampled"] == {"from": [32, 32], "method": "lanczos"}
    metrics = [r for r in records if r["kind"] == "metric"]
    # ... but not on latents a random-weight encoder made: every quality value says why.
    assert len(metrics) == 12 and {r["status"] for r in metrics} == {"not_applicable"}
    (message,) = {r["message"] for r in metrics}
    assert message.startswith("random-weight encoder 'tae' upstream")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    source = manifest["source_model"]
    assert (source["component"], source["name"], source["process"]) == ("encoder", "tae", "source worker")
    assert source["pid"] not in (None, os.getpid())  # the encoder ran in its own process
    assert list(source["weights"]) == ["random:taef1_encoder"] == list(manifest["encoder"]["weights"])
    assert source["quality_not_applicable"] == message
    assert (run_dir / "logs" / "source.log").exists()


@pytest.fixture(scope="module")
def sd3_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sd3_pipeline(tmp_path_factory.mktemp("sd3") / "pipeline")


def test_early_termination_captures_x_t_after_k_steps(sd3_folder: Path) -> None:
    common = {"family": "sd3", "weights": str(sd3_folder), "steps": 4, "dtype": "float32",
              "without": ["text_encoder_3", "tokenizer_3"]}
    stopped = TextToLatent(PipelineParams(**common, stop_at_step=2), torch.device("cpu"))
    latents, sigma = stopped.generate(["a red cat"], seed=5, size=(64, 64))
    assert latents.shape == (1, 16, 8, 8)
    assert sigma == pytest.approx(float(stopped.pipe.scheduler.sigmas[2])) and 0 < sigma < 1
    # The same run to the end, watched after step 2: the captured x_t is that latent.
    full = TextToLatent(PipelineParams(**common), torch.device("cpu"))
    seen = {}

    def watch(pipe, step_index, timestep, tensors):
        seen.setdefault(step_index, tensors["latents"].clone())
        return tensors

    full.pipe(prompt=["a red cat"], height=64, width=64, num_inference_steps=4, guidance_scale=4.0,
              generator=torch.Generator("cpu").manual_seed(5), output_type="latent",
              callback_on_step_end=watch)
    assert torch.allclose(latents, seen[1], atol=1e-6)
    final, final_sigma = full.generate(["a red cat"], seed=5, size=(64, 64))
    assert final_sigma == 0.0 and not torch.allclose(final, latents)


def test_prompts_source_feeds_every_decoder_the_same_latents(
        write_suite, tmp_path: Path, sd3_folder: Path) -> None:
    weights = tmp_path / "taesd3"  # weights from files (random values): quality is measurable
    weights.mkdir()
    for part in ("encoder", "decoder"):
        torch.save(load_half(TaeParams(variant="taesd3", weights="random"), part).state_dict(),
                   weights / f"taesd3_{part}.pth")
    text = f"""
name = "from-text"
input_seeds = [0, 1]
metrics = ["psnr"]

[source]
kind = "prompts"
prompts = ["a red cat", "a blue house"]

[source.pipeline]
family = "sd3"
weights = "{sd3_folder}"
steps = 4
stop_at_step = 2
dtype = "float32"
without = ["text_encoder_3", "tokenizer_3"]

[resolution]
input = 64
output_scale = 1

[[decoder]]
name = "tae"
label = "tae-random"
params = {{variant = "taesd3", weights = "random"}}

[[decoder]]
name = "tae"
params = {{variant = "taesd3", weights = "{weights}"}}

[timing]
warmup = 0
repeats = 1
timeout_s = 120
"""
    run_dir, records = _run(write_suite, tmp_path, text)
    decodes = _decodes(records)
    cases = RunStore.open(run_dir).cases()
    assert len(cases) == 4 and len({c["input_sha256"] for c in cases}) == 4  # prompt × input seed
    for case in cases:
        received = {decodes[(d, case["id"])]["input_sha256"] for d in ("tae-random", "tae")}
        assert received == {case["input_sha256"]}
        assert case["reference"] is None and 0 < case["input_sigma"] < 1
        assert decodes[("tae", case["id"])]["status"] == "ok"
    # What the spawned pipeline made equals what the pipeline makes here.
    direct = TextToLatent(PipelineParams(family="sd3", weights=str(sd3_folder), steps=4, stop_at_step=2,
                                         dtype="float32", without=["text_encoder_3", "tokenizer_3"]),
                          torch.device("cpu"))
    first = next(c for c in cases if c["prompt"] == "a red cat" and c["input_seed"] == 1)
    latents, sigma = direct.generate(["a red cat"], seed=1, size=(64, 64))
    assert torch.allclose(load_file(first["input_path"])["latent"], latents[0], atol=1e-5)
    assert first["input_sigma"] == pytest.approx(sigma)
    metrics = {(r["decoder"], r["case"]): r for r in records if r["kind"] == "metric"}
    assert len(metrics) == 8 and {r["status"] for r in metrics.values()} == {"not_applicable"}
    messages = {d: {r["message"] for (e, _), r in metrics.items() if e == d} for d in ("tae-random", "tae")}
    assert messages["tae-random"] == {"random weights: performance-only"}
    assert messages["tae"] == {
        "no reference image: the source has none for this case (latents or prompts)"}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["source_model"]["component"] == "pipeline"
    assert manifest["source_model"]["facts"]["generator_device"] == "cpu"  # the pipeline's device
    assert manifest["source_model"]["facts"]["capture"] == "x_t"
    assert any(key.startswith(f"{sd3_folder}/transformer/") for key in manifest["source_model"]["weights"])
