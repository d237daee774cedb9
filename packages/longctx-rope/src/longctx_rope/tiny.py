"""Tiny offline Qwen2.5-VL / Qwen3-VL models, tokenizers and processors for tests.

No weights or tokenizer files can be downloaded here, so everything is built in code: a
byte-level BPE vocabulary (every UTF-8 byte is a token, so any language round-trips) followed by
the family's real special tokens in their real order, a chat template of our own that renders
images and videos the way Qwen's does, the family's processor (its image-only subclass, as there
is no torchvision) around the PIL image processor, and randomly initialised models whose shapes
keep head_dim and mrope_section consistent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)

from longctx_rope.processors import ImageOnlyQwen2_5_VLProcessor, ImageOnlyQwen3VLProcessor
from mmprolong_runtime.atomic_dir import atomic_dir
from mmprolong_schemas import ModelFamily

SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
"""Qwen's added tokens in the order of their real ids (151643...151656)."""

BYTE_VOCAB_SIZE = 256
TINY_VOCAB_SIZE = 320
"""Model vocabulary: the 256 byte tokens, the special tokens, and headroom (as real Qwen has)."""

TINY_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' or 'video' in part -%}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in part -%}"
    "{{ part['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
"""Our own template with Qwen's rendering: ChatML turns, a default system turn, and each image
as <|vision_start|><|image_pad|><|vision_end|> (the processor expands the pad token)."""


def _family(family: ModelFamily | str) -> ModelFamily:
    try:
        return ModelFamily(family)
    except ValueError:
        known = ", ".join(f.value for f in ModelFamily)
        raise ValueError(f"unknown model family {family!r}; expected one of: {known}") from None


def special_token_id(token: str) -> int:
    """Id of a Qwen special token in the tiny vocabulary."""
    return BYTE_VOCAB_SIZE + SPECIAL_TOKENS.index(token)


def _token_ids() -> dict[str, int]:
    return {
        "image_token_id": special_token_id("<|image_pad|>"),
        "video_token_id": special_token_id("<|video_pad|>"),
        "vision_start_token_id": special_token_id("<|vision_start|>"),
        "vision_end_token_id": special_token_id("<|vision_end|>"),
    }


def _text_common() -> dict[str, Any]:
    return {
        "vocab_size": TINY_VOCAB_SIZE,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-6,
        "bos_token_id": special_token_id("<|endoftext|>"),
        "eos_token_id": special_token_id("<|im_end|>"),
        "pad_token_id": special_token_id("<|endoftext|>"),
    }


def tiny_config(family: ModelFamily | str, **overrides: Any) -> PretrainedConfig:
    """A few-layer config of the family's real architecture. head_dim is 32, so the rotary half
    has 16 frequencies: Qwen2.5-VL splits them [4, 6, 6] (the ratio of the real [16, 24, 24]),
    Qwen3-VL interleaves them [6, 5, 5] (as the real [24, 20, 20]). ``overrides`` set top-level
    config fields (e.g. ``image_token_id``) or, under ``text_config`` / ``vision_config`` as
    dicts, sub-config fields."""
    fam = _family(family)
    text_over = dict(overrides.pop("text_config", {}) or {})
    vision_over = dict(overrides.pop("vision_config", {}) or {})
    text: dict[str, Any] = _text_common()
    if fam is ModelFamily.QWEN2_5_VL:
        text |= {
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e6,
                "mrope_section": [4, 6, 6],
            },
        }
        vision: dict[str, Any] = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "tokens_per_second": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "out_hidden_size": text["hidden_size"],
        }
        cls: type[PretrainedConfig] = Qwen2_5_VLConfig
    else:
        text |= {
            "head_dim": 32,
            "max_position_embeddings": 262144,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5e6,
                "mrope_section": [6, 5, 5],
                "mrope_interleaved": True,
            },
        }
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "num_position_embeddings": 64,
            "deepstack_visual_indexes": [0, 1],
            "out_hidden_size": text["hidden_size"],
        }
        cls = Qwen3VLConfig
    text |= text_over
    vision |= vision_over
    vision["out_hidden_size"] = vision_over.get("out_hidden_size", text["hidden_size"])
    fields: dict[str, Any] = {
        "text_config": text,
        "vision_config": vision,
        "tie_word_embeddings": False,
        **_token_ids(),
    }
    fields |= overrides
    return cls(**fields)


def tiny_tokenizer(family: ModelFamily | str) -> PreTrainedTokenizerFast:
    """Byte-level BPE tokenizer: every byte is a token (no merges), so text in any language
    encodes and decodes exactly; Qwen's special tokens follow with their real relative order."""
    _family(family)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {char: index for index, char in enumerate(sorted(alphabet))}
    assert len(vocab) == BYTE_VOCAB_SIZE
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=32768,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        chat_template=TINY_CHAT_TEMPLATE,
    )
    for token in SPECIAL_TOKENS:
        if tokenizer.convert_tokens_to_ids(token) != special_token_id(token):
            raise RuntimeError(f"tiny vocabulary misplaced {token}")
    return tokenizer


def tiny_processor(
    family: ModelFamily | str, min_pixels: int = 3136, max_pixels: int = 200_704
) -> ProcessorMixin:
    """The family's real processor (its image-only subclass, see ``processors``) around the PIL
    image processor and the tiny tokenizer. Pixel bounds are explicit: small images keep
    tests fast, and token counts follow smart_resize with factor 28 (Qwen2.5-VL) or 32."""
    fam = _family(family)
    qwen3 = fam is ModelFamily.QWEN3_VL
    # Qwen3-VL normalises with mean = std = 0.5; Qwen2.5-VL keeps the CLIP defaults.
    normalisation: dict[str, Any] = (
        {"image_mean": [0.5] * 3, "image_std": [0.5] * 3} if qwen3 else {}
    )
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
        patch_size=16 if qwen3 else 14,
        temporal_patch_size=2,
        merge_size=2,
        **normalisation,
    )
    processor_cls = ImageOnlyQwen3VLProcessor if qwen3 else ImageOnlyQwen2_5_VLProcessor
    processor: ProcessorMixin = processor_cls(
        image_processor=image_processor,
        tokenizer=tiny_tokenizer(fam),
        chat_template=TINY_CHAT_TEMPLATE,
    )
    return processor


def tiny_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A reproducible RGB noise image of width x height pixels."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size {width}x{height} is empty")
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def build_tiny_model(
    family: ModelFamily | str, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """A randomly initialised conditional-generation model of the family (eval mode) and its
    tiny processor. Same seed, same weights."""
    fam = _family(family)
    config: Any = tiny_config(fam)
    model_cls: Any = (
        Qwen3VLForConditionalGeneration
        if fam is ModelFamily.QWEN3_VL
        else Qwen2_5_VLForConditionalGeneration
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: PreTrainedModel = model_cls(config).to(dtype).eval()
    return model, tiny_processor(fam)


def save_tiny_checkpoint(
    family: ModelFamily | str, out_dir: str | Path, seed: int = 0, *, overwrite: bool = False
) -> Path:
    """Write a tiny checkpoint directory (config, safetensors, tokenizer, processor, chat
    template) that AutoModelForImageTextToText and AutoProcessor load offline. The directory
    appears atomically, complete or not at all."""
    out = Path(out_dir)
    model, processor = build_tiny_model(family, seed=seed)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return out
