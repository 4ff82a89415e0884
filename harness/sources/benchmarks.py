"""Benchmark data: where GenEval's and DPG-Bench's prompt sets come from, where they live, checks.

Each file is pinned to one commit of its public repository and identified by its git object id and
sha256; `require()` never touches the network (docs/benchmarks.md, benchmark data).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from decoders.weights import file_sha256
from harness.cases import Item
from harness.sources.cache import default_cache_dir
from harness.sources.items import LoadableItem, SourceError


@dataclass(frozen=True)
class DataFile:
    upstream: str  # path in the repository
    local: str  # path under the benchmark's folder
    git_object: str  # blob id (file) or tree id (folder) at the pinned commit
    sha256: str | None  # file sha256; folder: sha256 of `sha256sum` lines in byte order of names
    size: int | None = None  # bytes (file) or number of files (folder)
    folder: bool = False


@dataclass(frozen=True)
class Benchmark:
    name: str
    repo: str
    commit: str
    licence: str
    description: str
    files: tuple[DataFile, ...]

    @property
    def archive_url(self) -> str:
        return f"https://github.com/{self.repo}/archive/{self.commit}.tar.gz"

    def origin(self, entry: DataFile) -> str:
        return f"{entry.upstream} of github.com/{self.repo} at commit {self.commit[:12]}"


BENCHMARKS: dict[str, Benchmark] = {
    "geneval": Benchmark(
        "geneval", "djghosh13/geneval", "af4902f24d3ca90ebbb446dd9891a59e0f82725f", "MIT",
        "GenEval: 553 prompts in 6 tasks, object/count/colour/position rules per prompt",
        (DataFile("prompts/evaluation_metadata.jsonl", "evaluation_metadata.jsonl",
                  "efc21c7e639cd45554a1e44fac87157211f16d51",
                  "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13", 85209),)),
    "dpg-bench": Benchmark(
        "dpg-bench", "TencentQQGYLab/ELLA", "3c228f1dc6c4d3cad0a47493816151a419f14db3", "Apache-2.0",
        "DPG-Bench: 1,065 dense prompts, VQA questions with dependencies and categories",
        (DataFile("dpg_bench/dpg_bench.csv", "dpg_bench.csv", "98457fc9901943f51ff9a30367250fc292533bed",
                  None),  # the blob was not available where this table was written: git id only
         DataFile("dpg_bench/prompts", "prompts", "ac3ba27bf2e1c3ec189fe2e00681f75f4b78d683",
                  "317085a5cddf9620595bb38cba7b9fa25ecfb081846bc91b840c98366d46f56e", 1065, folder=True))),
}


class BenchmarkDataMissing(SourceError):
    """A benchmark file is absent or altered; the message says what, where and how to get it."""


def benchmarks_dir() -> Path:
    explicit = os.environ.get("DECODERBENCH_BENCHMARKS_DIR")
    if not explicit:
        return default_cache_dir() / "benchmarks"
    path = Path(explicit).expanduser()
    if path.exists() and not path.is_dir():
        raise BenchmarkDataMissing(f"DECODERBENCH_BENCHMARKS_DIR={explicit}: a file, not a folder; point it "
                                   "at the folder that holds (or will hold) the benchmark data")
    return path


def get(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise SourceError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def path_of(benchmark: Benchmark, entry: DataFile) -> Path:
    return benchmarks_dir() / benchmark.name / entry.local


# --------------------------------------------------------------------------- content ids


def git_blob_id(data: bytes) -> str:
    """The object id git gives a file's content (what `git ls-tree` shows)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def git_tree_id(folder: Path) -> str:
    """The object id of a flat folder of regular files (mode 100644), as git computes it."""
    body = b"".join(b"100644 " + p.name.encode() + b"\0" + bytes.fromhex(git_blob_id(p.read_bytes()))
                    for p in sorted(folder.iterdir(), key=lambda p: p.name.encode()))
    return hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).hexdigest()


def folder_sha256(folder: Path) -> str:
    """sha256 of `sha256sum` output over the folder's files in byte order of their names."""
    lines = "".join(f"{file_sha256(p)}  {p.name}\n"
                    for p in sorted(folder.iterdir(), key=lambda p: p.name.encode()))
    return hashlib.sha256(lines.encode()).hexdigest()


@dataclass(frozen=True)
class Verification:
    benchmark: Benchmark
    entry: DataFile
    path: Path
    status: str  # ok | mismatch | missing
    git_object: str | None = None
    sha256: str | None = None
    size: int | None = None


def verify(benchmark: Benchmark, entry: DataFile) -> Verification:
    path = path_of(benchmark, entry)
    present = path.is_dir() if entry.folder else path.is_file()
    if not present:
        return Verification(benchmark, entry, path, "missing")
    if entry.folder:
        git_object, sha256 = git_tree_id(path), folder_sha256(path)
        size = sum(1 for _ in path.iterdir())
    else:
        git_object, sha256, size = git_blob_id(path.read_bytes()), file_sha256(path), path.stat().st_size
    matches = git_object == entry.git_object and entry.sha256 in (None, sha256) and \
        entry.size in (None, size)
    return Verification(benchmark, entry, path, "ok" if matches else "mismatch", git_object, sha256, size)


def missing_message(result: Verification) -> str:
    benchmark, entry = result.benchmark, result.entry
    fix = (f"run `decoderbench benchmarks fetch {benchmark.name}` on a machine with network access, or "
           f"copy {benchmark.origin(entry)} there; DECODERBENCH_BENCHMARKS_DIR moves the data folder")
    if result.status == "missing":
        return f"{benchmark.name} benchmark data missing: {result.path}; {fix}"
    return (f"{benchmark.name} benchmark data {result.path} does not match the lock table (git object "
            f"{result.git_object}, expected {entry.git_object}); delete it and {fix}")


def require(name: str) -> dict[str, Path]:
    """Local path of every file of a benchmark, checked; BenchmarkDataMissing naming all problems."""
    benchmark = get(name)
    results = [verify(benchmark, entry) for entry in benchmark.files]
    problems = [missing_message(r) for r in results if r.status != "ok"]
    if problems:
        raise BenchmarkDataMissing("\n".join(problems))
    return {r.entry.local: r.path for r in results}


def data_sha256(name: str) -> dict[str, str]:
    """What identifies a benchmark's data, for metric protocols: file → git object id."""
    benchmark = get(name)
    return {f"{benchmark.repo}@{benchmark.commit[:12]}/{e.upstream}": e.git_object for e in benchmark.files}


# --------------------------------------------------------------------------- fetching


def fetch(name: str) -> dict[str, Path]:
    """Download the pinned archive, keep the benchmark's files, check them; existing good files stay."""
    benchmark = get(name)
    if all(verify(benchmark, e).status == "ok" for e in benchmark.files):
        return require(name)
    import urllib.request

    target = benchmarks_dir() / benchmark.name
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as scratch:
        with urllib.request.urlopen(benchmark.archive_url, timeout=120) as response, \
                tarfile.open(fileobj=response, mode="r|gz") as archive:
            _extract(archive, benchmark, Path(scratch))
        for entry in benchmark.files:
            source, destination = Path(scratch) / entry.local, target / entry.local
            if not source.exists():
                raise BenchmarkDataMissing(f"{benchmark.archive_url} holds no {entry.upstream}")
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.is_dir():
                shutil.rmtree(destination)
            os.replace(source, destination)
    return require(name)


def _extract(archive: tarfile.TarFile, benchmark: Benchmark, scratch: Path) -> None:
    """Write the archive members that belong to the benchmark's files (regular files only)."""
    for member in archive:
        top, _, inner = member.name.partition("/")
        if not member.isfile() or not top:
            continue
        for entry in benchmark.files:
            inside = inner == entry.upstream or (entry.folder and inner.startswith(entry.upstream + "/"))
            relative = inner.removeprefix(entry.upstream).lstrip("/")
            if inside and "/" not in relative and ".." not in relative:
                destination = scratch / entry.local / relative if entry.folder else scratch / entry.local
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.extractfile(member) as handle, destination.open("wb") as out:  # type: ignore[union-attr]
                    shutil.copyfileobj(handle, out)


# --------------------------------------------------------------------------- prompt items


def benchmark_items(name: str) -> list[LoadableItem]:
    """The benchmark's prompts as source items, each annotated with its benchmark metadata."""
    paths = require(name)
    if name == "geneval":
        return _geneval_items(paths["evaluation_metadata.jsonl"])
    return _dpg_items(paths["prompts"])


def _item(item_id: str, prompt: str, origin: str, identity: str, benchmark: dict[str, Any]) -> LoadableItem:
    digest = hashlib.sha256(identity.encode()).hexdigest()
    return LoadableItem(Item(item_id, digest, prompt, origin), annotations={"benchmark": benchmark})


def _geneval_items(path: Path) -> list[LoadableItem]:
    """One item per metadata line, numbered like GenEval's output folders (00000, 00001, ...)."""
    found = []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for index, line in enumerate(lines):
        entry = json.loads(line)
        found.append(_item(f"geneval/{index:05d}", entry["prompt"], f"{path}:{index + 1}", line,
                           {"name": "geneval", "index": index, "metadata": entry}))
    return found


def _dpg_items(folder: Path) -> list[LoadableItem]:
    """One item per prompts/<item_id>.txt, in item-id order; the CSV's questions are matched by item id."""
    found = []
    for path in sorted(folder.glob("*.txt"), key=lambda p: p.stem):
        prompt = path.read_text(encoding="utf-8").strip()
        found.append(_item(f"dpg-bench/{path.stem}", prompt, str(path), f"{path.stem}\n{prompt}",
                           {"name": "dpg-bench", "item_id": path.stem}))
    return found
