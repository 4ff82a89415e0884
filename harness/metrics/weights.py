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
from enum import StrEnum
from pathlib import Path

from harness.errors import DecoderbenchError
from harness.store import atomic_write_text


class Store(StrEnum):
    TORCH_CHECKPOINTS = "torch-hub-checkpoints"  # $TORCH_HOME/hub/checkpoints (torchvision)
    PYIQA = "pyiqa"  # $TORCH_HOME/hub/pyiqa (pyiqa's download cache)
    CLIP = "clip"  # $TORCH_HOME/hub/clip (pyiqa's CLIP loader)
    HF = "huggingface"  # the Hugging Face hub cache


@dataclass(frozen=True)
class WeightFile:
    filename: str
    store: Store
    url: str
    description: str
    licence: str
    used_by: tuple[str, ...]
    sha256: str | None = None  # full sha256, published or verified
    sha256_prefix: str | None = None  # the prefix a file name carries (torch hub convention)
    size: int | None = None
    hf_repo: str | None = None  # Store.HF: repo id (the file is `filename` in it)
    package_copy: str | None = None  # "package/relative/path" of a copy shipped in a package

    @property
    def key(self) -> str:
        return f"{self.hf_repo}/{self.filename}" if self.hf_repo else self.filename


PYIQA_HF = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
PYIQA_LICENCE = ("redistributed by chaofengc/IQA-PyTorch-Weights (pyiqa); the original "
                 "authors' licence applies — check it before commercial use")


def _pyiqa(filename: str, description: str, used_by: tuple[str, ...], upstream: str,
           **fields: object) -> WeightFile:
    return WeightFile(filename, Store.PYIQA, f"{PYIQA_HF}/{filename}", description,
                      f"{PYIQA_LICENCE} (upstream: {upstream})", used_by, **fields)  # type: ignore[arg-type]


LOCK: tuple[WeightFile, ...] = (
    WeightFile(
        "alexnet-owt-7be5be79.pth", Store.TORCH_CHECKPOINTS,
        "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "torchvision AlexNet ImageNet weights (LPIPS-alex backbone)",
        "torchvision model zoo (BSD-3-Clause code; ImageNet-trained weights)",
        ("lpips", "invention_lpips"), sha256_prefix="7be5be79"),
    WeightFile(
        "vgg16-397923af.pth", Store.TORCH_CHECKPOINTS,
        "https://download.pytorch.org/models/vgg16-397923af.pth",
        "torchvision VGG16 ImageNet weights (LPIPS-vgg and DISTS backbone)",
        "torchvision model zoo (BSD-3-Clause code; ImageNet-trained weights)",
        ("lpips_vgg", "dists"), sha256_prefix="397923af"),
    _pyiqa("LPIPS_v0.1_alex-df73285e.pth", "LPIPS v0.1 linear layers for AlexNet",
           ("lpips", "invention_lpips"), "richzhang/PerceptualSimilarity, BSD-2-Clause",
           sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0", size=6009,
           package_copy="lpips/weights/v0.1/alex.pth"),
    _pyiqa("LPIPS_v0.1_vgg-a78928a0.pth", "LPIPS v0.1 linear layers for VGG16", ("lpips_vgg",),
           "richzhang/PerceptualSimilarity, BSD-2-Clause",
           sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868", size=7289,
           package_copy="lpips/weights/v0.1/vgg.pth"),
    _pyiqa("DISTS_weights-f5e65c96.pth", "DISTS alpha/beta weights", ("dists",),
           "dingkeyan93/DISTS", sha256_prefix="f5e65c96"),
    _pyiqa("musiq_koniq_ckpt-e95806b9.pth", "MUSIQ trained on KonIQ-10k", ("musiq",),
           "google-research/google-research musiq, Apache-2.0", sha256_prefix="e95806b9"),
    _pyiqa("ckpt_koniq10k.pt", "MANIQA trained on KonIQ-10k", ("maniqa",), "IIGROUP/MANIQA"),
    WeightFile(
        "model.safetensors", Store.HF,
        "https://huggingface.co/timm/vit_base_patch8_224.augreg2_in21k_ft_in1k/resolve/main/model.safetensors",
        "timm ViT-B/8 ImageNet weights; pyiqa builds MANIQA's backbone with them "
        "before the MANIQA checkpoint overwrites every parameter",
        "timm (Apache-2.0; AugReg weights)", ("maniqa",),
        hf_repo="timm/vit_base_patch8_224.augreg2_in21k_ft_in1k"),
    _pyiqa("cfanet_nr_koniq_res50-9a73138b.pth", "TOPIQ-NR (CFANet, ResNet50) trained on KonIQ-10k",
           ("topiq_nr",), "chaofengc/IQA-PyTorch TOPIQ", sha256_prefix="9a73138b"),
    _pyiqa("niqe_modelparameters.mat", "NIQE natural-scene model parameters", ("niqe",),
           "LIVE NIQE MATLAB release"),
    _pyiqa("brisque_svm_weights.pth", "BRISQUE SVM regressor", ("brisque",),
           "photosynthesis-team/piq, Apache-2.0"),
    WeightFile(
        "RN50.pt", Store.CLIP,
        "https://openaipublic.azureedge.net/clip/models/"
        "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762/RN50.pt",
        "OpenAI CLIP RN50 (CLIP-IQA backbone)", "OpenAI CLIP, MIT", ("clipiqa",),
        sha256="afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"),
    WeightFile(
        "inception-2015-12-05.pt", Store.TORCH_CHECKPOINTS,
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
        "TorchScript port of TensorFlow's 2015-12-05 Inception-v3, the network clean-fid loads",
        "TensorFlow Inception weights (Apache-2.0) as packaged by NVlabs stylegan2-ada-pytorch",
        ("fid", "kid", "patch_fid"),
        sha256="f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"),
    *(WeightFile(
        name, Store.HF, f"https://huggingface.co/openai/clip-vit-large-patch14/resolve/main/{name}",
        "OpenAI CLIP ViT-L/14 (transformers format); GenEval's colour classifier",
        "OpenAI CLIP, MIT", ("clipscore", "geneval"), hf_repo="openai/clip-vit-large-patch14")
      for name in ("config.json", "model.safetensors", "preprocessor_config.json",
                   "tokenizer_config.json", "tokenizer.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json")),
    *(WeightFile(
        name, Store.HF,
        f"https://huggingface.co/facebook/mask2former-swin-small-coco-instance/resolve/main/{name}",
        "Mask2Former Swin-S, COCO instance segmentation (transformers port of the Detectron2 "
        "release): GenEval's object detector", "Mask2Former, MIT (Facebook Research)", ("geneval",),
        hf_repo="facebook/mask2former-swin-small-coco-instance")
      for name in ("config.json", "model.safetensors")),
    *(WeightFile(
        name, Store.HF, f"https://huggingface.co/Salesforce/blip-vqa-base/resolve/main/{name}",
        "Salesforce BLIP VQA (ViT-B, VQAv2): the built-in DPG-Bench VQA model", "BLIP, BSD-3-Clause",
        ("dpg_bench",), hf_repo="Salesforce/blip-vqa-base")
      for name in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json",
                   "tokenizer.json", "vocab.txt", "special_tokens_map.json")),
)


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


# --------------------------------------------------------------------------- hashing


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


# --------------------------------------------------------------------------- offline loading


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


# --------------------------------------------------------------------------- fetching

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
