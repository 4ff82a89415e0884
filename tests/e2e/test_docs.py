"""The front door and the manual: README.md stays short and keeps the two commands CI runs, every
relative link of README.md and docs/ resolves (the file, and the heading an #anchor names), every
command in a `bash` block of the quick start runs, and the plug-in decoder of
docs/adding-a-decoder.md runs exactly as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO
from helpers import started

README = REPO / "README.md"
DOCS = REPO / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", lambda m: "_" if m.group() == "_" else "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def test_the_readme_is_short_and_keeps_the_commands_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    for marker in ("install", "test"):
        block = re.search(rf"<!-- ci:{marker} -->\n```bash\n(.+)\n```\n<!-- /ci:{marker} -->", text)
        assert block and block.group(1).count("\n") == 0, marker  # one command, as .ci/run reads it
    assert "REFERENCE.md" not in text and "suites/pid.toml" not in text


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.is_file(), f"{page.relative_to(REPO)}: broken link {target}"
        if anchor:
            assert anchor in _anchors(resolved), f"{page.relative_to(REPO)}: no heading for #{anchor}"


def _bash_blocks(section: str) -> list[str]:
    """The commands of a section's bash blocks, but those CI itself runs (between ci: markers)."""
    commands = []
    for match in re.finditer(r"(<!-- ci:\w+ -->\n)?```bash\n(.*?)```", section, re.DOTALL):
        if match.group(1):
            continue
        commands += [line.split("  #")[0].strip() for line in match.group(2).splitlines() if line.strip()]
    return commands


@pytest.mark.slow
def test_every_command_of_the_quick_start_runs(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Quick start"):text.index("\n## ", text.index("## Quick start") + 1)]
    commands = _bash_blocks(section)
    assert len(commands) >= 3
    venv = Path(sys.executable).parent  # the README's .venv/bin, wherever this one is
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "100"}
    for command in commands:
        line = command.replace(".venv/bin/", f"{venv}/")
        result = started(subprocess.run,
                         ["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, env=env,
                                timeout=600)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"


def _block_after(text: str, caption: str, language: str) -> str:
    start = text.index(caption)
    return re.search(rf"```{language}\n(.*?)```", text[start:], re.DOTALL).group(1)  # type: ignore[union-attr]


def test_the_plug_in_decoder_of_the_docs_runs_as_written(tmp_path: Path) -> None:
    """The page's module and entry point as an installed distribution (a .dist-info, as pip writes
    it for `pip install -e`), and its suite: listed, run, recorded with its parameters."""
    page = (DOCS / "adding-a-decoder.md").read_text(encoding="utf-8")
    package = tmp_path / "site"
    package.mkdir()
    (package / "my_decoder.py").write_text(_block_after(page, "`my-decoder/my_decoder.py`:", "python"))
    project = tomllib.loads(_block_after(page, "`my-decoder/pyproject.toml`:", "toml"))["project"]
    info = package / "my_decoder-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: "
                                   f"{project['version']}\n")
    points = project["entry-points"]["decoderbench.decoders"]
    (info / "entry_points.txt").write_text("[decoderbench.decoders]\n" + "".join(
        f"{name} = {target}\n" for name, target in points.items()))
    suite = tmp_path / "sharp.toml"
    suite.write_text(_block_after(page, "`sharp.toml`, next to", "toml"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200",
           "PYTHONPATH": os.pathsep.join([str(package), os.environ.get("PYTHONPATH", "")])}

    def run(*args: str) -> subprocess.CompletedProcess:
        return started(subprocess.run,
                       [sys.executable, "-m", "harness", *args], cwd=tmp_path, capture_output=True,
                              text=True, env=env, timeout=600)

    listed = run("list", "decoders")
    row = next(line for line in listed.stdout.splitlines() if line.startswith("sharp-lanczos"))
    assert "my-decoder" in row and "yes" in row
    result = run("run", str(suite), "--offline", "--out", str(tmp_path / "run"), "-q", "--no-report")
    assert result.returncode == 0, result.stderr
    records = [line for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()
               if '"kind": "decode"' in line and '"decoder": "sharp-lanczos"' in line]
    assert len(records) == 4 and all('"status": "ok"' in line for line in records)
    assert '"amount": 0.8' in records[0]
