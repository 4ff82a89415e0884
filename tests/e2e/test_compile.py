"""Compiled decoding on CPU (torch.compile, aot_eager/eager backends): compilation happens in the
warm-up call, its time is recorded apart per stage, and it is never inside the timed latency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from tiny_models import TINY_VAE

from decoders.base import DecodeBatch
from decoders.cascade import Cascade, CascadeParams
from decoders.compiled import CompileParams, requests_compile
from decoders.vae import VaeDecoder
from harness.runner import Runner
from harness.sources.cache import TensorCache
from harness.store import RunStore
from harness.suite import SuiteError, load_suite

CPU = torch.device("cpu")
VAE = {"space": "flux1", "weights": "random", "config": TINY_VAE}


def _batch(size: int = 4) -> DecodeBatch:
    latents = torch.randn(1, 16, size, size, generator=torch.Generator().manual_seed(0))
    return DecodeBatch(latents=latents, input_size=(size * 8, size * 8), output_size=(size * 32, size * 32),
                       seeds=[0], sigmas=[0.0], prompts=["a cat"])


def test_compile_params_and_where_they_are_asked_for() -> None:
    with pytest.raises(ValidationError, match="'max-autotune' is an inductor mode; the 'eager' backend"):
        CompileParams(compile=True, compile_mode="max-autotune", compile_backend="eager")
    assert CompileParams(compile=True).compile_kwargs() == {"backend": "inductor", "mode": "default"}
    assert CompileParams(compile_backend="aot_eager").compile_kwargs() == {"backend": "aot_eager"}
    resample = {"kind": "resample", "scale": 4}
    assert not requests_compile(CascadeParams(vae=VAE, upscaler=resample))
    assert requests_compile(CascadeParams(vae={**VAE, "compile": True}, upscaler=resample))  # one stage


def test_vae_decoder_compiles_its_decoder_module() -> None:
    plain = VaeDecoder(VaeDecoder.Params(**VAE))
    plain.load(CPU, torch.float32)
    compiled = VaeDecoder(VaeDecoder.Params(**VAE, compile=True, compile_backend="aot_eager"))
    compiled.load(CPU, torch.float32)
    assert compiled.vae.state_dict_sha256 == plain.vae.state_dict_sha256  # compiled in place
    with torch.inference_mode():
        first, second = compiled.decode(_batch()), compiled.decode(_batch())
        assert torch.allclose(first, plain.decode(_batch()), atol=1e-5) and torch.equal(first, second)
    fact = compiled.facts()["compile"]
    assert fact["stages"]["vae_decode"]["target"] == "AutoencoderKL.decoder"
    assert fact["stages"]["vae_decode"]["compiled"] and fact["calls_with_compilation"] == [1]
    assert (fact["decode_calls"], fact["last_call_compile_ms"], fact["backend"]) == (2, 0.0, "aot_eager")


def test_cascade_records_per_stage_what_compiled(tmp_path: Path) -> None:
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    weights = tmp_path / "tiny_esrgan_x4.pth"
    torch.save(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=4).state_dict(), weights)
    spandrel = {"kind": "spandrel", "weights": str(weights), "scale": 4, "compile": True,
                "compile_backend": "eager"}
    cascade = Cascade(CascadeParams(vae=VAE, upscaler=spandrel))
    cascade.load(CPU, torch.float32)
    with torch.inference_mode():
        cascade.decode(_batch())
    stages = cascade.facts()["compile"]["stages"]
    assert stages["vae_decode"] == {"target": "nothing (not requested)", "compiled": False, "compilations": 0,
                                    "compile_ms": 0.0, "note": "vae.compile = false"}
    assert stages["upscale"]["target"] == "spandrel ESRGAN" and stages["upscale"]["compiled"]
    resample = Cascade(CascadeParams(vae={**VAE, "compile": True, "compile_backend": "eager"},
                                     upscaler={"kind": "resample", "scale": 4}))
    resample.load(CPU, torch.float32)
    with torch.inference_mode():
        resample.decode(_batch())
    stages = resample.facts()["compile"]["stages"]
    assert stages["vae_decode"]["compiled"] and stages["vae_decode"]["target"] == "AutoencoderKL.decoder"
    assert stages["upscale"]["compiled"] is False and stages["upscale"]["note"] == "resample: a fixed kernel"


SUITE = """
name = "compiled"
seeds = [0]
metrics = []

[source]
kind = "latents"
space = "flux1"
synthetic = 1

[resolution]
input = 64
output_scale = 1

[[decoder]]
name = "tae"
label = "tae-compiled"
params = {{variant = "taef1", weights = "random", compile = true, compile_backend = "aot_eager"}}

[timing]
warmup = {warmup}
repeats = 3
threads = 1
timeout_s = 300
"""


def test_compile_time_is_excluded_from_the_timed_latency(write_suite, tmp_path: Path) -> None:
    """A real run (spawned worker): the warm-up call compiles, the three timed calls do not."""
    suite = load_suite(write_suite(SUITE.format(warmup=1)))
    outcome = Runner.new(suite, tmp_path / "run", TensorCache(tmp_path / "cache")).run()
    records, _ = RunStore.open(outcome.run_dir).records()
    decode = next(r for r in records if r["kind"] == "decode")
    assert decode["status"] == "ok", decode.get("message")
    compiled = decode["facts"]["compile"]
    print("compile fact:", json.dumps(compiled), "warm-up:", decode["warmup"],
          "latency ms:", decode["latency"]["samples_ms"])
    assert compiled["stages"]["decode"]["compiled"] is True
    assert compiled["decode_calls"] == 1 + 3 and compiled["calls_with_compilation"] == [1]  # warm-up only
    assert compiled["last_call_compile_ms"] == 0.0
    # The compile time sits inside the warm-up call; the timed calls 2-4 had no compile event at all.
    assert decode["warmup"]["first_call_ms"] >= compiled["compile_ms"] > 0
    assert decode["latency"]["n"] == 3
    with pytest.raises(SuiteError, match=r"decoder\[0\]\.params\.compile: compile = true needs timing"):
        load_suite(write_suite(SUITE.format(warmup=0)))
