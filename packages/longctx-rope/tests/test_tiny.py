from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from longctx_rope import load_processor
from longctx_rope.tiny import (
    SPECIAL_TOKENS,
    save_tiny_checkpoint,
    special_token_id,
    tiny_config,
    tiny_image,
    tiny_processor,
    tiny_tokenizer,
)
from mmprolong_schemas import ModelFamily, VisionTokenSpec, image_tokens


def _chat(processor: ProcessorMixin, n_images: int, text: str) -> str:
    content = [{"type": "image"}] * n_images + [{"type": "text", "text": text}]
    rendered: str = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
    )
    return rendered


def test_config_is_consistent(family: str) -> None:
    config = tiny_config(family)
    text = config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    assert sum(text.rope_parameters["mrope_section"]) * 2 == head_dim
    assert config.vision_config.depth == 2
    assert config.vision_config.out_hidden_size == text.hidden_size
    tokenizer = tiny_tokenizer(family)
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert config.vision_end_token_id == tokenizer.convert_tokens_to_ids("<|vision_end|>")
    assert text.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert len(tokenizer) <= text.vocab_size


def test_qwen3_config_is_interleaved() -> None:
    rope = tiny_config("qwen3-vl").text_config.rope_parameters
    assert rope["mrope_interleaved"] is True
    assert rope["mrope_section"] == [6, 5, 5]


def test_config_overrides_reach_sub_configs() -> None:
    config = tiny_config("qwen2.5-vl", text_config={"num_hidden_layers": 1}, image_token_id=300)
    assert config.text_config.num_hidden_layers == 1
    assert config.image_token_id == 300


def test_unknown_family_is_named() -> None:
    with pytest.raises(ValueError, match="llava"):
        tiny_config("llava")


@pytest.mark.parametrize(
    "text", ["Größe und Maß", "Qu'est-ce que c'est ? Déjà vu, naïve", "a\tb\n"]
)
def test_tokenizer_round_trips_latin_text(family: str, text: str) -> None:
    tokenizer = tiny_tokenizer(family)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_special_tokens_are_single_ids(family: str) -> None:
    tokenizer = tiny_tokenizer(family)
    for token in SPECIAL_TOKENS:
        assert tokenizer(token, add_special_tokens=False)["input_ids"] == [special_token_id(token)]


def test_chat_template_renders_images_like_qwen(family: str) -> None:
    rendered = _chat(tiny_processor(family), 2, "Hi")
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        + "<|vision_start|><|image_pad|><|vision_end|>" * 2
        + "Hi<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize("size", [(100, 80), (300, 200), (56, 700)])
def test_processor_expands_image_pads_by_smart_resize(family: str, size: tuple[int, int]) -> None:
    min_pixels, max_pixels = 3136, 100_000
    processor = tiny_processor(family, min_pixels=min_pixels, max_pixels=max_pixels)
    batch = processor(
        text=[_chat(processor, 1, "x")], images=[tiny_image(*size)], return_tensors="pt"
    )
    pads = int((batch["input_ids"] == special_token_id("<|image_pad|>")).sum())
    spec = VisionTokenSpec.for_family(family, min_pixels=min_pixels, max_pixels=max_pixels)
    width, height = size
    assert pads == image_tokens(height, width, spec)
    assert pads == int(batch["image_grid_thw"].prod()) // 4
    assert int(batch["mm_token_type_ids"].sum()) == pads
    assert spec.factor == ModelFamily(family).resize_factor


def test_forward_and_generate_with_images(tiny: tuple[PreTrainedModel, ProcessorMixin]) -> None:
    model, processor = tiny
    images = [tiny_image(120, 90, seed=1), tiny_image(64, 160, seed=2)]
    batch = processor(
        text=[_chat(processor, 2, "Lis la page.")], images=images, return_tensors="pt"
    )
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (*batch["input_ids"].shape, model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()
    generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == batch["input_ids"].shape[1] + 4
    assert torch.equal(generated[:, : batch["input_ids"].shape[1]], batch["input_ids"])


def test_same_seed_same_weights(family: str) -> None:
    from longctx_rope.tiny import build_tiny_model

    first, _ = build_tiny_model(family, seed=3)
    second, _ = build_tiny_model(family, seed=3)
    other, _ = build_tiny_model(family, seed=4)
    name, weight = next(iter(first.state_dict().items()))
    assert torch.equal(weight, second.state_dict()[name])
    assert not torch.equal(weight, other.state_dict()[name])


def test_checkpoint_round_trip(family: str, tmp_path: Path) -> None:
    out = save_tiny_checkpoint(family, tmp_path / "ckpt", seed=0)
    model = AutoModelForImageTextToText.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    from longctx_rope.tiny import build_tiny_model

    reference, reference_processor = build_tiny_model(family, seed=0)
    text = _chat(processor, 1, "Wie groß?")
    image = tiny_image(90, 120, seed=5)
    batch = processor(text=[text], images=[image], return_tensors="pt")
    reference_batch = reference_processor(text=[text], images=[image], return_tensors="pt")
    assert torch.equal(batch["input_ids"], reference_batch["input_ids"])
    assert torch.equal(batch["pixel_values"], reference_batch["pixel_values"])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, reference(**reference_batch).logits)
    assert type(load_processor(out)) is type(processor)
    with pytest.raises(FileExistsError, match="ckpt"):
        save_tiny_checkpoint(family, out)


def test_load_processor_falls_back_for_stock_processor_class(tmp_path: Path) -> None:
    """A real checkpoint names the stock processor, which needs torchvision for its video part."""
    import json

    out = save_tiny_checkpoint("qwen2.5-vl", tmp_path / "ckpt")
    config = json.loads((out / "processor_config.json").read_text())
    config["processor_class"] = "Qwen2_5_VLProcessor"
    (out / "processor_config.json").write_text(json.dumps(config))
    processor = load_processor(out)
    batch = processor(
        text=["<|vision_start|><|image_pad|><|vision_end|>hi"], images=[tiny_image(56, 56)]
    )
    assert sum(batch["mm_token_type_ids"][0]) == 4
