"""The verbs that touch no tensor never import torch (it takes seconds to import on 2 cores).

A fresh interpreter imports the command line and runs `--help`, `--version`, `list`,
`validate` of the demo suite (no learned source), `show` in every format, `weights list` and
`export` in-process; torch must still be absent from sys.modules, and when it is not the test
names the module that imported it. bench/startup.py measures the wall times.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import PLUGINS, REPO
from helpers import started
from synthetic_runs import SynthDecoder, write_run

from decoders.lazy import LazyModule, no_grad

PROBE = textwrap.dedent('''
    import sys, traceback
    importer = []

    class Watch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" and not importer:
                importer.append("".join(traceback.format_stack(limit=14)))
            return None

    sys.meta_path.insert(0, Watch())
    from typer.testing import CliRunner
    from harness.cli import app

    assert "torch" not in sys.modules, importer
    runner = CliRunner()
    for args in COMMANDS:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "torch" not in sys.modules, f"{args} imported torch:\\n{importer[0]}"
    print("no torch")
''')


def test_the_verbs_that_touch_no_tensor_never_import_torch(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", [SynthDecoder("nearest"), SynthDecoder("lanczos", latency_ms=20)],
                        4, {"psnr": True, "ssim": True}, size=(32, 32))
    commands = [["--help"], ["--version"], ["list", "decoders"], ["list", "metrics"], ["list", "suites"],
                ["validate", "smoke"], ["show", str(run_dir)], ["show", str(run_dir), "--summary"],
                ["weights", "list"], ["export", str(run_dir), "--csv", "--out", str(tmp_path / "r.csv")]]
    commands += [["show", str(run_dir), "--format", f] for f in ("markdown", "csv", "json")]
    code = f"COMMANDS = {commands!r}\n{PROBE}"
    # Without tests/plugins on the path: a third-party plug-in may import what it likes.
    path = os.pathsep.join(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                           if p and Path(p).resolve() != PLUGINS.resolve())
    result = started(subprocess.run,
                     [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "COLUMNS": "80", "PYTHONPATH": path}, cwd=REPO)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "no torch" in result.stdout


def test_lazy_torch_imports_on_first_use_and_then_is_the_module() -> None:
    import torch

    lazy = LazyModule("torch")
    assert lazy.float32 is torch.float32
    assert lazy.__dict__["zeros"] is torch.zeros  # copied in: later reads are plain lookups

    @no_grad
    def grad_enabled() -> bool:
        return torch.is_grad_enabled()

    assert grad_enabled() is False and torch.is_grad_enabled()
    assert grad_enabled.__name__ == "grad_enabled"


def test_torch_hub_dir_without_torch_is_the_one_torch_uses(tmp_path: Path) -> None:
    settings = [{"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {}]
    code = textwrap.dedent(f"""
        import os, sys
        from pathlib import Path
        from harness.metrics.weights import torch_hub_dir
        ours = []
        for env in {settings!r}:
            for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
                os.environ.pop(name, None)
            os.environ.update(env)
            ours.append(torch_hub_dir())
        assert "torch" not in sys.modules
        import torch.hub
        for env, found in zip({settings!r}, ours):
            for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
                os.environ.pop(name, None)
            os.environ.update(env)
            assert found == Path(torch.hub.get_dir()), (env, found, torch.hub.get_dir())
        print("same")
    """)
    result = started(subprocess.run,
                     [sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "same", result.stderr[-2000:]


def test_the_chart_font_is_matplotlibs_own() -> None:
    import matplotlib

    from harness.sources.textchart import font_path

    assert font_path() == Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    assert font_path().is_file()


def test_the_builtin_photographs_read_without_skimage_io_are_skimages_arrays() -> None:
    import numpy as np
    import skimage.data

    from harness import images
    from harness.sources.listing import PHOTO_FILES, PHOTOS, _skimage_photo

    assert set(PHOTO_FILES) == set(PHOTOS)
    for name in PHOTOS:  # item ids hash these pixels: they must not move
        ours, theirs = _skimage_photo(name)(), images.to_rgb_array(getattr(skimage.data, name)())
        assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs), name
