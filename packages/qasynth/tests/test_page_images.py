"""PageImages: the pixels reach the teacher intact, each page is produced once while cached,
the cache stays within its bound, and a page that fails is tried again later."""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
import pytest
from PIL import Image

from qasynth.page_images import PageImages, data_uri


def decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert image.format == "JPEG"
    return np.asarray(image.convert("RGB")).astype(float)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / max(((a - b) ** 2).mean(), 1e-9)))


def test_pool_pages_match_the_pool_renderer(corpus_pool) -> None:
    pool, _, _ = corpus_pool
    doc = next(pool.documents())
    pages = [1, 3, 2]
    direct = pool.render(doc.doc_id, pages, dpi=72)
    for encoders in (0, 2):
        images = PageImages(pool, dpi=72, encoders=encoders)
        try:
            encoded = images.get(doc.doc_id, pages)
            # The pixmaps were freed on this thread once encoded, none kept.
            assert images._spent == []
        finally:
            images.close()
        for page, reference in zip(encoded, direct, strict=True):
            assert (page.width, page.height) == reference.size
            assert psnr(decode(page.uri), np.asarray(reference).astype(float)) > 35
    with pytest.raises(IndexError, match="no page 999"):
        PageImages(pool, dpi=72).get(doc.doc_id, [999])


def test_gray_pages_are_sent_as_one_channel_jpegs(corpus_pool) -> None:
    import pymupdf

    from docpool.render import page_is_color

    pool, _, _ = corpus_pool
    doc = next(pool.documents())
    pages = list(range(1, doc.num_pages + 1))
    with pymupdf.open(pool.pdf_path(doc.doc_id)) as pdf:
        colored = {n for n in pages if page_is_color(pdf.load_page(n - 1))}
    # The generated reports' figures are colour charts: both kinds are present.
    assert colored and len(colored) < len(pages)
    modes = {}
    for color in ("auto", "rgb"):
        images = PageImages(pool, dpi=36, color=color)
        try:
            encoded = images.get(doc.doc_id, pages)
        finally:
            images.close()
        modes[color] = [
            Image.open(io.BytesIO(base64.b64decode(p.uri.split(",", 1)[1]))).mode for p in encoded
        ]
    assert modes["auto"] == ["RGB" if n in colored else "L" for n in pages]
    assert set(modes["rgb"]) == {"RGB"}


def test_pages_are_made_once_while_cached(renderer) -> None:
    images = PageImages(renderer, cache_bytes=1 << 20)
    first = images.get("d", [1, 2, 3])
    assert renderer.rendered == 3
    again = images.get("d", [3, 2, 4])
    assert renderer.rendered == 4 and (images.hits, images.misses) == (2, 4)
    assert [p.uri for p in again[:2]] == [first[2].uri, first[1].uri]
    # Same bytes as encoding the renderer's image directly.
    assert first[0].uri == data_uri(renderer.render("d", [1])[0])
    images.close()


def test_the_cache_keeps_to_its_bound(renderer) -> None:
    # A cached page costs its URI twice: the text and its ASCII bytes.
    one_page = 2 * len(PageImages(renderer, cache_bytes=0).get("d", [1])[0].uri)
    images = PageImages(renderer, cache_bytes=3 * one_page + one_page // 2)
    images.get("d", list(range(1, 11)))
    assert images.cached_bytes <= images.cache_bytes
    renderer.rendered = 0
    images.get("d", [8, 9, 10])  # the most recent three stayed
    assert renderer.rendered == 0
    images.get("d", [1])
    assert renderer.rendered == 1
    uncached = PageImages(renderer, cache_bytes=0)
    uncached.get("d", [1])
    uncached.get("d", [1])
    assert uncached.cached_bytes == 0 and uncached.misses == 2


def test_concurrent_requests_for_one_segment_make_each_page_once(renderer) -> None:
    images = PageImages(renderer)
    results = []

    def ask() -> None:
        results.append([p.uri for p in images.get("d", list(range(1, 16)))])

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert renderer.rendered == 15
    assert results[0] == results[1] == results[2]
    images.close()


def test_data_uris_survive_pickling(renderer) -> None:
    import copy
    import pickle

    uri = data_uri(renderer.render("d", [1])[0])
    for clone in (pickle.loads(pickle.dumps(uri)), copy.deepcopy(uri)):
        assert clone == uri and clone.ascii == uri.encode() and type(clone) is type(uri)


def test_a_failed_page_is_not_cached() -> None:
    class Flaky:
        calls = 0

        def render(self, doc_id, pages, dpi=144):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("cannot open flaky.pdf")
            return [Image.new("RGB", (40, 50), "white") for _ in pages]

    source = Flaky()
    images = PageImages(source)
    with pytest.raises(RuntimeError, match="flaky.pdf"):
        images.get("d", [1, 2])
    assert len(images.get("d", [1, 2])) == 2 and source.calls == 2


def test_a_pdf_page_out_of_range_fails_its_request_alone(corpus_pool) -> None:
    pool, _, _ = corpus_pool
    doc = next(pool.documents())
    images = PageImages(pool, dpi=36, encoders=2)
    try:
        with pytest.raises(IndexError, match="no page 9999"):
            images.get(doc.doc_id, [1, 2, 9999])
        good = images.get(doc.doc_id, [1, 2])
        assert len(good) == 2 and all(p.uri.startswith("data:image/jpeg") for p in good)
        # Nothing was kept for the bad page: it is tried (and fails) again.
        with pytest.raises(IndexError, match="no page 9999"):
            images.get(doc.doc_id, [9999])
    finally:
        images.close()
