"""Pages as pixels, rendered on demand from the stored PDF (nothing is stored as an image).

Rasterising is PyMuPDF's job and encoding is Pillow's: PyMuPDF's own PNG encoder is about ten
times slower than its rasteriser, and JPEG/WebP through Pillow are faster still.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pymupdf
from PIL import Image

FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


def render_pages(
    pdf_path: str | Path, pages: Sequence[int], dpi: float = 144.0
) -> list[Image.Image]:
    """RGB images of ``pages`` (1-based) at ``dpi``, in the order asked."""
    with pymupdf.open(pdf_path) as doc:
        images = []
        for number in pages:
            if not 1 <= number <= doc.page_count:
                raise IndexError(f"{pdf_path} has no page {number} (1-{doc.page_count})")
            # A zoom matrix rather than get_pixmap(dpi=): the latter only takes whole DPIs.
            zoom = dpi / 72.0
            pixmap = doc.load_page(number - 1).get_pixmap(
                matrix=pymupdf.Matrix(zoom, zoom), alpha=False
            )
            images.append(
                Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)
            )
        return images


def save_image(image: Image.Image, path: Path, fmt: str, quality: int = 90) -> None:
    """Encode through Pillow; ``fmt`` is jpeg, png or webp."""
    name = FORMATS.get(fmt.lower())
    if name is None:
        raise ValueError(f"image format {fmt!r} is not one of jpeg, png, webp")
    options: dict[str, object] = {}
    if name in ("JPEG", "WEBP"):
        options["quality"] = quality
    if name == "PNG":
        options["compress_level"] = 1  # PNG is lossless anyway; level 1 is several times faster
    image.save(path, format=name, **options)
