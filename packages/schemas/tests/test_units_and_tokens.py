from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from mmprolong_schemas import (
    Document,
    ModelFamily,
    Recipe,
    VisionTokenSpec,
    format_tokens,
    image_tokens,
    page_tokens,
    parse_tokens,
)
from mmprolong_schemas.recipe import TrainConfig
from mmprolong_schemas.vision_tokens import (
    IMAGE_WRAPPER_TOKENS,
    estimate_text_tokens,
    pixels_at_dpi,
    smart_resize,
)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("128K", 131072),
        ("4M", 4194304),
        ("5B", 5368709120),
        ("0.5K", 512),
        ("64k", 65536),
        (" 8K ", 8192),
        ("1000", 1000),
        (2048, 2048),
        (1024.0, 1024),
    ],
)
def test_parse_tokens_uses_binary_prefixes(text: str | int, tokens: int) -> None:
    assert parse_tokens(text) == tokens


@pytest.mark.parametrize("bad", ["12Q", "", "K", "1.3K", 1.5, True])
def test_parse_tokens_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="token"):
        parse_tokens(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=2**45))
def test_format_then_parse_is_identity(count: int) -> None:
    assert parse_tokens(format_tokens(count)) == count


def test_token_count_fields_accept_prefixed_strings() -> None:
    assert TrainConfig(max_length="64K", global_batch_tokens="2M").sequences_per_batch == 32
    with pytest.raises(ValidationError, match="is not a token count"):
        TrainConfig(max_length="lots")


def test_letter_page_at_144_dpi_is_2508_tokens() -> None:
    # US Letter 612 x 792 pt renders to 1224 x 1584 px, resized to 1232 x 1596.
    assert (pixels_at_dpi(612, 144), pixels_at_dpi(792, 144)) == (1224, 1584)
    assert smart_resize(1584, 1224) == (1596, 1232)
    assert page_tokens(612, 792, wrappers=False) == 2508
    assert page_tokens(612, 792) == 2508 + IMAGE_WRAPPER_TOKENS


def test_document_token_counts_follow_each_page_size() -> None:
    pages = [
        {"number": 1, "width": 612, "height": 792},
        {"number": 2, "width": 792, "height": 612, "rotation": 90},
        {"number": 3, "width": 100, "height": 100},
    ]
    doc = Document(doc_id="0" * 64, source_path="a.pdf", file_size=1, num_pages=3, pages=pages)
    expected = [page_tokens(612, 792), page_tokens(792, 612), page_tokens(100, 100)]
    assert doc.page_tokens() == expected
    assert expected[0] == 2510
    assert doc.tokens() == sum(expected)
    qwen3 = VisionTokenSpec.for_family(ModelFamily.QWEN3_VL)
    assert doc.page_tokens(qwen3)[0] == (1600 // 32) * (1216 // 32) + IMAGE_WRAPPER_TOKENS


def test_qwen3_uses_factor_32() -> None:
    spec = VisionTokenSpec.for_family(ModelFamily.QWEN3_VL)
    assert spec.factor == 32
    # 1584 x 1224 -> 1600 x 1216 at factor 32.
    assert image_tokens(1584, 1224, spec) == (1600 // 32) * (1216 // 32)


def test_max_pixels_caps_tokens() -> None:
    spec = VisionTokenSpec(max_pixels=1280 * 28 * 28)
    assert image_tokens(1584, 1224, spec) <= 1280
    tiny = VisionTokenSpec(min_pixels=256 * 28 * 28)
    assert image_tokens(30, 30, tiny) >= 256


def test_spec_rejects_inverted_pixel_bounds() -> None:
    with pytest.raises(ValidationError, match="min_pixels 100 is larger than max_pixels 10"):
        VisionTokenSpec(min_pixels=100, max_pixels=10)


def test_extreme_aspect_ratio_is_an_error() -> None:
    with pytest.raises(ValueError, match="aspect ratio above 200"):
        smart_resize(10, 5000)


def test_family_spec_uses_the_family_preprocessor_limits() -> None:
    assert VisionTokenSpec.for_family("qwen2.5-vl").model_dump() == VisionTokenSpec().model_dump()
    qwen3 = VisionTokenSpec.for_family("qwen3-vl", dpi=100.0, max_pixels=None)
    assert (qwen3.dpi, qwen3.factor, qwen3.min_pixels, qwen3.max_pixels) == (
        100.0,
        32,
        65536,
        16777216,
    )
    # A tiny image is scaled up to Qwen3-VL's 65536-pixel floor: 8x8 cells of 32.
    assert image_tokens(40, 40, qwen3) == 64


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("abc", 1),  # a part-token rounds up
        ("abcdefgh", 2),
        ("长上下文", 4),  # one token per CJK character
        ("한국어 text", 3 + 2),  # Hangul counts wide; " text" is 5 characters
        ("ｆｕｌｌ", 4),  # full-width forms count wide
    ],
)
def test_text_tokens_are_estimated_without_a_tokenizer(text: str, tokens: int) -> None:
    assert estimate_text_tokens(text) == tokens


def test_recipe_vision_defaults_follow_its_family() -> None:
    recipe = Recipe.model_validate({"family": "qwen3-vl", "vision": {"dpi": 100.0}})
    assert (recipe.vision.factor, recipe.vision.min_pixels, recipe.vision.max_pixels) == (
        32,
        65536,
        16777216,
    )
    assert Recipe().vision == VisionTokenSpec()
