"""Items, case expansion, reference/input preparation and the content-addressed cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import decoder_tables, suite_text
from PIL import Image
from safetensors.torch import load_file

from harness.cases import Item, case_id, expand
from harness.sources.cache import TensorCache, cache_key, tensor_sha256
from harness.sources.listing import list_items
from harness.sources.prepare import (
    InputPreparer,
    SourceError,
    centre_crop_box,
    make_input,
    make_reference,
    source_protocol,
)
from harness.sources.textchart import render_chart
from harness.suite import load_suite

PROTOCOL = {"encoder": "pixels"}


def test_expansion_is_deterministic_with_stable_ids() -> None:
    items = [Item("a/x.png", "1" * 64, None, "t"), Item("b", "2" * 64, "a cat", "t")]
    sizes = [((16, 16), (64, 64)), ((32, 16), (64, 32))]
    cases = expand(items, sizes, [0.0, 0.5], [0, 1], PROTOCOL)
    assert len(cases) == 2 * 2 * 2 * 2
    again = expand(items, sizes, [0.0, 0.5], [0, 1], PROTOCOL)
    assert [c.id for c in cases] == [c.id for c in again]
    assert len({c.id for c in cases}) == len(cases)
    assert cases[0].id.startswith("a-x.png-")
    # The id is a content hash: new image bytes, another protocol → another id.
    changed = expand([Item("a/x.png", "3" * 64, None, "t")], sizes[:1], [0.0], [0], PROTOCOL)
    assert changed[0].id != cases[0].id
    other = expand(items[:1], sizes[:1], [0.0], [0], {"encoder": "vae"})
    assert other[0].id != cases[0].id
    # Pinned: ids must not drift between releases (baselines and resume rely on them).
    assert cases[0].id == expand(items[:1], sizes[:1], [0.0], [0], PROTOCOL)[0].id
    assert cases[0].id == "a-x.png-e97ea167ee97"
    with pytest.raises(ValueError, match="duplicate"):
        expand(items, sizes, [0.0], [0, 0], PROTOCOL)


def test_input_seeds_make_their_own_cases_and_ids() -> None:
    items = [Item("a/x.png", "1" * 64, None, "t")]
    sizes = [((16, 16), (64, 64))]
    cases = expand(items, sizes, [0.5], [0, 1], PROTOCOL, input_seeds=[0, 1])
    assert [(c.input_seed, c.seed) for c in cases] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len({c.id for c in cases}) == 4
    # Where the input seed equals the decoder seed, the id is the one of a release without input
    # seeds (the decoder seed drew the input then); elsewhere the input seed is part of the id.
    def legacy_id(seed: int) -> str:
        return case_id("a/x.png", {"item": "a/x.png", "item_sha256": "1" * 64, "seed": seed, "sigma": 0.5,
                                   "input": [16, 16], "output": [64, 64], "source": PROTOCOL})

    assert cases[0].id == legacy_id(0) and cases[3].id == legacy_id(1)
    assert cases[1].id != legacy_id(1) and cases[2].id != legacy_id(0)


def test_centre_crop_and_reference_protocol() -> None:
    assert centre_crop_box(600, 400, 1.0) == (100, 0, 500, 400)
    assert centre_crop_box(400, 600, 2.0) == (0, 200, 400, 400)
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[:, 10:50] = 200  # the centred 40x40 square is uniform
    reference, notes = make_reference(rgb, (20, 20))
    assert reference.dtype == torch.uint8 and reference.shape == (3, 20, 20)
    assert int(reference.min()) == int(reference.max()) == 200
    assert notes == []
    _, notes = make_reference(rgb, (80, 80))
    assert "upsampled" in notes[0]
    image = make_input(reference, (5, 5))
    assert image.shape == (1, 3, 5, 5) and torch.allclose(image, torch.full_like(image, 200 / 255))


def test_builtin_photos_and_textchart() -> None:
    from harness.sources.listing import BUILTIN_SETS

    photos = BUILTIN_SETS["photos"]()
    assert len(photos) >= 10
    assert all(entry.load().ndim == 3 and entry.load().shape[2] == 3 for entry in photos)
    chart, lines = render_chart(0)
    assert chart.shape == (512, 512, 3) and len(lines) >= 10
    assert {line.font_px for line in lines} >= {8, 12, 16, 24}
    assert np.array_equal(render_chart(0)[0], chart)
    assert render_chart(1)[1][0].text != lines[0].text


def test_folder_and_manifest_sources(tmp_path: Path, image_folder: Path, write_suite) -> None:
    (image_folder / "img1.txt").write_text("a red square\n")
    suite = load_suite(write_suite(suite_text(image_folder, decoder_tables('name = "nearest"'))))
    items = [entry.item for entry in list_items(suite)]
    assert [i.id for i in items] == ["img0.png", "img1.png", "img2.png"]
    assert items[1].prompt == "a red square"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"image": str(image_folder / "img2.png"), "prompt": "p", "id": "two"}) + "\n\n"
        + json.dumps({"image": "images/img0.png"}) + "\n")
    text = suite_text(image_folder, decoder_tables('name = "nearest"')).replace(
        f'folder = "{image_folder}"', 'manifest = "m.jsonl"')
    suite = load_suite(write_suite(text))
    assert [(e.item.id, e.item.prompt) for e in list_items(suite)] == [
        ("two", "p"), ("images/img0.png", None)]
    manifest.write_text('{"image": "missing.png"}\n')
    with pytest.raises(SourceError, match=r"m.jsonl:1: image not found"):
        list_items(suite)
    manifest.write_text('{"image": "images/img0.png", "caption": "x"}\n')
    with pytest.raises(SourceError, match=r"m.jsonl:1: unknown keys \['caption'\]"):
        list_items(suite)
    manifest.write_text("not json\n")
    with pytest.raises(SourceError, match=r"m.jsonl:1: invalid JSON"):
        list_items(suite)


def test_inputs_are_cached_by_content_and_noise_is_seeded(
        tmp_path: Path, image_folder: Path, write_suite) -> None:
    text = suite_text(image_folder, decoder_tables('name = "nearest"'),
                      sigmas="[0.0, 0.3]", seeds="[0, 1]", input_seeds="[0, 1]")
    suite = load_suite(write_suite(text.replace("seeds = [0]\n", "")))
    items = list_items(suite)
    cases = suite.expand([e.item for e in items], source_protocol(suite))
    cache = TensorCache(tmp_path / "cache")
    first = list(InputPreparer(suite, cache).prepare(cases, items))
    files = sorted(p.name for p in (tmp_path / "cache").rglob("*.safetensors"))
    # 3 references + per item: 1 clean latent shared by every seed + 2 noised ones (input seeds).
    assert len(files) == 3 + 3 * 3
    second = list(InputPreparer(suite, cache).prepare(cases, items))
    assert [p.input_sha256 for p in first] == [p.input_sha256 for p in second]
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*.safetensors")) == files
    by_key = {(p.case.item_id, p.case.sigma, p.case.input_seed, p.case.seed): p for p in first}
    clean0, clean1 = by_key[("img0.png", 0.0, 0, 0)], by_key[("img0.png", 0.0, 1, 1)]
    noisy0, noisy1 = by_key[("img0.png", 0.3, 0, 0)], by_key[("img0.png", 0.3, 1, 0)]
    assert clean0.input_path == clean1.input_path
    assert noisy0.input_sha256 != noisy1.input_sha256
    # The decoder seed never changes the input: only the input seed draws the noise.
    assert by_key[("img0.png", 0.3, 0, 1)].input_path == noisy0.input_path
    latent = load_file(str(clean0.input_path))["latent"]
    assert latent.shape == (3, 16, 16) and latent.dtype == torch.float32
    assert tensor_sha256(latent) == clean0.input_sha256
    assert float(latent.min()) >= -1 and float(latent.max()) <= 1
    noisy = load_file(str(noisy0.input_path))["latent"]
    eps = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(noisy, 0.7 * latent + 0.3 * eps, atol=1e-6)


def test_cache_key_and_tensor_hash() -> None:
    assert cache_key("a", {"x": 1, "y": [2]}) == cache_key("a", {"y": [2], "x": 1})
    assert cache_key("a", {"x": 1}) != cache_key("b", {"x": 1})
    t = torch.arange(6, dtype=torch.float32)
    assert tensor_sha256(t) == tensor_sha256(t.clone())
    assert tensor_sha256(t) != tensor_sha256(t.view(2, 3))
    assert tensor_sha256(t) != tensor_sha256(t.double())
    assert tensor_sha256(t.bfloat16()) == tensor_sha256(t.bfloat16().clone())


def test_grayscale_and_alpha_images_become_rgb(tmp_path: Path) -> None:
    from harness.images import read_rgb

    Image.fromarray(np.full((4, 4), 100, np.uint8)).save(tmp_path / "g.png")
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent → white
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert read_rgb(tmp_path / "g.png").shape == (4, 4, 3)
    assert read_rgb(tmp_path / "g.png")[0, 0].tolist() == [100, 100, 100]
    assert read_rgb(tmp_path / "a.png")[0, 0].tolist() == [255, 255, 255]


def test_text_to_pixel_decoders_fold_both_seeds_into_their_generation_seed() -> None:
    """A decoder that generates from the prompt itself (L2P) is the whole text-to-image chain: input
    seeds (a benchmark's images per prompt) and decoder seeds (invention) must both vary it."""
    cases = expand([Item("p", "1" * 64, "a cat", "t")], [((16, 16), (16, 16))], [0.0], [0, 1], PROTOCOL,
                   input_seeds=[0, 1])
    seeds = {(c.input_seed, c.seed): c.generation_seed for c in cases}
    assert seeds[(0, 0)] == 0 and seeds[(0, 1)] == 1  # unchanged where no input seed is declared
    assert len(set(seeds.values())) == 4
