"""Decoded page pixels for an in-process engine (vLLM): no JPEG, no base64, no copy.

An engine in this process takes images as arrays, so nothing needs encoding. ``PagePixels``:

- rasterises one page at a time under one lock (PyMuPDF is not thread-safe), straight into a
  NumPy array: MuPDF draws into the array's memory (a pixmap made over it), so the array the
  engine gets is the rasteriser's output, not a copy of it;
- shares one array per (document, page): pages handed out since the last ``release()`` are
  pinned, so a segment's three tasks in one batch rasterise each page once, and a byte-bounded
  LRU cache keeps recent pages across batches (retries, segments cut by a batch boundary);
- draws into recycled arrays: a request's pages are all held at once while the engine reads
  them, and fresh memory for them costs the kernel's page faults, about as much again as
  rasterising. Arrays released after a batch are kept (up to ``spare_bytes``) and drawn into
  again, so memory the process already touched is reused.

Memory is the pinned pages of the current batch (about 5.8 MB per US-letter page at
144 DPI; a page beyond docpool's ``PIXEL_BUDGET`` at ``dpi`` is drawn at the resolution that
fits it, 48 MiB at most) plus at most ``cache_bytes`` of cached pages and ``spare_bytes`` of
spare arrays.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from docpool.render import PIXEL_BUDGET, budget_zoom
from qasynth.bounded_cache import ByteBoundedLRU
from qasynth.page_images import DEFAULT_CACHE_BYTES, PageRenderer


def _array_refs(page: RasterPage) -> int:
    array = page.pixels
    return sys.getrefcount(array)


@dataclass(frozen=True)
class RasterPage:
    """One rasterised page: ``pixels`` is ``(height, width, 3)`` uint8 RGB."""

    pixels: np.ndarray

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)

    def channels_first(self) -> np.ndarray:
        """The same pixels as a ``(3, height, width)`` view (no copy): the layout vLLM reads
        an array image's size from (``ImageProcessorItems.get_image_size``); Hugging Face
        image processors infer either layout."""
        return self.pixels.transpose(2, 0, 1)


# What _array_refs counts for an array only its page refers to, measured rather than assumed:
# interpreters differ in the references a call holds.
_UNSHARED_REFS = _array_refs(RasterPage(np.empty(1, np.uint8)))


class PagePixels:
    """Rasterised pages of ``source`` at ``dpi``. A source with ``pdf_path(doc_id)`` (such as
    ``docpool.Pool``) is rasterised with MuPDF directly into the arrays; any other
    ``PageRenderer`` is read through its Pillow images (one copy). Safe to call from several
    threads."""

    def __init__(
        self,
        source: PageRenderer,
        *,
        dpi: float = 144,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        spare_bytes: int = DEFAULT_CACHE_BYTES,
    ):
        if cache_bytes < 0 or spare_bytes < 0:
            raise ValueError("cache_bytes and spare_bytes must not be negative")
        self.source = source
        self.dpi = dpi
        self.cache_bytes = cache_bytes
        self.spare_bytes = spare_bytes
        self.hits = 0
        self.misses = 0
        self.reused = 0
        # One lock for the cache and for rasterising: MuPDF runs on one thread at a time.
        self._lock = threading.Lock()
        self._pinned: dict[tuple[str, int], RasterPage] = {}
        self._cache: ByteBoundedLRU[tuple[str, int], RasterPage] = ByteBoundedLRU(cache_bytes)
        self._spares: dict[tuple[int, ...], list[np.ndarray]] = {}
        self._spared_bytes = 0

    def get(self, doc_id: str, pages: Sequence[int]) -> list[RasterPage]:
        """The pages (1-based) of ``doc_id`` in the order asked, pinned until ``release()``.
        A document that cannot be rasterised raises ``ValueError`` naming it."""
        with self._lock:
            found: dict[int, RasterPage] = {}
            for number in pages:
                key = (doc_id, number)
                cached = self._cache.get(key)  # now the most recently used
                page = self._pinned.get(key) or cached
                if page is None:
                    continue
                found[number] = page
                self._pinned[key] = page
            missing = list(dict.fromkeys(n for n in pages if n not in found))
            self.hits += len(pages) - len(missing)
            self.misses += len(missing)
            if missing:
                for number, page in zip(missing, self._rasterise(doc_id, missing), strict=True):
                    found[number] = page
                    self._pinned[(doc_id, number)] = page
                    self._cache.put((doc_id, number), page, page.nbytes)
            return [found[number] for number in pages]

    def release(self, recycle: bool = False) -> None:
        """Unpin the pages handed out so far; the cache keeps what fits its bound. With
        ``recycle``, the arrays of unpinned pages that left the cache may be drawn into
        again: pass it only once nothing reads them any more (the vLLM teacher does after
        the engine call returned). An array something still refers to, a view of it
        included, is never recycled."""
        with self._lock:
            pinned, self._pinned = self._pinned, {}
            if recycle:
                for key, page in pinned.items():
                    if key not in self._cache:
                        self._spare(page)

    def close(self) -> None:
        """Unpin everything and drop the cache and the spare arrays."""
        with self._lock:
            self._pinned.clear()
            self._cache.clear()
            self._spares.clear()
            self._spared_bytes = 0

    @property
    def cached_bytes(self) -> int:
        return self._cache.nbytes

    @property
    def spared_bytes(self) -> int:
        return self._spared_bytes

    @property
    def pinned_bytes(self) -> int:
        return sum(page.nbytes for page in self._pinned.values())

    def _array(self, shape: tuple[int, ...]) -> np.ndarray:
        spares = self._spares.get(shape)
        if spares:
            array = spares.pop()
            self._spared_bytes -= array.nbytes
            self.reused += 1
            return array
        return np.empty(shape, np.uint8)

    def _spare(self, page: RasterPage) -> None:
        """Keep the page's array to draw into again, if only the page refers to it and the
        spares have room."""
        if _array_refs(page) > _UNSHARED_REFS or page.pixels.base is not None:
            return
        array = page.pixels
        if self._spared_bytes + array.nbytes > self.spare_bytes:
            return
        self._spares.setdefault(array.shape, []).append(array)
        self._spared_bytes += array.nbytes

    def _rasterise(self, doc_id: str, numbers: list[int]) -> list[RasterPage]:
        pdf_path = getattr(self.source, "pdf_path", None)
        if pdf_path is None:
            made = []
            for image in self.source.render(doc_id, numbers, dpi=self.dpi):
                pixels = np.asarray(image.convert("RGB"))
                array = self._array(pixels.shape)
                np.copyto(array, pixels)
                made.append(RasterPage(array))
            return made
        path = Path(pdf_path(doc_id))
        try:
            return self._draw(path, numbers)
        except Exception as error:  # an untrusted PDF may fail any way
            raise ValueError(
                f"cannot rasterise pages {numbers} of document {doc_id} ({path}): {error}"
            ) from error

    def _draw(self, path: Path, numbers: list[int]) -> list[RasterPage]:
        """MuPDF draws each page into an array of ours: a pixmap over the array's memory
        (MuPDF does not own it), cleared to white, the page run through a draw device at
        ``dpi``, lowered as docpool's ``rasterise`` lowers it for a page beyond the pixel
        budget; what ``Page.get_pixmap(alpha=False)`` makes, without its allocation."""
        import pymupdf

        mupdf = pymupdf.mupdf
        made = []
        with pymupdf.open(path) as pdf:
            for number in numbers:
                if not 1 <= number <= pdf.page_count:
                    raise IndexError(f"no page {number} (1-{pdf.page_count})")
                page = pdf.load_page(number - 1).this  # the mupdf.FzPage
                bound = mupdf.fz_bound_page(page)
                zoom = budget_zoom(bound.x1 - bound.x0, bound.y1 - bound.y0, self.dpi, PIXEL_BUDGET)
                ctm = mupdf.FzMatrix(zoom, 0, 0, zoom, 0, 0)
                box = mupdf.fz_round_rect(mupdf.fz_transform_rect(bound, ctm))
                array = self._array((box.y1 - box.y0, box.x1 - box.x0, 3))
                pixmap = mupdf.fz_new_pixmap_with_bbox_and_data(
                    mupdf.fz_device_rgb(),
                    box,
                    mupdf.FzSeparations(),
                    0,
                    mupdf.python_mutable_buffer_data(array),
                )
                mupdf.fz_clear_pixmap_with_value(pixmap, 255)
                device = mupdf.fz_new_draw_device(mupdf.FzMatrix(), pixmap)
                try:
                    mupdf.fz_run_page(page, device, ctm, mupdf.FzCookie())
                finally:
                    mupdf.fz_close_device(device)
                made.append(RasterPage(array))
        return made
