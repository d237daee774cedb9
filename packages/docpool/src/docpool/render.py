"""Pages as pixels, rendered on demand from the stored PDF (nothing is stored as an image).

Rasterising is PyMuPDF's job; encoding is not (its own PNG and JPEG encoders are about ten
times slower than its rasteriser). JPEG is encoded by simplejpeg (libjpeg-turbo) straight from
the pixmap's memory: Pillow keeps RGB as four bytes a pixel, so handing it a pixmap costs a
conversion pass before it encodes, a third of the encoding time. PNG and WebP go through Pillow.
Encoding a page costs more than rasterising it, and both encoders release the GIL, so
``write_pages`` encodes on a small thread pool while the next page is rasterised (PyMuPDF is
not thread-safe: rasterising stays on the calling thread).
"""

from __future__ import annotations

import io
import os
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pymupdf
import simplejpeg
from PIL import Image

from mmprolong_schemas import atomic_path

JPEG_QUALITY = 90
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


def pixmap_pixels(pixmap: Any) -> np.ndarray:
    """A ``(height, width, n)`` uint8 view of a pixmap's own memory (no copy; rows may be
    padded to ``stride``): valid while the pixmap lives."""
    rows = np.frombuffer(pixmap.samples_mv, dtype=np.uint8).reshape(pixmap.height, pixmap.stride)
    return rows[:, : pixmap.width * pixmap.n].reshape(pixmap.height, pixmap.width, pixmap.n)


def jpeg_bytes(pixels: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG of an ``(height, width, 3)`` uint8 RGB array: 4:2:0 chroma and the accurate DCT,
    what Pillow and pdftoppm write at the same quality."""
    return bytes(
        simplejpeg.encode_jpeg(
            np.ascontiguousarray(pixels),
            quality=quality,
            colorspace="RGB",
            colorsubsampling="420",
            fastdct=False,
        )
    )


def _format_name(fmt: str) -> str:
    name = FORMATS.get(fmt.lower())
    if name is None:
        raise ValueError(f"image format {fmt!r} is not one of jpeg, png, webp")
    return name


def encode_image(pixels: np.ndarray, fmt: str = "jpeg", quality: int = JPEG_QUALITY) -> bytes:
    """``pixels`` (RGB, ``(height, width, 3)``) as a jpeg, png or webp file's bytes."""
    name = _format_name(fmt)
    if name == "JPEG":
        return jpeg_bytes(pixels, quality)
    options: dict[str, object] = {"quality": quality} if name == "WEBP" else {}
    if name == "PNG":
        options["compress_level"] = 1  # PNG is lossless anyway; level 1 is several times faster
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(buffer, format=name, **options)
    return buffer.getvalue()


def save_image(image: Image.Image, path: Path, fmt: str, quality: int = JPEG_QUALITY) -> None:
    """Encode ``image`` as jpeg, png or webp into ``path`` (written atomically)."""
    data = encode_image(np.asarray(image.convert("RGB")), fmt, quality)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_pages(
    pdf_path: str | Path,
    pages: Sequence[int],
    out_dir: Path,
    *,
    dpi: float = 144.0,
    fmt: str = "jpeg",
    quality: int = JPEG_QUALITY,
    stem: str = "page",
    encoders: int = 2,
) -> list[Path]:
    """Render and encode pages straight to files ``<stem>-p0001.jpg`` ... (each written
    atomically). ``encoders`` threads encode while the next page is rasterised; 0 encodes each
    page on this thread right after rasterising it, without copying its pixels."""
    name = _format_name(fmt)
    if encoders < 0:
        raise ValueError(f"encoders must not be negative, got {encoders}")
    suffix = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[name]
    out_dir.mkdir(parents=True, exist_ok=True)
    zoom = dpi / 72.0

    def save(pixels: np.ndarray, path: Path) -> Path:
        # Renamed into place, so a reader never sees half a file; not fsynced, since a page
        # image lost to a power cut is rendered again, and an fsync a page slows rendering.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_bytes(encode_image(pixels, fmt, quality))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    pool = ThreadPoolExecutor(encoders, thread_name_prefix="docpool-encode") if encoders else None
    # Each page's pixmap stays with its future: the encoder reads the pixmap's memory in place,
    # and the pixmap is freed here, on the rasterising thread, once encoded (freeing MuPDF
    # memory is a MuPDF call, not safe beside a rasterisation).
    pending: deque[tuple[Future[Path], Any]] = deque()
    written: list[Path] = []
    try:
        with pymupdf.open(pdf_path) as doc:
            for number in pages:
                if not 1 <= number <= doc.page_count:
                    raise IndexError(f"{pdf_path} has no page {number} (1-{doc.page_count})")
                pixmap = doc.load_page(number - 1).get_pixmap(
                    matrix=pymupdf.Matrix(zoom, zoom), alpha=False
                )
                path = out_dir / f"{stem}-p{number:04d}.{suffix}"
                if pool is None:
                    written.append(save(pixmap_pixels(pixmap), path))
                    continue
                pending.append((pool.submit(save, pixmap_pixels(pixmap), path), pixmap))
                del pixmap
                # Bounded memory: at most two pages a thread wait for their encoder.
                while len(pending) > 2 * encoders:
                    future, _ = pending.popleft()
                    written.append(future.result())
            while pending:
                future, _ = pending.popleft()
                written.append(future.result())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        pending.clear()
    return written
