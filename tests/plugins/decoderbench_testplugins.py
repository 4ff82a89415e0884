"""Test-only decoders, found through a real entry point (see the .dist-info next to this file).

`fault` behaves like a bilinear upsampler unless told to fail: on every case,
or only on cases whose seed is listed in `fail_seeds`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from decoders.base import Consumes, DecodeBatch, Decoder, DecoderSpec, DecoderUnavailable
from decoders.plugins import Params


class FaultParams(Params):
    mode: Literal["ok", "oom", "cuda_oom", "load_oom", "import_error", "nan", "crash", "sleep", "raise",
                  "range", "unavailable", "load_crash", "grad_probe", "tiny", "aspect"] = "ok"
    fail_seeds: list[int] | None = None  # None: every case
    sleep_s: float = 0.0
    sleep_per_image_s: float = 0.0  # a known decode time: this × the batch size, in every mode
    slow_facts_s: float = 0.0  # time spent in facts(), which the worker calls outside the timed region
    set_global_state: bool = False
    hog_bytes_per_pixel: int = 0  # touch this much memory per output pixel (memory-wall tests)
    die_once_marker: str | None = None  # SIGKILL the worker on its first decode, noted in this file
    report_env: list[str] = Field(default_factory=list)  # facts: these variables, the parent pid
    oom_from_px: int | None = None  # cuda_oom: only outputs with a side of at least this many px
    quality_not_applicable: str | None = None  # facts: say this decoder's quality means nothing


def cuda_oom(width: int, height: int) -> torch.OutOfMemoryError:
    """The exception a CUDA allocation failure raises, as torch words it (injected on the CPU)."""
    need = width * height * 3 * 4 * 2**10 / 2**30
    return torch.cuda.OutOfMemoryError(
        f"CUDA out of memory. Tried to allocate {need:.2f} GiB. GPU 0 has a total capacity of "
        "139.80 GiB of which 1.20 GiB is free. Of the allocated memory 120.00 GiB is allocated by PyTorch")


class FaultDecoder(Decoder):
    spec = DecoderSpec(name="fault", consumes=Consumes.LATENT, latent_spaces=("pixels",),
                       summary="test decoder that fails on demand")
    Params = FaultParams

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        if self.params.mode == "unavailable":
            raise DecoderUnavailable("fault-weights.safetensors not found: put it in /nowhere")
        if self.params.mode == "load_crash":
            ctypes.string_at(0)
        if self.params.mode == "load_oom":
            raise cuda_oom(4096, 4096)
        if self.params.mode == "import_error":
            import decoderbench_missing_dependency  # noqa: F401  (a library that is not installed)
        if self.params.set_global_state:  # what PiD does on load
            torch.manual_seed(0)
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.set_float32_matmul_precision("high")

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        assert batch.latents is not None
        width, height = batch.output_size
        out = F.interpolate((batch.latents + 1) / 2, size=(height, width), mode="bilinear")
        out = out.clamp(0, 1)
        failing = self.params.fail_seeds is None or any(
            s in self.params.fail_seeds for s in batch.seeds)
        mode = self.params.mode if failing else "ok"
        if mode == "oom":
            torch.empty(2**50, dtype=torch.uint8)  # a real allocation failure
        if mode == "cuda_oom" and max(width, height) >= (self.params.oom_from_px or 0):
            raise cuda_oom(width, height)
        if mode == "nan":
            out[:, :, 0, 0] = float("nan")
        if mode == "range":
            out = out * 2 - 1
        if mode == "tiny":  # 10×10 whatever was asked (a plug-in that ignores output_size)
            out = F.interpolate(out, size=(10, 10), mode="bilinear")
        if mode == "aspect":  # half the height: the aspect ratio changed
            out = F.interpolate(out, size=(height // 2, width), mode="bilinear")
        if mode == "crash":
            ctypes.string_at(0)  # segmentation fault
        if mode == "sleep":
            time.sleep(self.params.sleep_s)
        if self.params.sleep_per_image_s:
            time.sleep(self.params.sleep_per_image_s * batch.latents.shape[0])
        if mode == "raise":
            raise ValueError("decoder exploded on purpose")
        marker = self.params.die_once_marker
        if marker is not None and not os.path.exists(marker):
            with open(marker, "w") as handle:
                handle.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # a killed worker, mid-unit
        if self.params.hog_bytes_per_pixel:
            hog = torch.ones(width * height * self.params.hog_bytes_per_pixel, dtype=torch.uint8)
            out = out + float(hog[-1]) * 0  # keep the allocation alive until here
        self._grad_enabled = torch.is_grad_enabled()
        return out

    def facts(self) -> dict[str, object]:
        time.sleep(self.params.slow_facts_s)
        facts: dict[str, object] = {"mode": self.params.mode,
                                    "grad_enabled": getattr(self, "_grad_enabled", None)}
        if self.params.report_env:
            facts["env"] = {name: os.environ.get(name) for name in self.params.report_env}
            facts["parent_pid"] = os.getppid()
        if self.params.quality_not_applicable:
            facts["quality_not_applicable"] = self.params.quality_not_applicable
        return facts


class SeededNoiseDecoder(Decoder):
    """Stochastic: bilinear plus seed-dependent noise (drawn from the batch seeds)."""

    spec = DecoderSpec(name="seeded-noise", consumes=Consumes.LATENT, latent_spaces=("pixels",),
                       stochastic=True, summary="test decoder whose output depends on the seed")

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        assert batch.latents is not None
        width, height = batch.output_size
        out = F.interpolate((batch.latents + 1) / 2, size=(height, width), mode="bilinear")
        noise = torch.stack([
            torch.rand(out.shape[1:], generator=torch.Generator().manual_seed(seed))
            for seed in batch.seeds
        ])
        return (0.9 * out + 0.1 * noise.to(out)).clamp(0, 1)


class SlowImportDecoder(SeededNoiseDecoder):
    """Like seeded-noise, with a module that takes seconds to import in its preload list."""

    spec = DecoderSpec(name="slow-import", consumes=Consumes.LATENT, latent_spaces=("pixels",),
                       stochastic=True, summary="test decoder whose preload takes seconds to import")
    preload = ("decoderbench_slowimport",)


class TiledParams(Params):
    tile_px: int = 16
    step: float = 0.0


class TiledDecoder(Decoder):
    """Bilinear, decoded in tiles whose brightness is offset by `step` per tile, so seams show."""

    spec = DecoderSpec(name="tiled", consumes=Consumes.LATENT, latent_spaces=("pixels",),
                       native_scale=2.0, summary="test decoder with a visible tile grid")
    Params = TiledParams

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self._size = (0, 0)

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        assert batch.latents is not None
        width, height = batch.output_size
        self._size = (width, height)
        out = F.interpolate((batch.latents + 1) / 2, size=(height, width), mode="bilinear")
        tile = self.params.tile_px
        for ty, y in enumerate(range(0, height, tile)):
            for tx, x in enumerate(range(0, width, tile)):
                out[:, :, y:y + tile, x:x + tile] += self.params.step * ((tx + ty) % 2)
        return out.clamp(0, 1)

    def facts(self) -> dict[str, object]:
        width, height = self._size
        tile = self.params.tile_px
        return {"tile_grid": {"tile_px": tile, "overlap_px": 0, "native_size": [width, height],
                              "x_seams": list(range(tile, width, tile)),
                              "y_seams": list(range(tile, height, tile))}}


class PainterParams(Params):
    reds: dict[str, int] = Field(default_factory=dict)  # prompt → red of seed 0; seed s paints red + s


class PromptPainter(Decoder):
    """Text-to-pixel stand-in: a flat image whose red value says which prompt and seed it is for."""

    spec = DecoderSpec(name="prompt-painter", consumes=Consumes.PROMPT, stochastic=True, needs_prompt=True,
                       summary="test text-to-pixel decoder: a flat colour per prompt and seed")
    Params = PainterParams

    def load(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device

    def decode(self, batch: DecodeBatch) -> torch.Tensor:
        width, height = batch.output_size
        out = torch.zeros(batch.size, 3, height, width, device=self.device)
        for index, (prompt, seed) in enumerate(zip(batch.prompts, batch.seeds, strict=True)):
            out[index, 0] = (self.params.reds.get(prompt or "", 100) + seed) / 255
        return out


def _script(variable: str) -> dict:
    import json
    import os

    with open(os.environ[variable]) as handle:
        return json.load(handle)


def _image_key(image) -> str:
    """Scripted backends tell test images apart by their rounded mean red value."""
    return str(round(float(image[..., 0].mean())))


class ScriptedGenEvalBackend:
    """GenEval backend that 'detects' what $DECODERBENCH_TEST_GENEVAL_SCRIPT lists per image (tests only):
    {"<mean red>": [{"class", "box", "score", "colour"}]}."""

    def load(self, device: torch.device) -> None:
        self.script = _script("DECODERBENCH_TEST_GENEVAL_SCRIPT")

    def detect(self, image):
        from harness.metrics.geneval import Detection

        found: dict = {}
        for item in self.script.get(_image_key(image), []):
            found.setdefault(item["class"], []).append(Detection(tuple(item["box"]), item["score"]))
        return found

    def colours(self, image, objects, classname):
        listed = {tuple(i["box"]): i.get("colour") for i in self.script.get(_image_key(image), [])
                  if i["class"] == classname}
        return [listed[o.box] for o in objects]

    def weights(self) -> dict[str, str]:
        return {"scripted": "none"}


class ScriptedVQABackend:
    """Answers what $DECODERBENCH_TEST_VQA_SCRIPT says per image (tests only): {"<mean red>":
    ["question", ...]} answers " Yes" to the listed questions, {"<mean red>": {"question": "answer"}}
    answers exactly that; anything else is "no"."""

    def load(self, device: torch.device) -> None:
        self.script = _script("DECODERBENCH_TEST_VQA_SCRIPT")

    def answer(self, image, questions: list[str]) -> list[str]:
        listed = self.script.get(_image_key(image), [])
        if isinstance(listed, dict):
            return [listed.get(q, "no") for q in questions]
        return [" Yes" if q in set(listed) else "no" for q in questions]

    def weights(self) -> dict[str, str]:
        return {}
