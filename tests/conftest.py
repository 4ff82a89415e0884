"""Shared fixtures. Tests run offline (HF_HUB_OFFLINE=1) on the CPU.

    tests/unit/     fast tests: `pytest -m "not e2e"` runs them (and skips the few marked e2e)
    tests/e2e/      runs, command-line subprocesses, browsers, real-size models: marked e2e here
    tests/support/  helpers the tests import (synthetic runs, tiny models, fakes), on sys.path
    tests/plugins/  a tiny distribution whose entry points register the test-only decoders, so
                    third-party registration is exercised for real, in this process and in every
                    spawned worker (spawn passes sys.path on)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TESTS = Path(__file__).resolve().parent
PLUGINS = TESTS / "plugins"
SUPPORT = TESTS / "support"
E2E = TESTS / "e2e"
REPO = TESTS.parent
SHARED = Path(os.environ.get("DECODERBENCH_TEST_SHARED", REPO.parent / "shared"))  # ../shared

os.environ["HF_HUB_OFFLINE"] = "1"
# Runs in tests time exactly their `repeats` on every machine: a readable RAPL counter (root on
# bare-metal Linux) would lengthen each block of timed calls to a second. The RAPL code itself is
# tested on fake powercap folders (tests/unit/test_energy.py).
os.environ.setdefault("DECODERBENCH_POWERCAP_ROOT", str(REPO / "tests" / "no-powercap"))
for _path in (SUPPORT, PLUGINS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(PLUGINS), os.environ.get("PYTHONPATH", "")) if p)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/e2e/ is an e2e test (`-m "not e2e"` leaves it out)."""
    for item in items:
        if E2E in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three small deterministic RGB images (48x40, 40x48, 64x64)."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for index, (w, h) in enumerate([(48, 40), (40, 48), (64, 64)]):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], axis=-1)
        array = np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1)
        Image.fromarray((array * 255).astype(np.uint8)).save(folder / f"img{index}.png")
    return folder


@pytest.fixture
def write_suite(tmp_path: Path):
    def write(text: str, name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
