from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from longctx_rope import MRopeLayout, get_rope_index
from longctx_rope.span import PageImage, TextRun, layout_span, span_of_path, summarize
from longctx_rope.tiny import special_token_id
from mmprolong_schemas import ModelFamily, SchemaError, VisionTokenSpec, page_tokens

START = special_token_id("<|vision_start|>")
END = special_token_id("<|vision_end|>")
IMAGE = special_token_id("<|image_pad|>")


@pytest.mark.parametrize("seed", range(8))
def test_layout_span_matches_get_rope_index(seed: int) -> None:
    rng = random.Random(seed)
    layout: list[TextRun | PageImage] = []
    ids: list[int] = []
    grids = []
    for _ in range(rng.randrange(1, 7)):
        if rng.random() < 0.5:
            n = rng.randrange(0, 30)
            layout.append(TextRun(n))
            ids += [7] * n
        else:
            rows, cols = rng.randrange(1, 9), rng.randrange(1, 9)
            layout.append(PageImage(rows, cols))
            ids += [START] + [IMAGE] * (rows * cols) + [END]
            grids.append([1, 2 * rows, 2 * cols])
    if not ids:
        layout.append(TextRun(1))
        ids.append(7)
    span = layout_span("s", layout)
    layout_ids = MRopeLayout(ModelFamily.QWEN2_5_VL, image_token_id=IMAGE, video_token_id=IMAGE + 1)
    positions, _ = get_rope_index(
        torch.tensor(ids), layout_ids, image_grid_thw=torch.tensor(grids) if grids else None
    )
    assert span.tokens == len(ids)
    assert [span.max_t, span.max_h, span.max_w] == positions[:, 0].max(dim=1).values.tolist()


def test_letter_page_cost_and_fifty_page_span() -> None:
    """DESIGN: a letter page at 144 DPI is 2508 tokens; 50 of them reach about 3K positions."""
    spec = VisionTokenSpec()
    page = PageImage.from_points(612, 792, spec)
    assert page.rows * page.cols == 2508
    assert page.rows * page.cols + 2 == page_tokens(612, 792, spec)
    span = layout_span("doc", [page] * 50)
    assert span.tokens == 50 * 2510
    assert 2900 <= span.max_mrope <= 3000
    assert span.max_1d == span.tokens - 1


def test_samples_with_pool_sizes(corpus: tuple[Path, Path]) -> None:
    pool, samples = corpus
    run = span_of_path(samples, VisionTokenSpec(), pool=pool)
    assert run.assumed_pages == 0
    by_pages = {s.pages: s for s in run.spans}
    image_heavy, text_heavy = by_pages[50], by_pages[3]
    assert image_heavy.tokens > 125_000 and image_heavy.max_mrope < 3100
    # 40K characters of question text: ~10K tokens, ~10K positions, more than 50 pages take.
    assert text_heavy.max_mrope > 10_000 > image_heavy.max_mrope
    assert text_heavy.text_tokens > 10_000
    summary = summarize(run.spans)
    assert summary["count"] == 3 and summary["max_1d_max"] == image_heavy.tokens - 1


def test_samples_without_pool_assume_letter(corpus: tuple[Path, Path]) -> None:
    _, samples = corpus
    run = span_of_path(samples, VisionTokenSpec())
    assert run.assumed_pages == 50 + 3 + 30


def test_pool_documents(corpus: tuple[Path, Path]) -> None:
    pool, _ = corpus
    run = span_of_path(pool, VisionTokenSpec.for_family("qwen3-vl"), limit=2)
    assert [s.pages for s in run.spans] == [50, 12]
    assert all(s.text_tokens == 0 for s in run.spans)


def test_bad_inputs_are_named(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    pool, _ = corpus
    with pytest.raises(FileNotFoundError, match="does not exist"):
        span_of_path(tmp_path / "nothing", VisionTokenSpec())
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Parquet files"):
        span_of_path(tmp_path / "empty", VisionTokenSpec())
    with pytest.raises(SchemaError, match="expected Sample shards"):
        span_of_path(pool / "documents", VisionTokenSpec())
