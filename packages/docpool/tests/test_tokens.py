"""Token estimates from page sizes, against known sizes and real PyMuPDF pixmaps."""

from __future__ import annotations

import pymupdf
import pytest

from docpool.tokens import spec_for
from mmprolong_schemas import Document, ModelFamily, Page, VisionTokenSpec, page_tokens
from mmprolong_schemas.vision_tokens import pixels_at_dpi

LETTER = (612.0, 792.0)


def test_us_letter_at_144_dpi_is_2508_image_tokens() -> None:
    spec = spec_for(ModelFamily.QWEN2_5_VL, dpi=144, max_pixels=12845056)
    assert page_tokens(*LETTER, spec, wrappers=False) == 2508  # 1232 x 1596 / 28^2
    assert page_tokens(*LETTER, spec) == 2510  # plus <|vision_start|> and <|vision_end|>


def test_qwen3_uses_factor_32() -> None:
    spec = spec_for(ModelFamily.QWEN3_VL, dpi=144)
    # 1224 x 1584 pixels -> rounded to multiples of 32: 1216 x 1600.
    assert spec.factor == 32
    assert page_tokens(*LETTER, spec, wrappers=False) == (1216 // 32) * (1600 // 32)


def test_max_pixels_caps_the_count() -> None:
    small = spec_for(dpi=144, max_pixels=1003520)
    tokens = page_tokens(*LETTER, small, wrappers=False)
    assert tokens * 28 * 28 <= 1003520
    assert tokens < 2508


@pytest.mark.parametrize("size", [(595.276, 841.89), (612, 1008), (419.53, 595.28), (500.5, 333.3)])
@pytest.mark.parametrize("dpi", [72, 100, 144, 150, 200])
def test_pixels_at_dpi_matches_real_pixmaps(size: tuple[float, float], dpi: int) -> None:
    doc = pymupdf.open()
    page = doc.new_page(width=size[0], height=size[1])
    pixmap = page.get_pixmap(dpi=dpi)
    assert (pixels_at_dpi(size[0], dpi), pixels_at_dpi(size[1], dpi)) == (
        pixmap.width,
        pixmap.height,
    )


def test_document_total_is_the_sum_of_pages() -> None:
    pages = [
        Page(number=1, width=612, height=792),
        Page(number=2, width=792, height=612, rotation=90),
        Page(number=3, width=595.276, height=841.89),
    ]
    doc = Document(doc_id="a" * 64, source_path="x.pdf", file_size=1, num_pages=3, pages=pages)
    spec = VisionTokenSpec()
    counts = doc.page_tokens(spec)
    assert counts[0] == counts[1] == 2510  # a rotated page costs the same as upright
    assert doc.tokens(spec) == sum(counts)
    a4 = counts[2] - 2
    h, w = pixels_at_dpi(841.89, 144), pixels_at_dpi(595.276, 144)
    assert a4 == round(h / 28) * round(w / 28)
