"""Text-to-image pipelines of the prompts source: FLUX.2-klein and Qwen-Image (tiny, random, CPU),
x_t and x0 capture, the generator's device, CPU offload.

Read: diffusers 0.42.1 pipelines/flux2/pipeline_flux2_klein.py (output_type="latent" returns the raw
32-channel latent after _unpack_latents_with_ids, BatchNorm denormalization and _unpatchify_latents;
latents inside the loop are packed and normalized), pipelines/qwenimage/pipeline_qwenimage.py
(packed latents; _unpack_latents → [B, C, 1, H, W]; true_cfg_scale with a negative prompt), and
nv-tlabs/PiD at 2c8814c pid/_src/inference/pipeline_registry.py (extract_latent: klein's raw output
patchified and BN-normalized again; qwenimage unpacked and squeezed; negative_prompt " "),
step_capture.py (XtCaptureCallback: sigma = sigmas[K]; X0CaptureCallback: x0 = x_in − sigmas[K−1]·v
from a forward hook on the transformer), from_ldm.py (generator on "cuda", the pipeline's device).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from tiny_models import flux2_klein_pipeline, qwenimage_pipeline

from decoders.spaces import fold
from decoders.t2i import FAMILIES, PipelineParams, TextToLatent, place

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def klein(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return flux2_klein_pipeline(tmp_path_factory.mktemp("klein") / "pipeline")


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return qwenimage_pipeline(tmp_path_factory.mktemp("qwen") / "pipeline")


def _pipeline(family: str, folder: Path, **params: Any) -> TextToLatent:
    params = PipelineParams(family=family, weights=str(folder), dtype="float32", steps=3, **params)
    return TextToLatent(params, CPU)


def _tokens_to_grid(packed: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """FLUX.2's tokens are row-major over the (h, w) grid (its position ids): [B, h·w, C] → [B, C, h, w]."""
    return packed.transpose(1, 2).reshape(packed.shape[0], packed.shape[2], height, width)


def _watch(pipe: Any, run: dict[str, Any]) -> dict[int, torch.Tensor]:
    """Run the pipeline to the end (output_type="latent"), keeping the latents after every step."""
    seen: dict[int, torch.Tensor] = {}

    def watch(p: Any, step_index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        seen[step_index] = tensors["latents"].clone()
        return tensors

    run["final"] = pipe(**run["call"], callback_on_step_end=watch).images
    return seen


def _call(seed: int = 5, **extra: Any) -> dict[str, Any]:
    return {"prompt": ["a red cat"], "height": 32, "width": 32, "num_inference_steps": 3,
            "generator": torch.Generator("cpu").manual_seed(seed), "output_type": "latent", **extra}


def test_flux2_klein_latents_are_folded_and_normalized(klein: Path) -> None:
    pipeline = _pipeline("flux2-klein-4b", klein)
    latents, sigma = pipeline.generate(["a red cat"], seed=5, size=(32, 32))
    run = {"call": _call(guidance_scale=1.0)}
    seen = _watch(pipeline.pipe, run)
    raw = run["final"]  # Flux2KleinPipeline's final latent is raw: [B, 1, 16, 16] here
    bn = pipeline.pipe.vae.bn
    expected = (fold(raw, 2) - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        bn.running_var.view(1, -1, 1, 1) + pipeline.pipe.vae.config.batch_norm_eps)
    assert raw.shape == (1, 1, 16, 16) and latents.shape == (1, 4, 8, 8) and sigma == 0.0
    assert torch.allclose(latents, expected, atol=1e-5)
    # The same latent in the loop's packed, normalized form: the two conventions agree.
    assert torch.allclose(latents, _tokens_to_grid(seen[2], 8, 8), atol=1e-4)
    stopped = _pipeline("flux2-klein-4b", klein, stop_at_step=2)
    x_t, sigma_t = stopped.generate(["a red cat"], seed=5, size=(32, 32))
    assert torch.allclose(x_t, _tokens_to_grid(seen[1], 8, 8), atol=1e-6)
    assert sigma_t == pytest.approx(float(stopped.pipe.scheduler.sigmas[2]))  # after K=2 steps: sigmas[K]
    assert stopped.facts() == {"family": "flux2-klein-4b", "pipeline": "Flux2KleinPipeline",
                               "generator_device": "cpu", "cpu_offload": "none", "capture": "x_t",
                               "recommended_stop": None}


def test_x0_capture_matches_pids_transformer_hook(klein: Path) -> None:
    """x0 after K steps = x_in − sigmas[K−1]·v, as PiD's X0CaptureCallback computes it from the
    transformer's input and output (one forward per step: klein runs without CFG here)."""
    pipeline = _pipeline("flux2-klein-4b", klein, stop_at_step=2, capture="x0")
    x0, sigma = pipeline.generate(["a red cat"], seed=5, size=(32, 32))
    forwards: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = pipeline.pipe.transformer.register_forward_hook(
        lambda module, args, kwargs, output: forwards.append((kwargs["hidden_states"], output[0])),
        with_kwargs=True)
    try:
        _watch(pipeline.pipe, {"call": _call(guidance_scale=1.0)})
    finally:
        hook.remove()
    sigmas = pipeline.pipe.scheduler.sigmas
    x_in, velocity = forwards[1]  # the second forward pass: K = 2
    expected = _tokens_to_grid(x_in.float() - float(sigmas[1]) * velocity.float(), 8, 8)
    assert sigma == pytest.approx(float(sigmas[1])) and torch.allclose(x0, expected, atol=1e-5)
    assert pipeline.pipe.scheduler.step.__func__ is type(pipeline.pipe.scheduler).step  # unwrapped again


def test_qwenimage_latents_are_unpacked(qwen: Path) -> None:
    pipeline = _pipeline("qwenimage", qwen)
    assert (FAMILIES["qwenimage"].guidance_kwarg, FAMILIES["qwenimage"].call_kwargs) == (
        "true_cfg_scale", {"negative_prompt": " "})
    latents, sigma = pipeline.generate(["a red cat"], seed=2, size=(32, 32))
    run = {"call": _call(seed=2, true_cfg_scale=4.0, negative_prompt=" ")}
    _watch(pipeline.pipe, run)
    packed = run["final"]  # [B, (h/2)(w/2), C·4] with the 2×2 patch innermost
    batch, _, channels = packed.shape
    expected = packed.view(batch, 4, 4, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(
        batch, channels // 4, 8, 8)
    assert latents.shape == (1, 4, 8, 8) and sigma == 0.0 and torch.allclose(latents, expected)
    stopped = _pipeline("qwenimage-2512", qwen, stop_at_step=1)
    _, sigma_t = stopped.generate(["a red cat"], seed=2, size=(32, 32))
    assert sigma_t == pytest.approx(float(stopped.pipe.scheduler.sigmas[1]))


def test_generator_device_and_params(klein: Path) -> None:
    on_pipeline = _pipeline("flux2-klein-9b", klein).generate(["a cat"], seed=1, size=(32, 32))[0]
    on_cpu = _pipeline("flux2-klein-9b", klein, generator_device="cpu").generate(["a cat"], 1, (32, 32))[0]
    assert torch.equal(on_pipeline, on_cpu)  # on a CPU pipeline both draw on the CPU
    with pytest.raises(ValidationError, match="capture = 'x0' is defined for flow-matching pipelines"):
        PipelineParams(family="sdxl", stop_at_step=4, capture="x0")
    with pytest.raises(ValidationError, match="capture = 'x0' needs stop_at_step"):
        PipelineParams(family="flux1", capture="x0")
    families = ("flux1", "sd3", "sdxl", "flux2", "qwenimage", "zimage")
    assert [FAMILIES[f].recommended_stop for f in families] == [24, 24, 26, 46, 44, 46]


class _StubPipe:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def to(self, device: torch.device) -> _StubPipe:
        self.calls.append(("to", device))
        return self

    def enable_model_cpu_offload(self, device: torch.device) -> None:
        self.calls.append(("model", device))

    def enable_sequential_cpu_offload(self, device: torch.device) -> None:
        self.calls.append(("sequential", device))


def test_cpu_offload_placement() -> None:
    gpu = torch.device("cuda:1")
    for offload, expected in (("none", "to"), ("model", "model"), ("sequential", "sequential")):
        stub = _StubPipe()
        place(stub, offload, gpu)
        assert stub.calls == [(expected, gpu)]
    with pytest.raises(ValueError, match="cpu_offload = 'model' moves components to a GPU when they run"):
        place(_StubPipe(), "model", CPU)
