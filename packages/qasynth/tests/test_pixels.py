"""PagePixels: MuPDF's pixels drawn into our arrays, shared within a batch, cached within a
byte bound, arrays reused only when nothing reads them, and errors that name the document."""

from __future__ import annotations

import numpy as np
import pytest

from qasynth.pixels import PagePixels


def test_pages_equal_the_pool_renderer_and_only_free_arrays_are_reused(corpus_pool) -> None:
    pool, _, _ = corpus_pool
    doc = next(pool.documents())
    reference = [np.asarray(im) for im in pool.render(doc.doc_id, [1, 2, 3], dpi=72)]
    pixels = PagePixels(pool, dpi=72, cache_bytes=0)
    pages = pixels.get(doc.doc_id, [1, 2])
    for page, expected in zip(pages, reference[:2], strict=True):
        assert page.pixels.dtype == np.uint8 and np.array_equal(page.pixels, expected)
        assert page.channels_first().shape == (3, *expected.shape[:2])
    held = pages[0].channels_first()  # something still reads page 1
    del pages
    pixels.release(recycle=True)
    assert pixels.spared_bytes == reference[1].nbytes  # page 2 only
    (third,) = pixels.get(doc.doc_id, [3])
    assert reference[2].shape == reference[1].shape and pixels.reused == 1
    assert np.array_equal(third.pixels, reference[2])
    assert np.array_equal(held.transpose(1, 2, 0), reference[0])
    del third
    pixels.release()  # without recycle nothing is reused
    assert pixels.spared_bytes == 0
    with pytest.raises(ValueError, match=rf"document {doc.doc_id} .*no page 999"):
        pixels.get(doc.doc_id, [999])


def test_a_batch_shares_pages_and_the_cache_keeps_its_bound(renderer) -> None:
    page_bytes = 64 * 80 * 3
    pixels = PagePixels(renderer, cache_bytes=2 * page_bytes)
    first = pixels.get("d", [1, 2, 3])
    again = pixels.get("d", [3, 2, 1, 1])
    # Pinned until release: the same arrays, each page rendered once, although the cache
    # holds only two pages.
    assert renderer.rendered == 3
    assert [p.pixels is q.pixels for p, q in zip(first, again[2::-1], strict=True)] == [True] * 3
    assert (pixels.misses, pixels.hits) == (3, 4)
    assert pixels.cached_bytes == 2 * page_bytes and pixels.pinned_bytes == 3 * page_bytes
    pixels.release()
    assert pixels.pinned_bytes == 0
    pixels.get("d", [2, 3])  # the two most recent pages are cached
    assert renderer.rendered == 3
    pixels.get("d", [1])  # the first was evicted
    assert renderer.rendered == 4
    pixels.close()
    assert pixels.cached_bytes == 0
    with pytest.raises(ValueError, match="must not be negative"):
        PagePixels(renderer, spare_bytes=-1)
    with pytest.raises(ValueError, match="must not be negative"):
        PagePixels(renderer, cache_bytes=-1)


class OnePdf:
    """A source with one PDF, drawn by MuPDF straight into PagePixels' arrays."""

    def __init__(self, path):
        self.path = path

    def pdf_path(self, doc_id: str):
        return self.path

    def render(self, doc_id, pages, dpi=144):  # never used: pdf_path is preferred
        raise AssertionError("render called")


def test_a_200_inch_page_is_drawn_within_the_pixel_budget(tmp_path, monkeypatch) -> None:
    """At 144 DPI the page would take a 28800 x 28800 array (2.3 GiB); it is drawn at the
    resolution docpool's renderer gives it, within the budget."""
    pymupdf = pytest.importorskip("pymupdf")
    from docpool.render import PIXEL_BUDGET, render_pages

    doc = pymupdf.open()
    page = doc.new_page(width=14400, height=14400)  # 200 x 200 inches, PDF's largest page
    page.draw_rect(pymupdf.Rect(1000, 1000, 13000, 13000), color=(0.2, 0.3, 0.8), width=40)
    doc.save(tmp_path / "huge.pdf")
    pixels = PagePixels(OnePdf(tmp_path / "huge.pdf"), dpi=144, cache_bytes=0)
    allocate = pixels._array
    asked = []

    def within_budget(shape):  # refuse the uncapped array instead of writing 2.3 GiB
        asked.append(shape)
        assert shape[0] * shape[1] <= PIXEL_BUDGET, f"an array of {shape} was asked for"
        return allocate(shape)

    monkeypatch.setattr(pixels, "_array", within_budget)
    (drawn,) = pixels.get("huge", [1])
    (reference,) = render_pages(tmp_path / "huge.pdf", [1], dpi=144)
    assert asked == [drawn.pixels.shape]
    assert (drawn.width, drawn.height) == reference.size
    assert drawn.width * drawn.height > 0.95 * PIXEL_BUDGET  # as sharp as the budget allows
    assert np.array_equal(drawn.pixels, np.asarray(reference))
