from collections import Counter

import pytest

from mmprolong_schemas import Segment
from mmprolong_schemas.sample import HistogramBin, LengthDistribution
from qasynth.segments import (
    DocInfo,
    DocumentSelection,
    sample_segments,
    section_candidates,
    select_documents,
    window_candidates,
)


def test_segments_are_whole_consecutive_sections_of_8_to_15_pages(document) -> None:
    starts = {s.start_page for s in document.sections}
    ends = {s.end_page for s in document.sections}
    for seed in range(20):
        for segment in sample_segments(document, count=2, seed=seed):
            assert isinstance(segment, Segment)
            assert 8 <= len(segment.pages) <= 15
            assert segment.pages.first in starts and segment.pages.last in ends
            assert segment.section_titles
            assert segment.doc_pages == document.num_pages


def test_sampling_is_seeded_and_segments_do_not_overlap(document) -> None:
    first = sample_segments(document, count=2, seed=3)
    assert first == sample_segments(document, count=2, seed=3)
    assert len(first) == 2
    a, b = first
    assert a.pages.last < b.pages.first
    seeds = {tuple(str(s.pages) for s in sample_segments(document, 1, seed)) for seed in range(30)}
    assert len(seeds) > 2


def test_documents_without_structure_get_fixed_windows(doc_factory) -> None:
    doc = doc_factory("flat", num_pages=37, section_pages=None)
    assert section_candidates(doc) == []
    for seed in range(10):
        (segment,) = sample_segments(doc, 1, seed)
        assert 8 <= len(segment.pages) <= 15
        assert (segment.pages.first - 1) % len(segment.pages) == 0
    assert [str(r) for r in window_candidates(doc, 10)] == ["1-10", "11-20", "21-30"]


def test_oversized_sections_fall_back_to_windows(doc_factory) -> None:
    doc = doc_factory("big", num_pages=40, section_pages=(1, 21))
    (segment,) = sample_segments(doc, 1, seed=0)
    assert 8 <= len(segment.pages) <= 15


def test_short_document_is_one_segment(doc_factory) -> None:
    doc = doc_factory("short", num_pages=5, section_pages=None)
    (segment,) = sample_segments(doc, 1)
    assert str(segment.pages) == "1-5"


def _infos(count: int) -> list[DocInfo]:
    return [DocInfo(f"{i:064x}", 20 + i, (20 + i) * 2700) for i in range(count)]


def test_pool_native_takes_32_to_50_pages_under_max_length() -> None:
    result = select_documents(_infos(60), DocumentSelection())
    pages = [d.num_pages for d in result.chosen]
    assert min(pages) >= 32 and max(pages) <= 50
    assert all(d.est_tokens + 1024 <= 131072 for d in result.chosen)
    assert result.skipped["over-max-length"] > 0
    assert result.skipped["pages-out-of-range"] > 0


def test_long_biased_takes_50_to_100_pages() -> None:
    infos = [DocInfo(f"{i:064x}", 40 + i, (40 + i) * 1200) for i in range(80)]
    chosen = select_documents(infos, DocumentSelection(LengthDistribution.LONG_BIASED)).chosen
    assert {d.num_pages for d in chosen} == set(range(50, 101))


def test_custom_histogram_follows_weights() -> None:
    infos = [DocInfo(f"{i:064x}", 40, 30_000 + i * 900) for i in range(100)]
    bins = (
        HistogramBin(low=0, high=60_000, weight=1),
        HistogramBin(low=60_000, high=131072, weight=3),
    )
    selection = DocumentSelection(
        LengthDistribution.CUSTOM, doc_pages=(1, 1000), histogram=bins, draws=4000
    )
    chosen = select_documents(infos, selection, seed=1).chosen
    assert len(chosen) == 4000
    share_long = sum(d.est_tokens >= 60_000 for d in chosen) / len(chosen)
    assert share_long == pytest.approx(0.75, abs=0.03)
    assert chosen == select_documents(infos, selection, seed=1).chosen


def test_selection_rejects_inconsistent_settings() -> None:
    with pytest.raises(ValueError, match="histogram"):
        DocumentSelection(LengthDistribution.CUSTOM)
    with pytest.raises(ValueError, match="max_length"):
        DocumentSelection(max_length=100)


def test_custom_draws_repeat_documents_into_distinct_segments(document) -> None:
    counts = Counter([document.doc_id] * 3)
    segments = sample_segments(document, counts[document.doc_id], seed=0)
    assert len({s.segment_id for s in segments}) == 3
