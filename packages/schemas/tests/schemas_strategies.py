"""Hypothesis strategies that build valid records of every model, and example records."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from mmprolong_schemas import (
    AnswerFormat,
    BBox,
    Block,
    BlockLabel,
    Document,
    EvalItem,
    EvidenceSource,
    ImagePart,
    Judgement,
    JudgeSource,
    Message,
    MixtureSpec,
    NiahMetric,
    Page,
    PagePart,
    PageRange,
    Prediction,
    QAPair,
    Recipe,
    Sample,
    ScoreCell,
    ScoreTable,
    Section,
    Segment,
    Task,
    TextPart,
)
from mmprolong_schemas.document import DocumentMetadata

text = st.text(max_size=40)
words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30
)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
coords = st.floats(min_value=0, max_value=2000, allow_nan=False)
doc_ids = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
small_ints = st.integers(min_value=0, max_value=2**40)


@st.composite
def bboxes(draw: st.DrawFn) -> BBox:
    x0, x1 = sorted((draw(coords), draw(coords)))
    y0, y1 = sorted((draw(coords), draw(coords)))
    return BBox(x0=x0, y0=y0, x1=x1, y1=y1)


@st.composite
def blocks(draw: st.DrawFn, order: int) -> Block:
    label = draw(st.sampled_from(BlockLabel))
    rows = (
        draw(st.lists(st.lists(text, max_size=3), max_size=3))
        if label is BlockLabel.TABLE
        else None
    )
    return Block(label=label, bbox=draw(bboxes()), text=draw(text), order=order, rows=rows)


@st.composite
def pages(draw: st.DrawFn, number: int) -> Page:
    count = draw(st.integers(0, 3))
    return Page(
        number=number,
        width=draw(st.floats(min_value=1, max_value=5000)),
        height=draw(st.floats(min_value=1, max_value=5000)),
        rotation=draw(st.sampled_from([0, 90, 180, 270])),
        blocks=[draw(blocks(order)) for order in range(count)],
        has_text_layer=draw(st.booleans()),
        flags=draw(st.lists(text, max_size=2)),
    )


@st.composite
def documents(draw: st.DrawFn) -> Document:
    num_pages = draw(st.integers(1, 4))
    sections = []
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.integers(1, num_pages))
        end = draw(st.integers(start, num_pages))
        sections.append(
            Section(title=draw(text), level=draw(st.integers(1, 4)), start_page=start, end_page=end)
        )
    return Document(
        doc_id=draw(doc_ids),
        source_path=draw(words),
        aliases=draw(st.lists(words, max_size=2)),
        file_size=draw(small_ints),
        num_pages=num_pages,
        pages=[draw(pages(n)) for n in range(1, num_pages + 1)],
        sections=sections,
        metadata=DocumentMetadata(title=draw(st.none() | text), author=draw(st.none() | text)),
        lang=draw(st.none() | st.sampled_from(["en", "fr", "de", "zh"])),
        domain=draw(st.none() | words),
    )


@st.composite
def page_ranges(draw: st.DrawFn) -> PageRange:
    first = draw(st.integers(1, 500))
    return PageRange(first=first, last=draw(st.integers(first, first + 20)))


def answers(answer_format: AnswerFormat) -> st.SearchStrategy[object]:
    scalar = words | st.integers(-(10**9), 10**9) | floats
    return {
        AnswerFormat.STRING: words.filter(str.strip),
        AnswerFormat.INTEGER: st.integers(-(2**62), 2**62),
        AnswerFormat.FLOAT: floats,
        AnswerFormat.LIST: st.lists(scalar, min_size=1, max_size=4),
        AnswerFormat.NONE: st.just("Not answerable"),
    }[answer_format]


@st.composite
def qa_pairs(draw: st.DrawFn) -> QAPair:
    segment = draw(page_ranges())
    answer_format = draw(st.sampled_from(AnswerFormat))
    evidence = draw(
        st.lists(st.integers(segment.first, segment.last), min_size=1, max_size=3, unique=True)
    )
    return QAPair(
        qa_id=draw(words),
        doc_id=draw(doc_ids),
        segment=segment,
        task=draw(st.sampled_from(Task)),
        question=draw(words),
        answer=draw(answers(answer_format)),
        answer_format=answer_format,
        evidence_pages=evidence,
        evidence_sources=draw(st.lists(st.sampled_from(EvidenceSource), min_size=1, max_size=2)),
        evidence_description=draw(text),
        teacher=draw(words),
        prompt_version=draw(words),
    )


@st.composite
def segments(draw: st.DrawFn) -> Segment:
    pages_ = draw(page_ranges())
    return Segment(
        segment_id=draw(words),
        doc_id=draw(doc_ids),
        pages=pages_,
        section_titles=draw(st.lists(text, max_size=3)),
        doc_pages=pages_.last + draw(st.integers(0, 30)),
    )


@st.composite
def samples(draw: st.DrawFn) -> Sample:
    doc_id = draw(doc_ids)
    shown = draw(st.lists(st.integers(1, 60), max_size=5))
    content = [PagePart(doc_id=doc_id, page=p) for p in shown]
    content.append(TextPart(text=draw(text)))
    if draw(st.booleans()):
        content.insert(0, ImagePart(path=draw(words)))
    return Sample(
        sample_id=draw(words),
        task=draw(st.sampled_from(Task)),
        doc_id=doc_id,
        pages=shown,
        messages=[Message(role="user", content=content)],
        target=draw(words),
        est_tokens=draw(st.integers(1, 2**30)),
        qa_id=draw(st.none() | words),
        cut_after=draw(st.none() | st.sampled_from(shown))
        if shown and shown == sorted(set(shown))
        else None,
    )


@st.composite
def mixture_specs(draw: st.DrawFn) -> MixtureSpec:
    return MixtureSpec.extraction_reasoning(
        draw(st.integers(0, 10)),
        draw(st.integers(1, 10)),
        token_budget=draw(st.integers(1, 2**40)),
        short_share=draw(st.floats(0, 0.8)),
        seed=draw(st.integers(0, 2**31)),
    )


@st.composite
def eval_items(draw: st.DrawFn) -> EvalItem:
    if draw(st.booleans()):
        answer_format = draw(st.sampled_from(AnswerFormat))
        extra: dict[str, object] = {
            "answer_format": answer_format,
            "answer": draw(answers(answer_format)),
        }
    else:
        metric = draw(st.sampled_from(NiahMetric))
        extra = {"metric": metric, "answer": draw(words | st.lists(st.integers(0, 9), min_size=1))}
        if metric is NiahMetric.MC_ACC:
            extra["choices"] = draw(st.lists(words, min_size=2, max_size=4))
    return EvalItem(
        item_id=draw(words),
        dataset=draw(words),
        length=draw(st.integers(1, 2**20)),
        context=[ImagePart(path=draw(words)), TextPart(text=draw(text))],
        question=draw(words),
        evidence_pages=draw(st.lists(st.integers(1, 100), max_size=3)),
        original_positions=draw(st.none() | st.lists(st.integers(0, 100), max_size=3)),
        **extra,  # type: ignore[arg-type]
    )


predictions = st.builds(
    Prediction,
    item_id=words,
    model=words,
    output=text,
    prompt_format=words,
    input_tokens=st.none() | st.integers(0, 2**31),
    latency_s=st.none() | st.floats(0, 1e6),
)
judgements = st.builds(
    Judgement,
    item_id=words,
    judge=st.sampled_from(["rules", "llm"]),
    score=st.floats(0, 1),
    source=st.sampled_from(JudgeSource),
    parsed_answer=st.none() | words | floats | st.lists(words, max_size=3),
    rationale=text,
)


@st.composite
def score_tables(draw: st.DrawFn) -> ScoreTable:
    keys = draw(st.lists(st.tuples(words, st.integers(1, 2**20)), max_size=6, unique=True))
    cells = [
        ScoreCell(dataset=d, length=n, n=draw(st.integers(0, 1000)), score=draw(st.floats(0, 100)))
        for d, n in keys
    ]
    return ScoreTable(model=draw(words), judge=draw(words), prompt_format=draw(words), cells=cells)


recipes = st.builds(Recipe, name=words, description=text)

ALL_MODELS = {
    "Document": documents(),
    "Segment": segments(),
    "QAPair": qa_pairs(),
    "Sample": samples(),
    "MixtureSpec": mixture_specs(),
    "Recipe": recipes,
    "EvalItem": eval_items(),
    "Prediction": predictions,
    "Judgement": judgements,
    "ScoreTable": score_tables(),
}


def example_qa(**changes: Any) -> QAPair:
    """A valid extract-single pair about page 14 of segment 12-20, with fields overridable."""
    fields: dict[str, Any] = {
        "qa_id": "q1",
        "doc_id": "ab" * 32,
        "segment": {"first": 12, "last": 20},
        "task": "extract-single",
        "question": "On Page 14, how many samples were processed?",
        "answer": "4,512",
        "answer_format": "Integer",
        "evidence_pages": [14],
        "evidence_sources": ["Text"],
        "teacher": "rules",
        "prompt_version": "v1",
    }
    return QAPair(**{**fields, **changes})
