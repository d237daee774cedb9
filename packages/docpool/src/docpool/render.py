"""Pages as pixels, rendered on demand from the stored PDF (nothing is stored as an image).

Rasterising is PyMuPDF's job; encoding is not (its own PNG and JPEG encoders are about ten
times slower than its rasteriser). JPEG files are encoded by simplejpeg (libjpeg-turbo) straight
from the pixmap's memory: Pillow keeps RGB as four bytes a pixel, so handing it a pixmap costs a
conversion pass before it encodes, a third of the encoding time. PNG and WebP go through Pillow.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pymupdf
import simplejpeg
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
            images.append(Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples))
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


def write_pages(
    pdf_path: str | Path,
    pages: Sequence[int],
    out_dir: Path,
    *,
    dpi: float = 144.0,
    fmt: str = "jpeg",
    quality: int = 90,
    stem: str = "page",
) -> list[Path]:
    """Render and encode pages straight to files ``<stem>-p0001.jpg`` ...; JPEG is encoded
    from the pixmap's memory, without the copy ``render_pages`` makes."""
    name = FORMATS.get(fmt.lower())
    if name is None:
        raise ValueError(f"image format {fmt!r} is not one of jpeg, png, webp")
    suffix = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    zoom = dpi / 72.0
    with pymupdf.open(pdf_path) as doc:
        for number in pages:
            if not 1 <= number <= doc.page_count:
                raise IndexError(f"{pdf_path} has no page {number} (1-{doc.page_count})")
            pixmap = doc.load_page(number - 1).get_pixmap(
                matrix=pymupdf.Matrix(zoom, zoom), alpha=False
            )
            path = out_dir / f"{stem}-p{number:04d}.{suffix}"
            if name == "JPEG":
                # 4:2:0 chroma, accurate DCT: what Pillow and pdftoppm write at this quality.
                rows = np.frombuffer(pixmap.samples_mv, dtype=np.uint8).reshape(
                    pixmap.height, pixmap.stride
                )
                pixels = np.ascontiguousarray(rows[:, : pixmap.width * 3]).reshape(
                    pixmap.height, pixmap.width, 3
                )
                data = simplejpeg.encode_jpeg(
                    pixels, quality=quality, colorspace="RGB", colorsubsampling="420"
                )
                path.write_bytes(data)
            else:
                # The image borrows the pixmap's buffer; both live until the file is written.
                image = Image.frombuffer(
                    "RGB",
                    (pixmap.width, pixmap.height),
                    pixmap.samples_mv,
                    "raw",
                    "RGB",
                    pixmap.stride,
                    1,
                )
                save_image(image, path, fmt, quality)
                del image
            del pixmap
            written.append(path)
    return written
