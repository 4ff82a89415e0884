"""The `latents` and `prompts` sources: listing, validation and preparation (no model runs here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from decoders.spaces import fold
from harness.cases import expand
from harness.sources.cache import TensorCache, tensor_sha256
from harness.sources.listing import list_items
from harness.sources.prepare import InputPreparer, SourceError, source_protocol
from harness.suite import SuiteError, load_suite

LATENTS_SUITE = """
name = "latents"
seeds = [0, 1]
sigmas = [0.0, 0.5]
metrics = ["psnr"]

[source]
kind = "latents"
space = "{space}"
{where}

[resolution]
input = [64, [128, 64]]
output_scale = 2

[[decoder]]
name = "{decoder}"
params = {params}
"""


def _latents_suite(write_suite, where: str, space: str = "flux1", decoder: str = "vae",
                   params: str = '{space = "flux1", weights = "random"}'):
    return load_suite(write_suite(LATENTS_SUITE.format(space=space, where=where, decoder=decoder,
                                                       params=params)))


def _save(path: Path, tensor: torch.Tensor, key: str = "latent") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: tensor}, str(path))
    return path


def test_latent_files_folder_and_manifest(tmp_path: Path, write_suite) -> None:
    folder = tmp_path / "latents"
    _save(folder / "a.safetensors", torch.randn(16, 8, 8))
    _save(folder / "sub" / "b.safetensors", torch.randn(1, 16, 8, 16))  # [1, C, h, w] is accepted
    (folder / "a.txt").write_text("a red square\n")
    suite = _latents_suite(write_suite, f'folder = "{folder}"')
    items = [entry.item for entry in list_items(suite)]
    assert [(i.id, i.prompt, i.input_size) for i in items] == [
        ("a.safetensors", "a red square", (64, 64)), ("sub/b.safetensors", None, (128, 64))]
    cases = expand(items, suite.model.resolution.pairs(), suite.model.sigmas, suite.model.seeds,
                   source_protocol(suite))
    assert len(cases) == 2 * 2 * 2  # each latent at its own size only, × sigmas × seeds
    assert {c.output_size for c in cases if c.item_id == "sub/b.safetensors"} == {(256, 128)}
    _save(folder / "c.safetensors", torch.randn(4, 8, 8))
    with pytest.raises(SourceError, match=r"c.safetensors: latent of shape \[4, 8, 8\] is not in the flux1"):
        list_items(suite)
    (folder / "c.safetensors").unlink()
    _save(folder / "d.safetensors", torch.randn(16, 4, 4))
    with pytest.raises(SourceError, match=r"stands for a 32x32 image, which is not among resolution\.input"):
        list_items(suite)
    (folder / "d.safetensors").unlink()
    _save(folder / "e.safetensors", torch.randn(16, 8, 8), key="z")
    with pytest.raises(SourceError, match=r"no tensor named 'latent' \(found \['z'\]\)"):
        list_items(suite)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"latent": "latents/a.safetensors", "id": "one", "prompt": "p"}) + "\n"
                        + json.dumps({"latent": "latents/a.safetensors", "seed": 3}) + "\n")
    suite = _latents_suite(write_suite, f'manifest = "{manifest}"')
    with pytest.raises(SourceError, match=r"m.jsonl:2: unknown keys \['seed'\]"):
        list_items(suite)


def test_synthetic_latents_are_deterministic(write_suite) -> None:
    suite = _latents_suite(write_suite, "synthetic = 2")
    entries = list_items(suite)
    assert [e.item.id for e in entries] == ["synthetic-64x64-0", "synthetic-64x64-1", "synthetic-128x64-0",
                                            "synthetic-128x64-1"]
    first, again = entries[0].load_latent(), list_items(suite)[0].load_latent()
    assert first.shape == (16, 8, 8) and torch.equal(first, again)
    assert not torch.equal(first, entries[1].load_latent())
    assert abs(float(first.std()) - 1) < 0.3


def test_prompts_inline_text_and_jsonl(tmp_path: Path, write_suite) -> None:
    (tmp_path / "p.txt").write_text("a cat\n\na dog\n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "a fox", "id": "fox"}\n')
    text = ('name = "p"\n[source]\nkind = "prompts"\nprompts = ["a bird"]\nfile = "{file}"\n'
            '[resolution]\ninput = 128\noutput_scale = 1\n[[decoder]]\nname = "l2p"\n')
    items = [e.item for e in list_items(load_suite(write_suite(text.format(file="p.txt"))))]
    assert [(i.id, i.prompt) for i in items] == [("prompt-0000", "a bird"), ("p-0000", "a cat"),
                                                 ("p-0001", "a dog")]
    assert items[0].sha256 == items[0].sha256 and items[1].sha256 != items[2].sha256
    items = [e.item for e in list_items(load_suite(write_suite(text.format(file="p.jsonl"))))]
    assert [(i.id, i.prompt) for i in items] == [("prompt-0000", "a bird"), ("fox", "a fox")]


@pytest.mark.parametrize(("text", "key", "words"), [
    ('[source]\nkind = "videos"', "source.kind", "expected one of 'images', 'latents', 'prompts'"),
    ('[source]\nkind = "latents"\nspace = "flux3"\nsynthetic = 1', "source.space", "unknown latent space"),
    ('[source]\nkind = "latents"\nspace = "flux1"', "source", "folder and/or manifest, or synthetic"),
    ('[source]\nkind = "prompts"', "source", "needs prompts, file and/or benchmark"),
    ('[source]\nkind = "prompts"\nprompts = ["a"]\n[source.pipeline]\nfamily = "sd3"\nsteps = 4\n'
     'stop_at_step = 9', "source.pipeline", "stop_at_step 9 is after the last step (4)"),
    ('[source]\nkind = "prompts"\nprompts = ["a"]', "decoder[0].name",
     "consumes latents, but the prompts source has no pipeline"),
    ('[source]\nkind = "latents"\nspace = "sdxl"\nsynthetic = 1', "decoder[0].name",
     "consumes latent spaces ['flux1'], but the source produces 'sdxl'"),
])
def test_source_kinds_are_validated(write_suite, text: str, key: str, words: str) -> None:
    body = ('name = "v"\n[resolution]\ninput = 64\noutput_scale = 1\n[[decoder]]\nname = "vae"\n'
            'params = {space = "flux1", weights = "random"}\n' + text + "\n")
    with pytest.raises(SuiteError) as info:
        load_suite(write_suite(body))
    lines = [line for line in str(info.value).splitlines() if f": {key}: " in line]
    assert any(words in line for line in lines), str(info.value)


def test_output_sides_must_be_what_the_decoder_makes(write_suite) -> None:
    body = ('name = "v"\n[source]\nkind = "prompts"\nprompts = ["a"]\n[resolution]\ninput = {size}\n'
            'output_scale = 1\n[[decoder]]\nname = "l2p"\nparams = {{variant = "{variant}"}}\n')
    with pytest.raises(SuiteError, match=r"decoder\[0\].name: decoder 'l2p' makes sides in multiples of 16, "
                       r"not 100x100"):
        load_suite(write_suite(body.format(size=100, variant="1k")))
    with pytest.raises(SuiteError, match=r"decoder\[0\].name: L2P 1K fails at 1008x1008: \(H/16\)·\(W/16\) "
                       r"= 3969 is not a multiple of 32"):  # refused before anything loads
        load_suite(write_suite(body.format(size=1008, variant="1k")))
    load_suite(write_suite(body.format(size="[1024, 1040]", variant="1k")))  # patch 16, not 64
    with pytest.raises(SuiteError, match="makes sides in multiples of 160, not 4096x4096"):
        load_suite(write_suite(body.format(size=4096, variant="10k")))


def test_early_stop_requires_its_own_sigma(write_suite) -> None:
    body = ('name = "v"\nsigmas = [0.0, 0.2]\n[source]\nkind = "prompts"\nprompts = ["a"]\n'
            'pipeline = {family = "sd3", stop_at_step = 2}\n[resolution]\ninput = 64\noutput_scale = 1\n'
            '[[decoder]]\nname = "vae"\nparams = {space = "sd3", weights = "random"}\n')
    with pytest.raises(SuiteError, match="stop_at_step captures x_t with its own sigma"):
        load_suite(write_suite(body))


def test_latents_are_prepared_noised_and_cached(tmp_path: Path, write_suite) -> None:
    """flux2 files in the unpacked form are folded; a manifest's reference image is prepared."""
    latent = torch.randn(32, 8, 8, generator=torch.Generator().manual_seed(0))
    _save(tmp_path / "x.safetensors", latent)
    rgb = (np.random.default_rng(0).random((80, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    (tmp_path / "m.jsonl").write_text(json.dumps({"latent": "x.safetensors", "reference": "x.png",
                                                  "prompt": "noise"}) + "\n")
    suite = _latents_suite(write_suite, f'manifest = "{tmp_path / "m.jsonl"}"', space="flux2",
                           params='{space = "flux2", weights = "random"}')
    items = list_items(suite)
    model = suite.model
    cases = expand([e.item for e in items], model.resolution.pairs(), model.sigmas, model.seeds,
                   source_protocol(suite))
    cache = TensorCache(tmp_path / "cache")
    prepared = {(p.case.sigma, p.case.seed): p for p in InputPreparer(suite, cache).prepare(cases, items)}
    clean = prepared[(0.0, 0)]
    stored = load_file(str(clean.input_path))
    assert torch.equal(stored["latent"], fold(latent[None], 2)[0])  # stored in the declared space
    assert clean.latent_shape == (128, 4, 4) and clean.input_sigma == 0.0
    assert clean.reference_key is not None and clean.reference_path.exists()
    noisy = prepared[(0.5, 1)]
    assert noisy.input_path == prepared[(0.5, 0)].input_path  # decoder seeds share the input
    eps = torch.randn((128, 4, 4), generator=torch.Generator().manual_seed(noisy.case.input_seed))
    assert torch.allclose(load_file(str(noisy.input_path))["latent"], 0.5 * stored["latent"] + 0.5 * eps)
    assert noisy.input_sigma == 0.5 and noisy.input_sha256 == tensor_sha256(
        load_file(str(noisy.input_path))["latent"])
    again = list(InputPreparer(suite, cache).prepare(cases, items))
    assert sorted(p.input_sha256 for p in again) == sorted(p.input_sha256 for p in prepared.values())
