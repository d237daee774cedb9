"""Position span of long-document samples: flattened tokens against maximum mRoPE position.

A page of h x w llm-grid cells costs h * w tokens but moves mRoPE positions by only max(h, w),
so image-heavy sequences use far fewer positions than tokens; text moves positions one per
token. The span is computed from the layout alone (page sizes and text lengths), with the same
rules as ``positions.get_rope_index``, so 128K-token samples cost microseconds.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mmprolong_schemas import (
    Document,
    PagePart,
    Sample,
    SchemaError,
    TextPart,
    VisionTokenSpec,
    read_parquet,
)
from mmprolong_schemas.io import is_pool, read_pool_documents
from mmprolong_schemas.vision_tokens import (
    CHAT_TURN_TOKENS,
    IMAGE_WRAPPER_TOKENS,
    SYSTEM_TURN_TOKENS,
    estimate_text_tokens,
    pixels_at_dpi,
    smart_resize,
)

LETTER_POINTS = (612.0, 792.0)
"""US-letter page size, assumed for pages whose document is not at hand."""

TextCounter = Callable[[str], int]


@dataclass(frozen=True)
class TextRun:
    tokens: int


@dataclass(frozen=True)
class PageImage:
    """A page in llm-grid cells (after smart_resize and spatial merge)."""

    rows: int
    cols: int

    @classmethod
    def from_points(cls, width_pt: float, height_pt: float, spec: VisionTokenSpec) -> PageImage:
        height = pixels_at_dpi(height_pt, spec.dpi)
        width = pixels_at_dpi(width_pt, spec.dpi)
        h, w = smart_resize(height, width, spec.factor, spec.min_pixels, spec.max_pixels)
        return cls(h // spec.factor, w // spec.factor)


Layout = Sequence[TextRun | PageImage]


@dataclass(frozen=True)
class Span:
    """Extent of one sequence. ``max_t/h/w`` are the largest mRoPE positions of each row;
    ``max_1d`` is what plain 1-D RoPE would use (tokens - 1)."""

    sample_id: str
    tokens: int
    pages: int
    text_tokens: int
    max_t: int
    max_h: int
    max_w: int

    @property
    def max_mrope(self) -> int:
        return max(self.max_t, self.max_h, self.max_w)

    @property
    def max_1d(self) -> int:
        return self.tokens - 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"max_mrope": self.max_mrope, "max_1d": self.max_1d}


def layout_span(sample_id: str, layout: Layout) -> Span:
    """Tokens and per-row maximum positions of a layout. Each page carries its vision start
    and end tokens, which take text positions (all rows equal)."""
    position = tokens = pages = text = 0
    top = [-1, -1, -1]  # T, H, W

    def text_at(last: int) -> None:
        for row in range(3):
            top[row] = max(top[row], last)

    for item in layout:
        if isinstance(item, TextRun):
            position += item.tokens
            tokens += item.tokens
            text += item.tokens
            text_at(position - 1)
            continue
        text_at(position)  # <|vision_start|>
        start = position + 1
        top[0] = max(top[0], start)
        top[1] = max(top[1], start + item.rows - 1)
        top[2] = max(top[2], start + item.cols - 1)
        end = start + max(item.rows, item.cols)  # <|vision_end|>
        text_at(end)
        position = end + 1
        tokens += item.rows * item.cols + IMAGE_WRAPPER_TOKENS
        pages += 1
    return Span(sample_id, tokens, pages, text, *top)


def sample_layout(
    sample: Sample,
    page_sizes: dict[tuple[str, int], tuple[float, float]],
    spec: VisionTokenSpec,
    count_text: TextCounter = estimate_text_tokens,
) -> tuple[list[TextRun | PageImage], int]:
    """The layout of a sample as the chat template lays it out (system turn, turns, target),
    and how many of its pages had no known size (assumed US letter)."""
    layout: list[TextRun | PageImage] = [TextRun(SYSTEM_TURN_TOKENS)]
    unknown = 0
    for message in sample.messages:
        layout.append(TextRun(3))  # <|im_start|>role\n
        for part in message.content:
            if isinstance(part, TextPart):
                layout.append(TextRun(count_text(part.text)))
            elif isinstance(part, PagePart):
                size = page_sizes.get((part.doc_id, part.page))
                unknown += size is None
                layout.append(PageImage.from_points(*(size or LETTER_POINTS), spec))
            else:
                # Image files are not opened here; they are short-context data of page size.
                unknown += 1
                layout.append(PageImage.from_points(*LETTER_POINTS, spec))
        layout.append(TextRun(CHAT_TURN_TOKENS - 3))
    layout.append(TextRun(3 + count_text(sample.target) + CHAT_TURN_TOKENS - 3))
    return layout, unknown


def document_layout(doc: Document, spec: VisionTokenSpec) -> list[TextRun | PageImage]:
    """A whole pooled document shown page after page, as pool-native samples show it."""
    return [PageImage.from_points(page.width, page.height, spec) for page in doc.pages]


def _parquet_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))


def read_samples(path: Path) -> Iterator[Sample]:
    """Samples from one Parquet file or every Parquet file under a folder."""
    files = _parquet_files(path)
    if not files:
        raise FileNotFoundError(f"no Parquet files of samples under {path}")
    for file in files:
        yield from read_parquet(file, Sample)


def page_sizes_of(documents: Iterable[Document]) -> dict[tuple[str, int], tuple[float, float]]:
    return {(d.doc_id, p.number): (p.width, p.height) for d in documents for p in d.pages}


@dataclass
class SpanRun:
    spans: list[Span]
    assumed_pages: int
    """Pages whose size was unknown and taken as US letter."""
    source: str


def span_of_path(
    path: str | os.PathLike[str],
    spec: VisionTokenSpec,
    *,
    pool: str | os.PathLike[str] | None = None,
    count_text: TextCounter = estimate_text_tokens,
    limit: int | None = None,
    on_span: Callable[[Span], None] | None = None,
) -> SpanRun:
    """Spans of every sample in ``path`` (Sample Parquet shards), or of every document when
    ``path`` is a docpool pool. ``pool`` supplies page sizes for samples; ``on_span`` is
    called after each span (progress display)."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    spans: list[Span] = []
    assumed = 0
    if is_pool(source):
        for doc in read_pool_documents(source):
            spans.append(layout_span(doc.doc_id, document_layout(doc, spec)))
            if on_span is not None:
                on_span(spans[-1])
            if limit is not None and len(spans) >= limit:
                break
        return SpanRun(spans, 0, f"pool {source}")
    sizes = page_sizes_of(read_pool_documents(pool)) if pool is not None else {}
    try:
        for sample in read_samples(source):
            layout, unknown = sample_layout(sample, sizes, spec, count_text)
            assumed += unknown
            spans.append(layout_span(sample.sample_id, layout))
            if on_span is not None:
                on_span(spans[-1])
            if limit is not None and len(spans) >= limit:
                break
    except SchemaError as error:
        raise SchemaError(
            error.source, [*error.problems, "expected Sample shards or a docpool pool folder"]
        ) from None
    return SpanRun(spans, assumed, f"samples {source}")


def summarize(spans: Sequence[Span]) -> dict[str, Any]:
    """Totals and quantiles over spans."""
    if not spans:
        return {"count": 0}
    tokens = [s.tokens for s in spans]
    mrope = [s.max_mrope for s in spans]
    ratio = [s.tokens / max(1, s.max_mrope + 1) for s in spans]
    return {
        "count": len(spans),
        "tokens_max": max(tokens),
        "tokens_median": statistics.median(tokens),
        "max_mrope_max": max(mrope),
        "max_mrope_median": statistics.median(mrope),
        "max_1d_max": max(tokens) - 1,
        "tokens_per_position_median": statistics.median(ratio),
        "text_share_median": statistics.median(s.text_tokens / s.tokens for s in spans),
    }


def plot_spans(spans: Sequence[Span], path: Path, title: str) -> None:
    """Scatter of tokens against maximum position: mRoPE rows and the 1-D RoPE diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    tokens = [s.tokens for s in spans]
    axes.scatter(tokens, [s.max_t for s in spans], s=10, label="mRoPE T", alpha=0.7)
    axes.scatter(tokens, [s.max_h for s in spans], s=10, marker="^", label="mRoPE H", alpha=0.7)
    axes.scatter(tokens, [s.max_w for s in spans], s=10, marker="x", label="mRoPE W", alpha=0.7)
    top = max(tokens, default=1)
    # Many points: a straight line in data space is curved on the symlog axis.
    diagonal = [top * step / 200 for step in range(201)]
    axes.plot(
        diagonal,
        [max(0.0, x - 1) for x in diagonal],
        color="grey",
        linestyle="--",
        label="1-D RoPE (tokens - 1)",
    )
    axes.set_xlabel("flattened tokens")
    axes.set_ylabel("maximum position")
    axes.set_yscale("symlog", linthresh=100)
    axes.set_title(title)
    axes.legend(loc="upper left", fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
