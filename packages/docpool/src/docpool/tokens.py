"""How many vision tokens pages and documents cost, from page sizes alone (no rendering).

Counts follow the Qwen-VL preprocessors: ``mmprolong_schemas.page_tokens`` applies
smart_resize to the pixel size the page has at the given DPI (rounded as PyMuPDF rounds its
pixmaps), with explicit min/max pixels, and adds the two vision wrapper tokens.
"""

from __future__ import annotations

from mmprolong_schemas import Document, ModelFamily, VisionTokenSpec, page_tokens


def spec_for(
    family: ModelFamily | str = ModelFamily.QWEN2_5_VL,
    dpi: float = 144.0,
    min_pixels: int = 3136,
    max_pixels: int = 12845056,
) -> VisionTokenSpec:
    return VisionTokenSpec.for_family(family, dpi=dpi, min_pixels=min_pixels, max_pixels=max_pixels)


def page_token_counts(document: Document, spec: VisionTokenSpec | None = None) -> list[int]:
    """Tokens of every page, wrappers included, in page order."""
    spec = spec or VisionTokenSpec()
    return [page_tokens(page.width, page.height, spec) for page in document.pages]


def document_tokens(document: Document, spec: VisionTokenSpec | None = None) -> int:
    return sum(page_token_counts(document, spec))
