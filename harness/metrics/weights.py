"""The weight files built-in metrics use: a lock table, where each one lives, verification.

Metrics never download while they load: `require()` fails in milliseconds, naming the file and the
command that gets it; `fetch()` downloads before a run and checks the sha256 (docs/metrics.md,
weights).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DecoderbenchError
from harness.metrics.lock import LOCK, Store, WeightFile
from harness.store import atomic_write_text


class WeightsMissing(DecoderbenchError, RuntimeError):
    """A weight file is not in its cache; the message names it and how to get it."""


def files_for(metric: str) -> list[WeightFile]:
    return [entry for entry in LOCK if metric in entry.used_by]


def users() -> list[str]:
    return sorted({name for entry in LOCK for name in entry.used_by})


def torch_hub_dir() -> Path:
    """torch.hub.get_dir(): $TORCH_HOME/hub, TORCH_HOME defaulting to $XDG_CACHE_HOME/torch or
    ~/.cache/torch — computed without importing torch unless it is loaded (set_dir() may have
    moved it)."""
    if "torch" in sys.modules:
        import torch.hub

        return Path(torch.hub.get_dir())
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))) / "hub"


def hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def expected_path(entry: WeightFile) -> Path:
    """Where the loading library looks for (and would download) the file."""
    if entry.store == Store.TORCH_CHECKPOINTS:
        return torch_hub_dir() / "checkpoints" / entry.filename
    if entry.store == Store.PYIQA:
        return torch_hub_dir() / "pyiqa" / entry.filename
    if entry.store == Store.CLIP:
        return torch_hub_dir() / "clip" / entry.filename
    assert entry.hf_repo is not None
    repo_dir = f"models--{entry.hf_repo.replace('/', '--')}"
    return hf_cache_dir() / repo_dir / "snapshots" / "<revision>" / entry.filename


def locate(entry: WeightFile) -> Path | None:
    """The file's path if it is present (its cache, or a copy shipped in a package)."""
    if entry.store == Store.HF:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(entry.hf_repo, entry.filename, cache_dir=hf_cache_dir())
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    else:
        path = expected_path(entry)
        if path.is_file():
            return path
    if entry.package_copy:
        package, _, relative = entry.package_copy.partition("/")
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            path = Path(spec.origin).parent / relative
            if path.is_file():
                return path
    return None


def missing_message(entry: WeightFile, metric: str | None = None) -> str:
    metric = metric or entry.used_by[0]
    return (f"missing weight file {entry.filename} ({entry.description}); expected at "
            f"{expected_path(entry)}; get it with `decoderbench weights fetch {metric}` on a "
            f"machine with network access (source: {entry.url}) or copy it there")


def require(metric: str) -> dict[str, Path]:
    """Every weight file `metric` needs → its path; WeightsMissing (without any network) if not,
    naming the first missing file and listing the others."""
    located = {entry: locate(entry) for entry in files_for(metric)}
    missing = [entry for entry, path in located.items() if path is None]
    if missing:
        more = f"; {len(missing) - 1} more missing: {', '.join(e.key for e in missing[1:])}" \
            if len(missing) > 1 else ""
        raise WeightsMissing(missing_message(missing[0], metric) + more)
    return {entry.key: path for entry, path in located.items() if path is not None}


def pretrained(reference: str, metric: str, what: str) -> tuple[str, dict[str, str]]:
    """(what to give `from_pretrained`, sha256 of its weight files) for an HF id or a local folder.

    A repository of the lock table must have every listed file in the HF cache (WeightsMissing
    naming the first absent one, no network) and each is checked; another id must be in the HF
    cache (offline) and a folder must hold a config.json — their weight files are hashed.
    """
    entries = [entry for entry in files_for(metric) if entry.hf_repo == reference]
    if entries:
        paths = {}
        for entry in entries:
            path = locate(entry)
            if path is None:
                raise WeightsMissing(missing_message(entry, metric))
            paths[entry.key] = path
        return reference, checked_sha256(metric, paths)
    from decoders.base import DecoderUnavailable
    from decoders.weights import folder_sha256, resolve_pretrained

    try:
        source, _ = resolve_pretrained(reference, None, what)
    except DecoderUnavailable as exc:
        raise WeightsMissing(str(exc)) from None
    folder = Path(source)
    return source, folder_sha256(folder, reference) if folder.is_dir() else {reference: "not yet downloaded"}


def _memo_path() -> Path:
    from harness.sources.cache import default_cache_dir

    return default_cache_dir() / "weights-sha256.json"


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised by (path, size, mtime) so large files are hashed once."""
    stat = path.stat()
    memo_file = _memo_path()
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    stamp = [stat.st_size, stat.st_mtime_ns]
    cached = memo.get(str(path))
    if cached and cached[:2] == stamp:
        return cached[2]
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    memo[str(path)] = [*stamp, digest.hexdigest()]
    with contextlib.suppress(OSError):
        memo_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(memo_file, json.dumps(memo, indent=1, sort_keys=True))
    return digest.hexdigest()


@dataclass(frozen=True)
class Verification:
    entry: WeightFile
    path: Path | None
    sha256: str | None
    size: int | None
    status: str  # ok | unverified (no published hash) | mismatch | missing

    @property
    def problem(self) -> bool:
        return self.status == "mismatch"


def verify(entry: WeightFile) -> Verification:
    path = locate(entry)
    if path is None:
        return Verification(entry, None, None, None, "missing")
    sha256, size = file_sha256(path), path.stat().st_size
    if entry.sha256 is not None:
        status = "ok" if sha256 == entry.sha256 else "mismatch"
    elif entry.sha256_prefix is not None:
        status = "ok" if sha256.startswith(entry.sha256_prefix) else "mismatch"
    else:
        status = "unverified"
    if entry.size is not None and size != entry.size:
        status = "mismatch"
    return Verification(entry, path, sha256, size, status)


def checked_sha256(metric: str, paths: dict[str, Path]) -> dict[str, str]:
    """sha256 of each file a metric loads; a file that contradicts the lock table is refused."""
    by_key = {entry.key: entry for entry in files_for(metric)}
    hashes: dict[str, str] = {}
    for key, path in paths.items():
        entry = by_key[key]
        result = verify(entry)
        if result.problem:
            raise WeightsMissing(
                f"weight file {path} does not match the lock table (sha256 {result.sha256}, "
                f"{result.size} bytes; expected sha256 {entry.sha256 or entry.sha256_prefix}, "
                f"{entry.size} bytes); delete it and run `decoderbench weights fetch {metric}`")
        hashes[key] = result.sha256 or ""
    return hashes


@contextlib.contextmanager
def hub_offline() -> Iterator[None]:
    """Keep the Hugging Face hub from any network call while libraries load verified local files."""
    from huggingface_hub import constants

    previous_env, previous_flag = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous_flag
        if previous_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous_env


Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


TRUE_VALUES = {"1", "on", "yes", "true"}


def offline() -> bool:
    """HF_HUB_OFFLINE is set (as huggingface_hub read it): nothing may be downloaded."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_VALUES
    return bool(constants.HF_HUB_OFFLINE)


def missing_files(metrics: Iterable[str]) -> dict[str, list[WeightFile]]:
    """Metric → its lock-table files that are not here (metrics missing nothing are left out)."""
    found: dict[str, list[WeightFile]] = {}
    for metric in metrics:
        missing = [entry for entry in files_for(metric) if locate(entry) is None]
        if missing:
            found[metric] = missing
    return found


def skipped_line(metrics: list[str]) -> str:
    """The one line a run prints about metrics whose weight files are missing."""
    names = ", ".join(metrics)
    return (f"{names} skipped: {'its' if len(metrics) == 1 else 'their'} weight files are not on this "
            f"machine; `decoderbench weights fetch {' '.join(metrics)}` gets them")


def short_missing(metric: str) -> str:
    """What a missing weight file makes a metric's records say (the manifest keeps the details)."""
    return f"{metric}: weight files not on this machine; `decoderbench weights fetch {metric}` gets them"


def host_of(entry: WeightFile) -> str:
    return urllib.parse.urlsplit(entry.url).netloc


def reachable(url: str, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout_s` (name lookup included,
    which a socket timeout does not bound: it runs in a daemon thread)."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(result and result[0])


def fetch(entry: WeightFile, progress: Progress | None = None) -> Path:
    """Download one file into its cache location and check it against the lock table (a file
    that does not match is removed and refused)."""
    existing = locate(entry)
    if existing is not None:
        return existing
    if offline():
        raise WeightsMissing(f"{entry.filename} is missing and HF_HUB_OFFLINE is set: unset it to download "
                             f"(or copy the file to {expected_path(entry)})")
    if entry.store == Store.HF:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(entry.hf_repo, entry.filename, cache_dir=hf_cache_dir()))
    else:
        path = expected_path(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        _download(entry.url, path, progress)
    result = verify(entry)
    if result.problem:
        path.unlink(missing_ok=True)
        raise WeightsMissing(f"downloaded {entry.filename} does not match the lock table "
                             f"(sha256 {result.sha256}, {result.size} bytes; expected "
                             f"{entry.sha256 or entry.sha256_prefix}); removed it")
    return path


def _download(url: str, target: Path, progress: Progress | None = None) -> None:
    import urllib.request

    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, tmp.open("wb") as handle:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                handle.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
