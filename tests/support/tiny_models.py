"""Tiny random models built from configs, saved the way users' folders are (no hub).

Import only in tests that need them: transformers and diffusers take seconds to import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

# A 4-level diffusers VAE (the /8 factor of the real ones) with a handful of channels.
TINY_VAE = {"block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4}


def _byte_characters() -> list[str]:
    """The 256 printable stand-ins byte-level BPE tokenizers use for bytes (GPT-2 convention)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    characters, extra = [], 0
    for byte in range(256):
        if byte in printable:
            characters.append(chr(byte))
        else:
            characters.append(chr(256 + extra))
            extra += 1
    return characters


def clip_tokenizer() -> Any:
    """A character-level CLIP tokenizer: every byte, alone or ending a word; no merges."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for character in _byte_characters():
            vocab[character + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _clip_config(vocab_size: int, projection_dim: int | None = None) -> Any:
    from transformers import CLIPTextConfig

    extra = {"projection_dim": projection_dim} if projection_dim else {}
    return CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32,
                          intermediate_size=37, num_attention_heads=4, num_hidden_layers=1,
                          vocab_size=vocab_size, **extra)


def sd3_pipeline(folder: Path) -> Path:
    """A random SD3 pipeline (two CLIP encoders, no T5) with a 16-channel /8 VAE, saved."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    config = _clip_config(len(tokenizer), projection_dim=32)
    pipe = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(
            sample_size=8, patch_size=2, in_channels=16, num_layers=1, attention_head_dim=8,
            num_attention_heads=2, caption_projection_dim=16, joint_attention_dim=64,
            pooled_projection_dim=64, out_channels=16),
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=AutoencoderKL(**tiny_vae_config(16), use_quant_conv=False, use_post_quant_conv=False,
                          scaling_factor=1.5305, shift_factor=0.0609),
        text_encoder=CLIPTextModelWithProjection(config), tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(config), tokenizer_2=tokenizer,
        text_encoder_3=None, tokenizer_3=None,
    )
    pipe.save_pretrained(folder)
    return folder


def sd_x4_upscaler(folder: Path) -> Path:
    """A random Stable Diffusion x4 upscaler pipeline (3-level VAE: 4× decode), saved."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        DDPMScheduler,
        StableDiffusionUpscalePipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    tokenizer = clip_tokenizer()
    pipe = StableDiffusionUpscalePipeline(
        vae=AutoencoderKL(block_out_channels=[8, 8, 8], down_block_types=["DownEncoderBlock2D"] * 3,
                          up_block_types=["UpDecoderBlock2D"] * 3, layers_per_block=1, latent_channels=4,
                          norm_num_groups=4, scaling_factor=0.08333),
        text_encoder=CLIPTextModel(_clip_config(len(tokenizer))), tokenizer=tokenizer,
        unet=UNet2DConditionModel(
            block_out_channels=(16, 32), layers_per_block=1, sample_size=32, in_channels=7,
            out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
            attention_head_dim=8, norm_num_groups=8, num_class_embeds=1000),
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(), max_noise_level=350,
    )
    pipe.save_pretrained(folder)
    return folder


def tiny_vae_config(latent_channels: int) -> dict[str, Any]:
    return {**TINY_VAE, "latent_channels": latent_channels,
            "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4}


CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def qwen_tokenizer() -> Any:
    """A byte-level BPE tokenizer without merges, with Qwen's special tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {token: index for index, token in enumerate([*specials, *_byte_characters()])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<|endoftext|>",
                                        eos_token="<|im_end|>", additional_special_tokens=specials[1:])
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def flux2_klein_pipeline(folder: Path) -> Path:
    """A random FLUX.2-klein pipeline (Qwen3 text encoder with 28 layers for its (9, 18, 27) read-out,
    a 1-channel AutoencoderKLFlux2 with non-trivial BatchNorm statistics), saved."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    vae = AutoencoderKLFlux2(sample_size=32, down_block_types=("DownEncoderBlock2D",) * 2,
                             up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(4, 4),
                             layers_per_block=1, latent_channels=1, norm_num_groups=1, use_quant_conv=False,
                             use_post_quant_conv=False)
    vae.bn.running_mean.copy_(torch.randn(4))
    vae.bn.running_var.copy_(torch.rand(4) + 0.5)
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, tokenizer=qwen_tokenizer(),
        text_encoder=Qwen3ForCausalLM(Qwen3Config(
            hidden_size=16, intermediate_size=16, num_hidden_layers=28, num_attention_heads=2,
            num_key_value_heads=2, vocab_size=512, max_position_embeddings=1024)),
        transformer=Flux2Transformer2DModel(
            patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=256,
            axes_dims_rope=[4, 4, 4, 4], guidance_embeds=False),
    )
    pipe.save_pretrained(folder)
    return folder


def qwenimage_pipeline(folder: Path) -> Path:
    """A random Qwen-Image pipeline (tiny Qwen2.5-VL text encoder, 4-channel video VAE at /4), saved."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 512,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
                     "rope_theta": 1000000.0},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                       "out_hidden_size": 16},
        hidden_size=16, vocab_size=512, vision_start_token_id=509, vision_end_token_id=510,
        vision_token_id=511, image_token_id=508, video_token_id=507)
    pipe = QwenImagePipeline(
        transformer=QwenImageTransformer2DModel(
            patch_size=2, in_channels=16, out_channels=4, num_layers=1, attention_head_dim=16,
            num_attention_heads=3, joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4)),
        vae=AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                   temperal_downsample=[False, True], latents_mean=[0.0] * 4,
                                   latents_std=[1.0] * 4),
        scheduler=FlowMatchEulerDiscreteScheduler(), tokenizer=qwen_tokenizer(),
        text_encoder=Qwen2_5_VLForConditionalGeneration(config).eval(),
    )
    pipe.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- benchmark backends


def tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random CLIP (1-layer towers, 224² input) with the character-level tokenizer, saved."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPVisionConfig

    tokenizer = clip_tokenizer()
    torch.manual_seed(seed)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                              num_hidden_layers=1, image_size=224, patch_size=32)
    config = CLIPConfig(text_config=_clip_config(len(tokenizer)).to_dict(), vision_config=vision.to_dict(),
                        projection_dim=16)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def tiny_mask2former(folder: Path, labels: list[str], seed: int = 0, queries: int = 12) -> Path:
    """A random Mask2Former (tiny Swin backbone) over `labels`, saved like a user's checkpoint."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    torch.manual_seed(seed)
    backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=7,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(
        backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
        encoder_feedforward_dim=64, dim_feedforward=64, encoder_layers=1, decoder_layers=2,
        num_attention_heads=2, num_queries=queries,
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
    Mask2FormerForUniversalSegmentation(config).save_pretrained(folder)
    return folder


def word_tokenizer(words: list[str]) -> Any:
    """A BERT-style word-level tokenizer over `words` (BLIP's tokenizer class), no files needed."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    vocab = {word: i for i, word in enumerate([*specials, *words])}
    model = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    names = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]",
             "mask_token": "[MASK]", "bos_token": "[DEC]"}
    return PreTrainedTokenizerFast(tokenizer_object=model, **names)


def tiny_blip_vqa(folder: Path, words: list[str], answer: str) -> Path:
    """A random BLIP VQA whose decoder always says `answer` (then [SEP]): its output layer is zero
    except biases that rank `answer` first and [SEP] second, so greedy decoding emits both."""
    from transformers import (
        BlipConfig,
        BlipForQuestionAnswering,
        BlipImageProcessor,
        BlipProcessor,
        BlipTextConfig,
        BlipVisionConfig,
    )

    tokenizer = word_tokenizer(words)
    torch.manual_seed(0)
    text = BlipTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37,
                          num_hidden_layers=1, num_attention_heads=2, encoder_hidden_size=32, pad_token_id=0,
                          sep_token_id=3, bos_token_id=5, max_position_embeddings=64)
    vision = BlipVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                              num_attention_heads=2, image_size=64, patch_size=16)
    model = BlipForQuestionAnswering(BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict()))
    head = model.text_decoder.cls.predictions
    with torch.no_grad():
        head.decoder.weight.zero_()
        head.bias.zero_()
        head.bias[tokenizer.convert_tokens_to_ids(answer)] = 2.0
        head.bias[3] = 1.0
    model.save_pretrained(folder)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 64, "width": 64}),
                              tokenizer=tokenizer)
    processor.save_pretrained(folder)
    return folder


LLAVA_WORDS = ["<unk>", "<pad>", "<s>", "</s>", "user", "assistant", ":"]


def tiny_llava(folder: Path, first_token: str) -> Path:
    """A random LLaVA (1-layer CLIP tower, 1-layer Llama) with a word-level tokenizer and a chat
    template. Its lm_head is all zeros, so greedy decoding always emits vocabulary id 0:
    `first_token`, which the caller chooses (a valid answer, or junk)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {word: i for i, word in enumerate([first_token, *LLAVA_WORDS])}
    tokenizer_model = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer_model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_model, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
        eos_token="</s>")
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    template = ("{% for m in messages %}{{ m['role'] }} : {% for c in m['content'] %}{% if c['type'] == "
                "'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}"
                "{% if add_generation_prompt %}assistant : {% endif %}")
    processor = transformers.LlavaProcessor(
        image_processor=transformers.CLIPImageProcessor(size={"shortest_edge": 28},
                                                        crop_size={"height": 28, "width": 28}),
        tokenizer=tokenizer, patch_size=14, vision_feature_select_strategy="default", chat_template=template,
        image_token="<image>", num_additional_image_tokens=1)
    config = transformers.LlavaConfig(
        vision_config=transformers.CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                    num_attention_heads=2, image_size=28, patch_size=14),
        text_config=transformers.LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=2, pad_token_id=2, bos_token_id=3, eos_token_id=4),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    model = transformers.AutoModelForImageTextToText.from_config(config)
    with torch.no_grad():
        model.lm_head.weight.zero_()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
