"""The lock table: every weight file a built-in metric loads, where it comes from, how it is checked.

Each entry names its origin (a URL, or a Hugging Face repo and file), its sha256 where it is
published or was verified (else the prefix its file name carries), its size, a licence note and the
cache the loading library itself uses (docs/metrics.md, weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
