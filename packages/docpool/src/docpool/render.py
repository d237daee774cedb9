"""Pages as pixels, rendered on demand from the stored PDF (nothing is stored as an image).

Rasterising is PyMuPDF's job; encoding is not (its own PNG and JPEG encoders are about ten
times slower than its rasteriser). JPEG is encoded by simplejpeg (libjpeg-turbo) straight from
the pixmap's memory: Pillow keeps RGB as four bytes a pixel, so handing it a pixmap costs a
conversion pass before it encodes, a third of the encoding time. PNG and WebP go through Pillow.
Encoding a page costs more than rasterising it, and both encoders release the GIL, so
``write_pages`` encodes on a small thread pool while the next page is rasterised (PyMuPDF is
not thread-safe: rasterising stays on the calling thread).

Most document pages use no colour, and a gray page costs less at every step: rasterising into
one channel instead of three, and encoding one JPEG component instead of three (about 1.4x
faster at 144 DPI and q90). With ``color="auto"``, ``rasterise`` interprets the page once into
a display list, has MuPDF's test device replay it to see whether anything is drawn in colour
(about 0.01 ms: it stops at the first colour), and draws the list in gray or RGB.
"""

from __future__ import annotations

import io
import math
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pymupdf
import simplejpeg
from PIL import Image
from pymupdf import mupdf

from mmprolong_schemas.io import atomic_path

JPEG_QUALITY = 90
PIXEL_BUDGET = 16777216
"""Most pixels a rendered page gets (Qwen3-VL's max_pixels, the largest of the supported
image processors): 48 MiB as RGB. A Letter page at 144 DPI has 1.9 million."""
FORMATS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "webp": "WEBP"}

ColorMode = Literal["auto", "rgb", "gray"]
"""``auto``: gray for pages without colour, RGB for the others; ``rgb`` or ``gray``: always."""
COLOR_MODES: tuple[str, ...] = get_args(ColorMode)

# Largest difference between a colour's R, G and B (0-1) still called gray: MuPDF's suggested
# "imperceptible slop" (0.02, 5 of 255). It absorbs rounding in colour conversions (CMYK or ICC
# grays) while any tint a reader could see counts as colour.
COLOR_THRESHOLD = 0.02
# Shadings are tested colour by colour. Images are not: any image in a colour space counts as
# colour. MuPDF 1.28's per-pixel image test (FZ_TEST_OPT_IMAGES), for images outside DeviceRGB
# (ICC-based ones, the usual kind), converts an uninitialised buffer instead of the pixels
# (source and destination swapped), so its answer for them cannot be trusted; treating them
# as colour only forgoes the gray saving on pages such as RGB scans of gray paper.
_TEST_OPTIONS = mupdf.FZ_TEST_OPT_SHADINGS
# Kept alive here: ``internal()`` points into them, and a temporary would be freed before
# MuPDF reads it.
_IDENTITY = mupdf.FzMatrix()
_EVERYWHERE = mupdf.FzRect(mupdf.FzRect.Fixed_INFINITE)


def _draws_color(run: Callable[[Any], None], threshold: float) -> bool:
    """Whether ``run(device)`` draws colour on MuPDF's test device (a raw ``fz_device``)."""
    if not 0 <= threshold < 1:
        raise ValueError(f"colour threshold {threshold} is not in [0, 1)")
    out = mupdf.ll_fz_new_test_device_outparams()
    device = mupdf.ll_fz_new_test_device_outparams_fn(threshold, _TEST_OPTIONS, None, out)
    try:
        run(device)
        mupdf.ll_fz_close_device(device)
    finally:
        mupdf.ll_fz_drop_device(device)
    # 0: gray; 1: an image (or shading) in a colour space; 2: a colour was drawn.
    return bool(out.is_color)


def page_is_color(page: pymupdf.Page, threshold: float = COLOR_THRESHOLD) -> bool:
    """Whether ``page`` may draw anything in colour: text, paths, image-mask fills or shading
    colours whose R, G and B differ by more than ``threshold`` (0-1), or any image in a colour
    space (its pixels are not examined). Run by MuPDF's test device, which interprets the page
    without drawing it and stops at the first colour. Annotations count, as they are rendered.
    ``False`` is exact: rendering the page in gray loses nothing."""
    return _draws_color(
        lambda device: mupdf.ll_fz_run_page(
            page.this.m_internal, device, _IDENTITY.internal(), None
        ),
        threshold,
    )


def _check_color(color: str) -> None:
    if color not in COLOR_MODES:
        raise ValueError(f"colour mode {color!r} is not one of {', '.join(COLOR_MODES)}")


def budget_zoom(width_pt: float, height_pt: float, dpi: float, max_pixels: int) -> float:
    """The scale (pixels per point) a page is rendered at: ``dpi`` / 72, lowered so the image
    holds at most ``max_pixels`` pixels."""
    zoom = dpi / 72.0
    area = max(width_pt, 1e-6) * max(height_pt, 1e-6)
    if area * zoom * zoom > max_pixels:
        # Pixmap sides are rounded outward: keep a pixel of slack on each side.
        zoom = (math.sqrt(max_pixels / area) * 0.999) - 2.0 / max(width_pt, height_pt)
    return max(zoom, 1e-3)


def rasterise(
    page: pymupdf.Page,
    dpi: float = 144.0,
    color: ColorMode = "auto",
    max_pixels: int = PIXEL_BUDGET,
) -> pymupdf.Pixmap:
    """``page`` as a pixmap at ``dpi`` without alpha: one channel (gray) or three (RGB), as
    ``color`` says (``auto``: gray unless ``page_is_color``). ``pixmap_pixels`` views it as an
    array, ``jpeg_bytes`` and ``encode_image`` encode either kind. A page that would exceed
    ``max_pixels`` at ``dpi`` (a poster, a 200-inch drawing) is rendered at the resolution that
    fits: the image processors would shrink it to their max_pixels anyway, and its pixmap
    never takes gigabytes."""
    _check_color(color)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    # What page.get_pixmap does, in two steps: the page is interpreted once into a display
    # list, which the colour test then replays (several times cheaper than interpreting the
    # page again) before it is drawn.
    drawing = page.get_displaylist()
    gray = color == "gray" or (
        color == "auto"
        and not _draws_color(
            lambda device: mupdf.ll_fz_run_display_list(
                drawing.this.m_internal,
                device,
                _IDENTITY.internal(),
                _EVERYWHERE.internal(),
                None,
            ),
            COLOR_THRESHOLD,
        )
    )
    # A zoom matrix rather than get_pixmap(dpi=): the latter only takes whole DPIs.
    rect = page.rect
    zoom = budget_zoom(rect.width, rect.height, dpi, max_pixels)
    return drawing.get_pixmap(
        matrix=pymupdf.Matrix(zoom, zoom),
        colorspace=pymupdf.csGRAY if gray else pymupdf.csRGB,
        alpha=False,
    )


def render_pages(
    pdf_path: str | Path,
    pages: Sequence[int],
    dpi: float = 144.0,
    color: ColorMode = "rgb",
    max_pixels: int = PIXEL_BUDGET,
) -> list[Image.Image]:
    """Images of ``pages`` (1-based) at ``dpi`` (at most ``max_pixels`` each), in the order
    asked: RGB by default; with ``color="auto"`` or ``"gray"``, gray pages are mode ``L``."""
    _check_color(color)
    with pymupdf.open(pdf_path) as doc:
        images = []
        for number in pages:
            if not 1 <= number <= doc.page_count:
                raise IndexError(f"{pdf_path} has no page {number} (1-{doc.page_count})")
            pixmap = rasterise(doc.load_page(number - 1), dpi, color, max_pixels)
            mode = "L" if pixmap.n == 1 else "RGB"
            images.append(Image.frombytes(mode, (pixmap.width, pixmap.height), pixmap.samples))
        return images


def pixmap_pixels(pixmap: Any) -> np.ndarray:
    """A ``(height, width, n)`` uint8 view of a pixmap's own memory (no copy; rows may be
    padded to ``stride``): valid while the pixmap lives."""
    rows = np.frombuffer(pixmap.samples_mv, dtype=np.uint8).reshape(pixmap.height, pixmap.stride)
    return rows[:, : pixmap.width * pixmap.n].reshape(pixmap.height, pixmap.width, pixmap.n)


def _channels(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` as ``(height, width, 1)`` (gray) or ``(height, width, 3)`` (RGB) uint8."""
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, not {pixels.dtype}")
    if pixels.ndim == 2:
        return pixels[:, :, np.newaxis]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ValueError(
            f"pixels of shape {pixels.shape} are neither gray (h, w) or (h, w, 1) nor RGB (h, w, 3)"
        )
    return pixels


def jpeg_bytes(pixels: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG of a uint8 array: ``(height, width, 3)`` RGB with 4:2:0 chroma, or gray
    ``(height, width)`` / ``(height, width, 1)`` as a one-component JPEG; the accurate DCT.
    What Pillow and pdftoppm write at the same quality."""
    pixels = _channels(pixels)
    gray = pixels.shape[2] == 1
    return bytes(
        simplejpeg.encode_jpeg(
            np.ascontiguousarray(pixels),
            quality=quality,
            colorspace="GRAY" if gray else "RGB",
            colorsubsampling="Gray" if gray else "420",
            fastdct=False,
        )
    )


def _format_name(fmt: str) -> str:
    name = FORMATS.get(fmt.lower())
    if name is None:
        raise ValueError(f"image format {fmt!r} is not one of jpeg, png, webp")
    return name


def encode_image(pixels: np.ndarray, fmt: str = "jpeg", quality: int = JPEG_QUALITY) -> bytes:
    """``pixels`` (uint8 RGB ``(height, width, 3)``, or gray ``(height, width)`` /
    ``(height, width, 1)``) as a jpeg, png or webp file's bytes. Gray stays one channel in
    JPEG and PNG; WebP has no gray format (its encoder stores gray as RGB)."""
    name = _format_name(fmt)
    if name == "JPEG":
        return jpeg_bytes(pixels, quality)
    pixels = _channels(pixels)
    options: dict[str, object] = {"quality": quality} if name == "WEBP" else {}
    if name == "PNG":
        options["compress_level"] = 1  # PNG is lossless anyway; level 1 is several times faster
    buffer = io.BytesIO()
    if pixels.shape[2] == 1:
        image = Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]), "L")
    else:
        image = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    image.save(buffer, format=name, **options)
    return buffer.getvalue()


def save_image(image: Image.Image, path: Path, fmt: str, quality: int = JPEG_QUALITY) -> None:
    """Encode ``image`` as jpeg, png or webp into ``path`` (written atomically): gray (mode
    ``L``) images as gray, every other mode as RGB."""
    pixels = np.asarray(image if image.mode == "L" else image.convert("RGB"))
    data = encode_image(pixels, fmt, quality)
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
    color: ColorMode = "auto",
    max_pixels: int = PIXEL_BUDGET,
) -> list[Path]:
    """Render and encode pages straight to files ``<stem>-p0001.jpg`` ... (each written
    atomically). ``color``: ``auto`` writes pages without colour as gray images (one channel,
    cheaper to render and encode), the others as RGB; ``rgb`` or ``gray`` for every page.
    ``encoders`` threads encode while the next page is rasterised; 0 encodes each page on this
    thread right after rasterising it, without copying its pixels."""
    name = _format_name(fmt)
    _check_color(color)
    if encoders < 0:
        raise ValueError(f"encoders must not be negative, got {encoders}")
    suffix = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[name]
    out_dir.mkdir(parents=True, exist_ok=True)

    def save(pixels: np.ndarray, path: Path) -> Path:
        # Not durable: a page image lost to a power cut is rendered again, and an fsync a
        # page slows rendering.
        with atomic_path(path, durable=False) as tmp:
            tmp.write_bytes(encode_image(pixels, fmt, quality))
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
                pixmap = rasterise(doc.load_page(number - 1), dpi, color, max_pixels)
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
