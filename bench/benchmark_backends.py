"""Throughput of the GenEval and DPG-Bench backends at their real architectures, random weights.

    PYTHONPATH=. python bench/benchmark_backends.py [--device cuda] [--sizes 512 1024]
        [--backends geneval blip vlm] [--repeats 3] [--questions 7]

Models are built from configs in memory
(no download): Mask2Former Swin-S with 80 COCO classes and CLIP ViT-L/14 (GenEval), BLIP VQA
ViT-B/16 at 384² (DPG-Bench `blip-vqa`), Qwen2.5-VL-3B's architecture (DPG-Bench `vlm`).
Latency does not depend on weight values, except for how many detections a trained detector
keeps: `detect` is timed with the metric's floor (0.3: random weights keep nothing, a trained
model a few) and without one (all 100 candidate masks upsampled: the worst case). Prints the
seconds per call and images per second per backend and image size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))


CPU_SECONDS: list[float] = []  # process CPU time of the last _timed call, per repeat


def _timed(call: Any, repeats: int, device: torch.device) -> float:
    """Wall seconds per call (CPU seconds of all threads per call go to CPU_SECONDS: on a shared
    machine wall time grows with the load, CPU time much less)."""
    call()  # warm-up: twice, as oneDNN settles its kernels for a new shape over more than one call
    call()
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        call()
    if device.type == "cuda":
        torch.cuda.synchronize()
    CPU_SECONDS[:] = [(time.process_time() - cpu) / repeats]
    return (time.perf_counter() - began) / repeats


def _cpu() -> str:
    return f" [{CPU_SECONDS[0]:.1f} CPU-s]"


def geneval_backend(device: torch.device) -> Any:
    from tiny_models import clip_tokenizer
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
    )

    from harness.metrics.geneval_detector import GENEVAL_CLASSES, TransformersGenEvalBackend, label_map

    backend = TransformersGenEvalBackend()
    labels = dict(enumerate(GENEVAL_CLASSES))
    detector = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(id2label=labels, num_queries=100))
    tokenizer = clip_tokenizer()
    clip = CLIPModel(CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 768, "intermediate_size": 3072,
                     "num_attention_heads": 12, "num_hidden_layers": 12, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                       "num_hidden_layers": 24, "patch_size": 14, "image_size": 224},
        projection_dim=768))
    backend.detector, backend.clip = detector.to(device).eval(), clip.to(device).eval()
    backend.tokenizer, backend.image_processor = tokenizer, CLIPImageProcessor()
    backend.labels, backend.device, backend.dtype = label_map(labels), device, torch.float32
    print(f"  Mask2Former {sum(p.numel() for p in detector.parameters()) / 1e6:.0f} M params, "
          f"CLIP {sum(p.numel() for p in clip.parameters()) / 1e6:.0f} M params", flush=True)
    return backend


def bench_geneval(device: torch.device, sizes: list[int], repeats: int) -> None:
    from harness.metrics.geneval import Detection

    backend = geneval_backend(device)
    for size in sizes:
        image = (np.random.default_rng(size).random((size, size, 3)) * 255).astype(np.uint8)
        backend.min_score = 0.3
        detect = _timed(lambda image=image: backend.detect(image), repeats, device)
        detect_cpu = _cpu()
        backend.min_score = 0.0
        worst = _timed(lambda image=image: backend.detect(image), repeats, device)
        obj = [Detection((size / 4, size / 4, 3 * size / 4, 3 * size / 4), 0.9,
                         np.ones((size, size), dtype=bool))]
        colour = _timed(lambda image=image, obj=obj: backend.colours(image, obj, "car"), repeats, device)
        rate = 1 / (detect + colour)
        print(f"geneval transformers {size}²: detect {detect:.2f} s{detect_cpu} (all 100 masks: "
              f"{worst:.2f} s), colour {colour:.2f} s/object{_cpu()} → {rate:.3f} images/s (detect + one "
              "colour)", flush=True)


def bench_blip(device: torch.device, sizes: list[int], repeats: int, questions: int) -> None:
    from tiny_models import word_tokenizer
    from transformers import BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor

    from harness.metrics.vqa import BlipVQABackend

    backend = BlipVQABackend()
    model = BlipForQuestionAnswering(BlipConfig())  # ViT-B/16 at 384², BERT-base text (blip-vqa-base)
    backend.model, backend.device = model.to(device).eval(), device
    words = ["is", "there", "a", "red", "cat", "on", "the", "mat", "are", "two", "dogs", "left", "of",
             "blue", "car"]
    backend.processor = BlipProcessor(image_processor=BlipImageProcessor(), tokenizer=word_tokenizer(words))
    print(f"  BLIP VQA {sum(p.numel() for p in model.parameters()) / 1e6:.0f} M params", flush=True)
    asked = [" ".join(words[i % 5: i % 5 + 6]) + " ?" for i in range(questions)]
    for size in sizes:
        image = (np.random.default_rng(size).random((size, size, 3)) * 255).astype(np.uint8)
        seconds = _timed(lambda image=image: backend.answer(image, asked), repeats, device)
        print(f"dpg blip-vqa {size}²: {seconds:.2f} s{_cpu()} per image of {questions} questions → "
              f"{1 / seconds:.3f} images/s", flush=True)


def bench_vlm(device: torch.device, sizes: list[int], repeats: int, questions: int) -> None:
    """Qwen2.5-VL-3B's architecture (random, bfloat16) with Qwen2-VL's image processor; a word-level
    tokenizer carrying the special tokens the processor needs (text is a few dozen tokens)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    from harness.metrics.vqa import VLMBackend, VLMParams

    specials = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                "<|video_pad|>", "<|endoftext|>"]
    words = ["<unk>", *specials, "system", "user", "assistant", "is", "there", "a", "red", "cat", "answer",
             "with", "yes", "or", "no", "."]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>",
                                                     pad_token="<|endoftext|>", eos_token="<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    template = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {% for c in m['content'] %}{% if "
                "c['type'] == 'image' %}<|vision_start|> <|image_pad|> <|vision_end|> {% else %}"
                "{{ c['text'] }} {% endif %}{% endfor %}<|im_end|> {% endfor %}"
                "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
    processor = transformers.Qwen2_5_VLProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(), tokenizer=tokenizer,
        video_processor=transformers.Qwen2VLVideoProcessor(), chat_template=template)
    config = transformers.Qwen2_5_VLConfig(
        text_config={"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                     "num_attention_heads": 16, "num_key_value_heads": 2, "vocab_size": 151936,
                     "tie_word_embeddings": True,
                     "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}},
        vision_config={"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                       "out_hidden_size": 2048, "fullatt_block_indexes": [7, 15, 23, 31]},
        image_token_id=tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"))
    model = transformers.Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    backend = VLMBackend(VLMParams(model="random", max_new_tokens=8))
    backend.processor, backend.model = processor, model.to(device).eval()
    print(f"  Qwen2.5-VL-3B architecture {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params",
          flush=True)
    for size in sizes:
        image = (np.random.default_rng(size).random((size, size, 3)) * 255).astype(np.uint8)
        seconds = _timed(lambda image=image: backend.answer(image, ["is there a red cat"]), repeats, device)
        print(f"dpg vlm (Qwen2.5-VL-3B, bf16) {size}²: {seconds:.1f} s{_cpu()} per question → "
              f"{1 / (seconds * questions):.4f} images/s at {questions} questions", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--backends", nargs="+", default=["geneval", "blip", "vlm"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--questions", type=int, default=7, help="questions per DPG-Bench image")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"device {device}, torch threads {torch.get_num_threads()}", flush=True)
    with torch.inference_mode():
        if "geneval" in args.backends:
            bench_geneval(device, args.sizes, args.repeats)
        if "blip" in args.backends:
            bench_blip(device, args.sizes, args.repeats, args.questions)
        if "vlm" in args.backends:
            bench_vlm(device, args.sizes, max(1, args.repeats // 3), args.questions)


if __name__ == "__main__":
    main()
