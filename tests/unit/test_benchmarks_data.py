"""Benchmark data: the lock table's content ids, offline messages, fetching from a pinned archive,
the `decoderbench benchmarks` verbs and the `benchmark = ...` prompts source.

Upstream facts checked against the repositories at the pinned commits (git ls-tree):
djghosh13/geneval @ af4902f prompts/evaluation_metadata.jsonl blob efc21c7e…, 85,209 bytes;
TencentQQGYLab/ELLA @ 3c228f1 dpg_bench/prompts tree ac3ba27b… (1,065 files), dpg_bench.csv blob
98457fc9….
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import SHARED
from helpers import invoke

from harness.sources import benchmarks
from harness.sources.benchmarks import Benchmark, BenchmarkDataMissing, DataFile
from harness.sources.listing import list_items
from harness.suite import SuiteError, load_suite

GENEVAL_SHARED = SHARED / "benchmarks"


def _git(*args: str, cwd: Path, stdin: bytes | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=True)
    return done.stdout.decode()


def test_git_content_ids_equal_what_git_computes(tmp_path: Path) -> None:
    assert benchmarks.git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    folder = tmp_path / "prompts"
    folder.mkdir()
    for name, text in (("10.txt", "ten"), ("2.txt", "two\n"), ("a b.txt", "")):
        (folder / name).write_text(text)
    _git("init", "-q", cwd=tmp_path)
    _git("add", "prompts", cwd=tmp_path)
    expected = _git("write-tree", "--prefix=prompts/", cwd=tmp_path).strip()
    assert benchmarks.git_tree_id(folder) == expected
    listing = "".join(f"{hashlib.sha256((folder / n).read_bytes()).hexdigest()}  {n}\n"
                      for n in ("10.txt", "2.txt", "a b.txt"))
    assert benchmarks.folder_sha256(folder) == hashlib.sha256(listing.encode()).hexdigest()


def test_the_lock_table_names_pinned_upstream_files() -> None:
    geneval, dpg = benchmarks.BENCHMARKS["geneval"], benchmarks.BENCHMARKS["dpg-bench"]
    assert (geneval.repo, geneval.commit[:7]) == ("djghosh13/geneval", "af4902f")
    assert (dpg.repo, dpg.commit[:7]) == ("TencentQQGYLab/ELLA", "3c228f1")
    for benchmark in (geneval, dpg):
        assert benchmark.archive_url == f"https://github.com/{benchmark.repo}/archive/{benchmark.commit}.tar.gz"
        for entry in benchmark.files:
            assert len(entry.git_object) == 40 and (entry.sha256 is None or len(entry.sha256) == 64)
    assert [e.local for e in dpg.files] == ["dpg_bench.csv", "prompts"] and dpg.files[1].folder


@pytest.mark.skipif(not (GENEVAL_SHARED / "geneval/evaluation_metadata.jsonl").exists(),
                    reason="GenEval metadata not available")
def test_the_real_geneval_file_matches_its_lock_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODERBENCH_BENCHMARKS_DIR", str(GENEVAL_SHARED))
    paths = benchmarks.require("geneval")
    assert paths == {"evaluation_metadata.jsonl": GENEVAL_SHARED / "geneval/evaluation_metadata.jsonl"}
    items = benchmarks.benchmark_items("geneval")
    assert len(items) == 553 and items[0].item.id == "geneval/00000" and items[552].item.id == "geneval/00552"
    first = items[0]
    entry = first.annotations["benchmark"]["metadata"]
    assert first.item.prompt == entry["prompt"] and first.annotations["benchmark"]["index"] == 0
    assert entry["tag"] == "single_object" and len({i.item.sha256 for i in items}) == 553


def test_missing_and_altered_data_are_named_with_the_command_that_fetches_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODERBENCH_BENCHMARKS_DIR", str(tmp_path))
    with pytest.raises(BenchmarkDataMissing) as info:
        benchmarks.require("dpg-bench")
    lines = str(info.value).splitlines()
    assert len(lines) == 2  # both files, at once
    csv_path = tmp_path / "dpg-bench/dpg_bench.csv"
    assert lines[0].startswith(f"dpg-bench benchmark data missing: {csv_path}; run `decoderbench benchmarks "
                               "fetch dpg-bench` on a machine with network access")
    assert "copy dpg_bench/prompts of github.com/TencentQQGYLab/ELLA at commit 3c228f1dc6c4" in lines[1]
    (tmp_path / "geneval").mkdir()
    (tmp_path / "geneval/evaluation_metadata.jsonl").write_text("{}\n")
    with pytest.raises(BenchmarkDataMissing, match=r"does not match the lock table .*expected "
                                                   "efc21c7e639cd45554a1e44fac87157211f16d51"):
        benchmarks.require("geneval")


# --------------------------------------------------------------------------- a synthetic benchmark


def _synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "geneval") -> dict[str, bytes]:
    """Replace `name`'s lock entry by a small benchmark served from a local archive (file:// URL)."""
    files = {"repo-abc/prompts/evaluation_metadata.jsonl": b'{"tag": "counting"}\n',
             "repo-abc/prompts/other.txt": b"not ours", "repo-abc/README.md": b"readme",
             "repo-abc/items/1.txt": b"one", "repo-abc/items/2.txt": b"two",
             "repo-abc/items/deeper/x.txt": b"not a prompt"}
    archive = tmp_path / "archive.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    items = tmp_path / "expected-items"
    items.mkdir()
    (items / "1.txt").write_bytes(b"one")
    (items / "2.txt").write_bytes(b"two")
    metadata = files["repo-abc/prompts/evaluation_metadata.jsonl"]
    benchmark = Benchmark(name, "someone/repo", "abc", "MIT", "synthetic", (
        DataFile("prompts/evaluation_metadata.jsonl", "evaluation_metadata.jsonl",
                 benchmarks.git_blob_id(metadata), hashlib.sha256(metadata).hexdigest(), len(metadata)),
        DataFile("items", "items", benchmarks.git_tree_id(items), benchmarks.folder_sha256(items), 2,
                 folder=True)))
    monkeypatch.setattr(Benchmark, "archive_url", property(lambda self: archive.as_uri()))
    monkeypatch.setitem(benchmarks.BENCHMARKS, name, benchmark)
    monkeypatch.setenv("DECODERBENCH_BENCHMARKS_DIR", str(tmp_path / "data"))
    return files


def test_fetch_keeps_the_listed_files_of_the_pinned_archive_and_checks_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _synthetic(tmp_path, monkeypatch)
    paths = benchmarks.fetch("geneval")
    root = tmp_path / "data/geneval"
    assert paths == {"evaluation_metadata.jsonl": root / "evaluation_metadata.jsonl", "items": root / "items"}
    assert sorted(p.name for p in root.rglob("*")) == ["1.txt", "2.txt", "evaluation_metadata.jsonl", "items"]
    assert not list((tmp_path / "data").glob(".geneval-*"))  # no scratch left behind
    (root / "items/2.txt").write_bytes(b"changed")
    with pytest.raises(BenchmarkDataMissing, match="items does not match"):
        benchmarks.require("geneval")
    benchmarks.fetch("geneval")  # an altered file is fetched again
    assert (root / "items/2.txt").read_bytes() == b"two"


def test_fetch_fails_when_the_archive_lacks_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _synthetic(tmp_path, monkeypatch)
    benchmark = benchmarks.BENCHMARKS["geneval"]
    extra = DataFile("prompts/absent.jsonl", "absent.jsonl", "0" * 40, None)
    monkeypatch.setitem(benchmarks.BENCHMARKS, "geneval",
                        Benchmark(**{**benchmark.__dict__, "files": (*benchmark.files, extra)}))
    with pytest.raises(BenchmarkDataMissing, match=r"holds no prompts/absent\.jsonl"):
        benchmarks.fetch("geneval")


def test_the_benchmarks_verbs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _synthetic(tmp_path, monkeypatch)
    listed = invoke("benchmarks", "list", "geneval")
    assert listed.exit_code == 0 and "someone/repo" in listed.output and "no" in listed.output
    assert invoke("benchmarks", "verify", "geneval", "--strict").exit_code == 1  # missing
    fetched = invoke("benchmarks", "fetch", "geneval")
    assert fetched.exit_code == 0 and "✓ geneval/items" in fetched.output
    verified = invoke("benchmarks", "verify")
    assert verified.exit_code == 0 and verified.output.count(" ok ") == 2, verified.output
    where = invoke("benchmarks", "where", "geneval")
    assert f"found    geneval/items: {tmp_path / 'data/geneval/items'}" in where.output
    unknown = invoke("benchmarks", "list", "genevel")
    assert unknown.exit_code == 2 and "unknown benchmark genevel" in unknown.output


# --------------------------------------------------------------------------- the source


def _suite(write_suite, source: str):
    return load_suite(write_suite(f'name = "b"\n[source]\nkind = "prompts"\n{source}\n[resolution]\n'
                                  'input = 64\noutput_scale = 1\n[[decoder]]\nname = "prompt-painter"\n'))


def test_a_prompts_source_takes_benchmarks_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   write_suite) -> None:
    data = tmp_path / "data"
    (data / "dpg-bench/prompts").mkdir(parents=True)
    for item_id, text in (("b7", " a blue cube \n"), ("a10", "a tall tower")):
        (data / f"dpg-bench/prompts/{item_id}.txt").write_text(text)
    monkeypatch.setattr(benchmarks, "require", lambda name: {"prompts": data / "dpg-bench/prompts"})
    items = list_items(_suite(write_suite, 'prompts = ["a red cat"]\nbenchmark = "dpg-bench"'))
    assert [(e.item.id, e.item.prompt) for e in items] == [
        ("prompt-0000", "a red cat"), ("dpg-bench/a10", "a tall tower"), ("dpg-bench/b7", "a blue cube")]
    assert items[2].annotations == {"benchmark": {"name": "dpg-bench", "item_id": "b7"}}
    assert items[0].annotations == {}
    with pytest.raises(SuiteError, match=r"source.benchmark\[0\]: expected 'geneval' or 'dpg-bench', got "
                                         r"'parti'"):
        _suite(write_suite, 'benchmark = "parti"')


def test_benchmark_annotations_reach_the_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              write_suite) -> None:
    from harness.cases import expand
    from harness.sources.cache import TensorCache
    from harness.sources.prepare import InputPreparer, source_protocol

    entry = {"tag": "counting", "include": [{"class": "cup", "count": 2}], "prompt": "a photo of two cups"}
    metadata = tmp_path / "m.jsonl"
    metadata.write_text(json.dumps(entry) + "\n")
    monkeypatch.setattr(benchmarks, "require", lambda name: {"evaluation_metadata.jsonl": metadata})
    suite = _suite(write_suite, 'benchmark = ["geneval"]')
    items = list_items(suite)
    pairs = suite.model.resolution.pairs()
    cases = expand([e.item for e in items], pairs, [0.0], [0, 1], source_protocol(suite))
    prepared = list(InputPreparer(suite, TensorCache(tmp_path / "cache")).prepare(cases, items))
    assert [p.case.id.split("-")[0] for p in prepared] == ["geneval", "geneval"]
    for case in prepared:
        assert case.annotations == {"benchmark": {"name": "geneval", "index": 0, "metadata": entry}}
        assert case.as_dict()["annotations"]["benchmark"]["metadata"]["tag"] == "counting"
