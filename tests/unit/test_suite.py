"""Suite parsing and validation: every problem names the file, the key path and the expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.suite import SuiteError, builtin_suites_dir, load_suite

GOOD = """
name = "ok"
seeds = [0, 1]
metrics = ["psnr", {name = "ssim", params = {sigma = 1.5}}]

[source]
kind = "images"
builtin = ["textchart"]

[resolution]
input = [32, [48, 32]]
output_scale = 2

[[decoder]]
name = "bicubic"

[[decoder]]
name = "lanczos"
label = "lanczos-3"
"""


def _error(write_suite, text: str) -> SuiteError:
    path = write_suite(text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    return info.value


def test_good_suite_loads_with_defaults(write_suite) -> None:
    suite = load_suite(write_suite(GOOD))
    model = suite.model
    assert [d.id for d in model.decoder] == ["bicubic", "lanczos-3"]
    assert model.resolution.pairs() == [((32, 32), (64, 64)), ((48, 32), (96, 64))]
    assert model.timing.device == "cpu" and model.timing.repeats == 5
    assert [m.name for m in model.metrics] == ["psnr", "ssim"]
    assert suite.metric_params["ssim"].sigma == 1.5
    assert len(suite.sha256) == 64


def test_hash_ignores_formatting_but_not_content(write_suite) -> None:
    a = load_suite(write_suite(GOOD, "a.toml"))
    b = load_suite(write_suite("# a comment\n" + GOOD.replace("seeds = [0, 1]", "seeds = [ 0,1 ]"),
                               "b.toml"))
    c = load_suite(write_suite(GOOD.replace("seeds = [0, 1]", "seeds = [0, 2]"), "c.toml"))
    assert a.sha256 == b.sha256
    assert a.sha256 != c.sha256


MALFORMED = [
    # (replace this, with this, expected key path, expected words)
    ('name = "ok"', 'name = "ok"\nbogus = 1', "bogus", "unknown key 'bogus'"),
    ('name = "ok"', 'name = "ok"\nseed = [1]', "seed", "did you mean 'seeds'"),
    # a real key in the wrong table: where it belongs, never "did you mean" the same word
    ('name = "ok"', 'name = "ok"\nrepeats = 3', "repeats", "unknown key 'repeats' here; it belongs in "
     "timing.repeats"),
    ('name = "ok"', 'name = "ok"\n[timing]\nresampler = "lanczos"', "timing.resampler",
     "it belongs in compare.resampler"),
    ('name = "ok"', "name = 3", "name", "valid string"),
    ('name = "ok"', 'name = "has space"', "name", "matching pattern"),
    ('name = "ok"\n', "", "name", "required key is missing"),
    ("seeds = [0, 1]", 'seeds = ["a"]', "seeds[0]", "valid integer"),
    ("seeds = [0, 1]", "seeds = []", "seeds", "at least 1 item"),
    ("seeds = [0, 1]", "sigmas = [1.5]", "sigmas", "each sigma must be in [0, 1]"),
    ('kind = "images"', 'kind = "videos"', "source.kind", "'images'"),
    ('builtin = ["textchart"]', "", "source", "at least one of builtin, folder, manifest"),
    ("output_scale = 2", "", "resolution", "exactly one of output_scale or output"),
    ("output_scale = 2", "output_scale = 1.3", "resolution", "is not whole pixels"),
    ("input = [32, [48, 32]]", "input = [0]", "resolution", "sizes must be positive"),
    ('name = "bicubic"', 'name = "bicubc"', "decoder[0].name", "did you mean 'bicubic'"),
    ('name = "bicubic"', 'name = "bicubic"\nlabel = "lanczos-3"', "decoder[1].label", "used twice"),
    ('name = "bicubic"', 'name = "bicubic"\nparams = {scale = 2}', "decoder[0].params.scale",
     "unknown key 'scale'"),
    ('label = "lanczos-3"', 'label = "lanczos 3"', "decoder[1].label", "matching pattern"),
    ('"psnr"', '"psnrr"', "metrics[0].name", "unknown metric 'psnrr'"),
    ("sigma = 1.5", 'sigma = "wide"', "metrics[1].params.sigma", "valid number"),
    ('name = "ok"', 'name = "ok"\n[timing]\ndevice = "tpu"', "timing.device", "expected cpu, cuda or cuda:N"),
    ('name = "ok"', 'name = "ok"\n[timing]\nrepeats = 0', "timing.repeats", "greater than or equal to 1"),
    ('name = "ok"', 'name = "ok"\n[timing]\ndtype = "int8"', "timing.dtype", "'float32'"),
    ('name = "ok"', 'name = "ok"\n[compare]\nresampler = "magic"', "compare.resampler", "'lanczos'"),
]


@pytest.mark.parametrize(("old", "new", "key", "words"), MALFORMED,
                         ids=[f"{i}-{m[2]}" for i, m in enumerate(MALFORMED)])
def test_malformed_suite_names_file_key_and_expectation(write_suite, old, new, key, words) -> None:
    assert old in GOOD
    error = _error(write_suite, GOOD.replace(old, new, 1))
    lines = str(error).splitlines()
    matching = [line for line in lines if f": {key}: " in line]
    assert matching, f"no problem reported at {key!r}: {lines}"
    assert any(words in line for line in matching), matching
    assert all(line.split(": ")[0].endswith("suite.toml") for line in matching)


def test_bad_toml_names_file_line_and_column(write_suite) -> None:
    error = _error(write_suite, GOOD.replace('name = "ok"', 'name = "ok'))
    assert "suite.toml: invalid TOML" in str(error)
    assert "line 2" in str(error)


def test_all_problems_are_reported_at_once(write_suite) -> None:
    text = GOOD.replace('"psnr"', '"psnrr"').replace('name = "bicubic"', 'name = "bicubc"')
    error = _error(write_suite, text)
    keys = [problem[1] for problem in error.problems]
    assert "decoder[0].name" in keys and "metrics[0].name" in keys


def test_latent_space_mismatch_and_resolution_multiple(write_suite, tmp_path: Path) -> None:
    # A decoder that consumes a space the encoder does not produce is refused up front.
    text = GOOD.replace('name = "bicubic"', 'name = "fault"\nparams = {mode = "ok"}')
    assert load_suite(write_suite(text)).decoder_params["fault"].mode == "ok"


def test_include_merges_and_blames_the_right_file(write_suite, tmp_path: Path) -> None:
    write_suite(GOOD, "base.toml")
    child = write_suite('include = "base.toml"\nname = "child"\n[timing]\nrepeats = 9\n', "child.toml")
    suite = load_suite(child)
    assert suite.name == "child" and suite.model.timing.repeats == 9
    assert [d.id for d in suite.model.decoder] == ["bicubic", "lanczos-3"]
    assert set(suite.texts) == {str(child), str(tmp_path / "base.toml")}
    # An error in a key that came from the base suite names the base file.
    write_suite(GOOD.replace('name = "bicubic"', 'name = "nope"'), "base.toml")
    with pytest.raises(SuiteError) as info:
        load_suite(child)
    assert str(info.value).startswith(f"{tmp_path / 'base.toml'}: decoder[0].name:")
    # ... and an error in the child names the child.
    write_suite(GOOD, "base.toml")
    write_suite('include = "base.toml"\n[timing]\nrepeats = -1\n', "child.toml")
    with pytest.raises(SuiteError) as info:
        load_suite(child)
    assert str(info.value).startswith(f"{child}: timing.repeats:")


def test_include_cycle_and_missing_include(write_suite) -> None:
    write_suite('include = "b.toml"\n', "a.toml")
    b = write_suite('include = "a.toml"\n', "b.toml")
    with pytest.raises(SuiteError, match="include cycle"):
        load_suite(b)
    missing = write_suite('include = "nowhere.toml"\n', "c.toml")
    with pytest.raises(SuiteError, match=r"suite file not found: .*nowhere\.toml"):
        load_suite(missing)


def test_missing_suite_file() -> None:
    with pytest.raises(SuiteError, match="suite file not found"):
        load_suite("/nonexistent/suite.toml")


def test_builtin_suites_validate() -> None:
    paths = sorted(builtin_suites_dir().glob("*.toml"))
    assert any(p.stem == "smoke" for p in paths)
    for path in paths:
        assert load_suite(path).name
    assert load_suite("smoke").path == builtin_suites_dir() / "smoke.toml"
    assert load_suite("builtin:smoke").name == "smoke"
