"""Our page-token formula (mmprolong_schemas.vision_tokens) agrees with transformers' Qwen-VL
image processors (the PIL backend: there is no torchvision here), which is what a model sees."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    Qwen2VLImageProcessorPil,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    smart_resize as hf_smart_resize,
)

from mmprolong_schemas import VisionTokenSpec, image_tokens
from mmprolong_schemas.vision_tokens import smart_resize

sizes = st.integers(min_value=8, max_value=6000)


@settings(max_examples=400, deadline=None)
@given(
    sizes,
    sizes,
    st.sampled_from([28, 32]),
    st.sampled_from([3136, 256 * 28 * 28]),
    st.sampled_from([12845056, 1280 * 28 * 28, 16384 * 32 * 32]),
)
def test_smart_resize_matches_transformers(h: int, w: int, factor: int, lo: int, hi: int) -> None:
    if max(h, w) / min(h, w) > 200:
        return
    assert smart_resize(h, w, factor, lo, hi) == hf_smart_resize(h, w, factor, lo, hi)


@pytest.mark.parametrize(("width", "height"), [(1224, 1584), (1584, 1224), (595, 842), (300, 40)])
def test_image_tokens_match_the_pil_image_processor(width: int, height: int) -> None:
    spec = VisionTokenSpec(min_pixels=3136, max_pixels=1280 * 28 * 28)
    processor = Qwen2VLImageProcessorPil(min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
    out = processor(images=[Image.new("RGB", (width, height), "white")], return_tensors="pt")
    t, gh, gw = out["image_grid_thw"][0].tolist()
    merged = t * gh * gw // (processor.merge_size**2)
    assert image_tokens(height, width, spec) == merged


@pytest.mark.parametrize(
    ("width", "height"), [(1224, 1584), (1584, 1224), (595, 842), (100, 60), (14400, 14400)]
)
def test_qwen3_vl_family_matches_its_image_processor(width: int, height: int) -> None:
    # Qwen3-VL ships Qwen2VLImageProcessor (transformers' image_processing_auto maps qwen3_vl to
    # it) with Qwen3-VL-8B-Instruct's preprocessor_config: patch_size 16, merge_size 2,
    # size {shortest_edge: 65536, longest_edge: 16777216}. Small and huge images hit the limits.
    spec = VisionTokenSpec.for_family("qwen3-vl")
    assert (spec.factor, spec.min_pixels, spec.max_pixels) == (32, 65536, 16777216)
    processor = Qwen2VLImageProcessorPil(
        patch_size=16, merge_size=2, size={"shortest_edge": 65536, "longest_edge": 16777216}
    )
    out = processor(images=[Image.new("RGB", (width, height), "white")], return_tensors="pt")
    t, gh, gw = out["image_grid_thw"][0].tolist()
    assert image_tokens(height, width, spec) == t * gh * gw // (processor.merge_size**2)
