"""A packed row with 4-row position ids must behave exactly like its documents run alone."""

from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedModel, ProcessorMixin

from longctx_rope import PackedDoc, packed_position_ids
from longctx_rope.tiny import tiny_image


def _documents(processor: ProcessorMixin) -> list[dict[str, torch.Tensor]]:
    layouts = [
        ([tiny_image(90, 120, seed=1), tiny_image(150, 60, seed=2)], "Deux pages, une question ?"),
        ([], "Nur Text: wie groß ist das?"),
        ([tiny_image(200, 140, seed=3)], "One page."),
    ]
    docs = []
    for images, question in layouts:
        content = [{"type": "image"} for _ in images] + [{"type": "text", "text": question}]
        text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
        docs.append(dict(processor(text=[text], images=images or None, return_tensors="pt")))
    return docs


def _alone(model: PreTrainedModel, doc: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        logits: torch.Tensor = model(**doc, use_cache=False).logits[0]
    return logits


def _cat(docs: list[dict[str, torch.Tensor]], key: str) -> torch.Tensor | None:
    parts = [d[key] for d in docs if key in d]
    return torch.cat(parts) if parts else None


def _packed(model: PreTrainedModel, docs: list[dict[str, torch.Tensor]], rows: int) -> torch.Tensor:
    packed = packed_position_ids(
        [
            PackedDoc(
                d["input_ids"][0],
                d.get("image_grid_thw"),
                d.get("video_grid_thw"),
                d.get("second_per_grid_ts"),
            )
            for d in docs
        ],
        model.config,
    )
    position_ids = packed[4 - rows :].unsqueeze(1)
    vision = {
        key: value
        for key in (
            "pixel_values",
            "image_grid_thw",
            "pixel_values_videos",
            "video_grid_thw",
            "second_per_grid_ts",
        )
        if (value := _cat(docs, key)) is not None
    }
    with torch.no_grad():
        logits: torch.Tensor = model(
            input_ids=torch.cat([d["input_ids"] for d in docs], dim=1),
            **vision,
            position_ids=position_ids,
            attention_mask=None,
            use_cache=False,
        ).logits[0]
    return logits


def assert_packed_equals_alone(
    model: PreTrainedModel, docs: list[dict[str, torch.Tensor]], rows: int = 4
) -> None:
    packed = _packed(model, docs, rows)
    offset = 0
    for index, doc in enumerate(docs):
        alone = _alone(model, doc)
        part = packed[offset : offset + alone.shape[0]]
        offset += alone.shape[0]
        assert torch.allclose(part, alone, atol=1e-4, rtol=1e-4), (
            f"document {index} differs by {float((part - alone).abs().max()):.3g}"
        )


def test_packed_forward_equals_per_document(tiny: tuple[PreTrainedModel, ProcessorMixin]) -> None:
    model, processor = tiny
    assert_packed_equals_alone(model, _documents(processor))


def test_three_row_ids_leak_between_documents(
    tiny: tuple[PreTrainedModel, ProcessorMixin],
) -> None:
    """The check above is sharp: without the text row, later documents see earlier ones."""
    model, processor = tiny
    with pytest.raises(AssertionError, match="document 1 differs"):
        assert_packed_equals_alone(model, _documents(processor), rows=3)


def _video_document(model: PreTrainedModel, seed: int) -> dict[str, torch.Tensor]:
    """A text + video document built by hand (no video processor without torchvision): frames
    laid out as each family's processor lays them out, random patch pixels."""
    from longctx_rope.tiny import special_token_id

    vision = model.config.vision_config
    t, h, w = 2, 4, 6
    patch_dim = 3 * vision.temporal_patch_size * vision.patch_size**2
    generator = torch.Generator().manual_seed(seed)
    start, end = special_token_id("<|vision_start|>"), special_token_id("<|vision_end|>")
    pad = special_token_id("<|video_pad|>")
    ids = [10, 11, 12]
    if model.config.model_type == "qwen3_vl":
        for frame in range(t):  # "<0.5 seconds>" before each frame, as Qwen3VLProcessor does
            ids += [60 + frame, 61, start] + [pad] * (h * w // 4) + [end]
    else:
        ids += [start] + [pad] * (t * h * w // 4) + [end]
    ids += [13, 14]
    input_ids = torch.tensor([ids])
    doc = {
        "input_ids": input_ids,
        "mm_token_type_ids": (input_ids == pad).int() * 2,
        "pixel_values_videos": torch.randn(t * h * w, patch_dim, generator=generator),
        "video_grid_thw": torch.tensor([[t, h, w]]),
    }
    if model.config.model_type == "qwen2_5_vl":
        doc["second_per_grid_ts"] = torch.tensor([1.5])
    return doc


def test_packed_forward_with_videos(tiny: tuple[PreTrainedModel, ProcessorMixin]) -> None:
    model, processor = tiny
    image_doc, text_doc, _ = _documents(processor)
    docs = [_video_document(model, seed=1), image_doc, text_doc, _video_document(model, seed=2)]
    assert_packed_equals_alone(model, docs)
