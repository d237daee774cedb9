"""Page images for teacher requests: rasterised from the pool's PDFs, sent as JPEG data URIs.

Pages are rendered when a request is built, never stored on disk. The path from page numbers to
data URIs is where a request's CPU goes, so ``PageImages`` keeps it short:

- pixels go from PyMuPDF's pixmap to the JPEG encoder without a copy (a NumPy view of the
  pixmap's samples; Pillow would first unpack RGB into its own 4-byte layout);
- JPEG through libjpeg-turbo (``simplejpeg``): quality 90 with 4:2:0 chroma subsampling,
  the settings VLM servers are commonly fed and Pillow's default at that quality; text
  stays legible at 144 DPI and the file is several times smaller and cheaper than PNG;
- a page that uses no colour is rasterised and encoded gray (docpool's ``color="auto"``):
  one channel instead of three, about a third cheaper to encode, and the same picture once
  the server converts it to RGB;
- rasterising runs on one thread at a time (PyMuPDF is not thread-safe) while the pages
  already rasterised are encoded by a small thread pool (the encoder releases the GIL), so on
  a second core encoding overlaps rasterising instead of adding to it;
- encoded pages are kept in a byte-bounded LRU cache: a segment's pages are sent once per task
  and per retry, so a run with three tasks rasterises and encodes each page once, not three
  times.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from docpool import ColorMode
from docpool.render import JPEG_QUALITY, jpeg_bytes, pixmap_pixels, rasterise
from qasynth.bounded_cache import ByteBoundedLRU

DEFAULT_CACHE_BYTES = 256 << 20
_PREFIX = b"data:image/jpeg;base64,"


class PageRenderer(Protocol):
    """Anything that renders pages of a pooled document, such as ``docpool.Pool``. A renderer
    that also has ``pdf_path(doc_id)`` (``docpool.Pool`` does) is rasterised directly, without
    the intermediate Pillow images."""

    def render(self, doc_id: str, pages: Sequence[int], dpi: float = 144) -> list[Image.Image]: ...


class DataURI(str):
    """A data URI made here from base64 output: JSON needs no escaping for it, which lets
    request bodies splice it in without scanning it (see ``teachers.chat.encode_body``). It
    keeps its ASCII bytes too, so a body is assembled without encoding megabytes again."""

    ascii: bytes

    def __new__(cls, encoded: bytes) -> DataURI:
        uri = super().__new__(cls, encoded.decode("ascii"))
        uri.ascii = encoded
        return uri

    # pickle and copy rebuild a DataURI from its bytes.
    def __getnewargs__(self) -> tuple[bytes]:  # type: ignore[override]
        return (self.ascii,)


def encode_jpeg(image: Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    return jpeg_bytes(np.asarray(image.convert("RGB")), quality)


def jpeg_uri(jpeg: bytes) -> DataURI:
    return DataURI(_PREFIX + base64.b64encode(jpeg))


def data_uri(image: Image.Image, quality: int = JPEG_QUALITY) -> DataURI:
    """The image as a ``data:image/jpeg;base64,...`` URI, as OpenAI-style servers accept."""
    return jpeg_uri(encode_jpeg(image, quality))


@dataclass(frozen=True)
class EncodedPage:
    """One page as sent to a teacher, with the pixel size it was rendered at."""

    uri: DataURI
    width: int
    height: int


class PageImages:
    """Encoded pages of ``source`` at ``dpi``, rasterised on the calling thread, encoded by
    ``encoders`` threads (0: on the calling thread, one page after another) and cached up to
    ``cache_bytes`` of data URIs (0: no cache). ``color`` is docpool's colour mode for pages
    rasterised from the PDF ("auto": gray pages as 1-channel JPEGs). Safe to call from
    several threads."""

    def __init__(
        self,
        source: PageRenderer,
        *,
        dpi: float = 144,
        quality: int = JPEG_QUALITY,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        encoders: int = 2,
        color: ColorMode = "auto",
    ):
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality {quality} is not in 1-100")
        if cache_bytes < 0 or encoders < 0:
            raise ValueError("cache_bytes and encoders must not be negative")
        self.source = source
        self.dpi = dpi
        self.quality = quality
        self.cache_bytes = cache_bytes
        self.encoders = encoders
        self.color = color
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()  # the cache and its counters
        self._render_lock = threading.Lock()  # PyMuPDF: one rasteriser at a time
        # Pages being made are pinned entries, so a second request waits for them.
        self._entries: ByteBoundedLRU[tuple[str, int], Future[EncodedPage]] = ByteBoundedLRU(
            cache_bytes
        )
        self._pool: ThreadPoolExecutor | None = None
        # Encoded pixmaps, released on a rasterising thread: freeing MuPDF memory is a MuPDF
        # call too, and must not run beside a rasterisation.
        self._spent: list[Any] = []

    def get(self, doc_id: str, pages: Sequence[int]) -> list[EncodedPage]:
        """The pages (1-based) of ``doc_id``, in the order asked. A page another thread is
        producing right now is waited for, not produced twice."""
        wanted: list[Future[EncodedPage]] = []
        missing: list[tuple[int, Future[EncodedPage]]] = []
        with self._lock:
            for number in pages:
                key = (doc_id, number)
                future = self._entries.get(key)
                if future is None:
                    future = Future()
                    self._entries.put(key, future, None)
                    missing.append((number, future))
                    self.misses += 1
                else:
                    self.hits += 1
                wanted.append(future)
        if missing:
            try:
                self._produce(doc_id, missing)
            except BaseException as error:
                for number, future in missing:
                    self._fail((doc_id, number), future, error)
                raise
        pages_made = [future.result() for future in wanted]
        # Free what this request's encoders left, unless a rasterisation is under way (it
        # frees them itself).
        if self._spent and self._render_lock.acquire(blocking=False):
            try:
                self._release_spent()
            finally:
                self._render_lock.release()
        return pages_made

    def close(self) -> None:
        """Stop the encoder threads and drop the cache."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._render_lock:
            self._release_spent()
        with self._lock:
            self._entries.clear()

    @property
    def cached_bytes(self) -> int:
        return self._entries.nbytes

    def _produce(self, doc_id: str, missing: list[tuple[int, Future[EncodedPage]]]) -> None:
        pdf_path = getattr(self.source, "pdf_path", None)
        with self._render_lock:
            if pdf_path is None:
                numbers = [number for number, _ in missing]
                images = self.source.render(doc_id, numbers, dpi=self.dpi)
                for (number, future), image in zip(missing, images, strict=True):
                    pixels = np.asarray(image.convert("RGB"))
                    self._encode_later((doc_id, number), future, pixels, None)
                return
            self._rasterise(Path(pdf_path(doc_id)), doc_id, missing)

    def _rasterise(
        self, path: Path, doc_id: str, missing: list[tuple[int, Future[EncodedPage]]]
    ) -> None:
        import pymupdf

        with pymupdf.open(path) as pdf:
            for number, future in missing:
                self._release_spent()
                if not 1 <= number <= pdf.page_count:
                    raise IndexError(f"{path} has no page {number} (1-{pdf.page_count})")
                pixmap = rasterise(pdf.load_page(number - 1), self.dpi, self.color)
                # A view of the pixmap's own memory: the pixmap travels with it to stay alive.
                pixels = pixmap_pixels(pixmap)
                self._encode_later((doc_id, number), future, pixels, pixmap)
                del pixels, pixmap
        self._release_spent()

    def _release_spent(self) -> None:
        """Free the pixmaps encoded so far (the caller holds the render lock)."""
        with self._lock:
            spent, self._spent = self._spent, []
        del spent

    def _encode_later(
        self,
        key: tuple[str, int],
        future: Future[EncodedPage],
        pixels: np.ndarray,
        owner: Any,
    ) -> None:
        if not self.encoders:
            self._encode(key, future, pixels, owner)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.encoders, thread_name_prefix="qasynth-jpeg")
        self._pool.submit(self._encode, key, future, pixels, owner)

    def _encode(
        self, key: tuple[str, int], future: Future[EncodedPage], pixels: np.ndarray, owner: Any
    ) -> None:
        try:
            page = EncodedPage(
                jpeg_uri(jpeg_bytes(pixels, self.quality)), pixels.shape[1], pixels.shape[0]
            )
        except BaseException as error:
            self._fail(key, future, error)
            return
        finally:
            del pixels
            if owner is not None:
                with self._lock:
                    self._spent.append(owner)
            del owner
        with self._lock:
            if future.done():  # its request failed on a later page and gave it up
                return
            future.set_result(page)
            if self._entries.peek(key) is future:
                self._entries.set_size(key, 2 * len(page.uri))  # the text and its ASCII bytes

    def _fail(
        self, key: tuple[str, int], future: Future[EncodedPage], error: BaseException
    ) -> None:
        """A page that could not be made is forgotten, so a later request tries it again."""
        with self._lock:
            if not future.done():
                future.set_exception(error)
            if self._entries.peek(key) is future and self._entries.is_pinned(key):
                self._entries.discard(key)
