"""A packed row with 4-row position ids must behave exactly like its documents run alone."""

from __future__ import annotations

import pytest
import torch
from transformers import PreTrainedModel, ProcessorMixin

from longctx_rope import PackedDoc, packed_position_ids, tiny_image


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


def _packed(model: PreTrainedModel, docs: list[dict[str, torch.Tensor]], rows: int) -> torch.Tensor:
    packed = packed_position_ids(
        [PackedDoc(d["input_ids"][0], d.get("image_grid_thw")) for d in docs], model.config
    )
    with_images = [d for d in docs if "pixel_values" in d]
    position_ids = packed[4 - rows :].unsqueeze(1)
    with torch.no_grad():
        logits: torch.Tensor = model(
            input_ids=torch.cat([d["input_ids"] for d in docs], dim=1),
            pixel_values=torch.cat([d["pixel_values"] for d in with_images]),
            image_grid_thw=torch.cat([d["image_grid_thw"] for d in with_images]),
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
