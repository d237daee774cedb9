"""Assembled samples against the real Qwen2.5-VL processor (tiny vocabulary, real image code):
the page images cost exactly the tokens ``est_tokens`` counts for them."""

from __future__ import annotations

import pytest
from PIL import Image

from mmprolong_schemas import (
    PagePart,
    TextPart,
    VisionTokenSpec,
    page_tokens,
)
from mmprolong_schemas.vision_tokens import pixels_at_dpi
from qasynth.assemble import AssembleConfig, vqa_sample

tiny = pytest.importorskip("longctx_rope.tiny")


def test_page_tokens_match_the_processor(doc_factory, pair_factory) -> None:
    doc = doc_factory("fmt", num_pages=6, section_pages=None)
    spec = VisionTokenSpec(dpi=40, min_pixels=3136, max_pixels=200_704)
    pair = pair_factory(doc.doc_id, 6)
    sample = vqa_sample(pair, doc, AssembleConfig(spec=spec, page_labels=True))
    assert sample is not None
    size = (pixels_at_dpi(612, spec.dpi), pixels_at_dpi(792, spec.dpi))
    content = []
    for part in sample.messages[0].content:
        if isinstance(part, PagePart):
            content.append({"type": "image", "image": Image.new("RGB", size, "white")})
        else:
            assert isinstance(part, TextPart)
            content.append({"type": "text", "text": part.text})
    messages = [
        {"role": "user", "content": content},
        {"role": "assistant", "content": [{"type": "text", "text": sample.target}]},
    ]
    processor = tiny.tiny_processor(
        "qwen2.5-vl", min_pixels=spec.min_pixels, max_pixels=spec.max_pixels
    )
    inputs = processor.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_tensors="pt"
    )
    ids = inputs["input_ids"][0].tolist()
    pad = tiny.special_token_id("<|image_pad|>")
    start = tiny.special_token_id("<|vision_start|>")
    image_ids = (
        ids.count(pad) + ids.count(start) + ids.count(tiny.special_token_id("<|vision_end|>"))
    )
    assert ids.count(start) == doc.num_pages
    assert image_ids == doc.num_pages * page_tokens(612, 792, spec)
    assert sample.est_tokens - image_ids < 120
