"""The token spec of a model family at a render resolution.

Counting itself is ``Document.page_tokens(spec)`` / ``Document.tokens(spec)`` in
mmprolong_schemas: smart_resize applied to the pixel size a page has at the given DPI (rounded
as PyMuPDF rounds its pixmaps), with explicit min/max pixels, plus the two wrapper tokens.
"""

from __future__ import annotations

from mmprolong_schemas import ModelFamily, VisionTokenSpec


def spec_for(
    family: ModelFamily | str = ModelFamily.QWEN2_5_VL,
    dpi: float = 144.0,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> VisionTokenSpec:
    """None keeps the family's own preprocessor limits (Qwen3-VL: 65536 / 16777216)."""
    return VisionTokenSpec.for_family(family, dpi=dpi, min_pixels=min_pixels, max_pixels=max_pixels)
