from __future__ import annotations

import json

import pytest

from mmprolong_schemas import (
    AnswerFormat,
    EvidenceSource,
    PagePart,
    PageRange,
    QAPair,
    Task,
    TextPart,
    VisionTokenSpec,
    page_tokens,
)
from mmprolong_schemas.vision_tokens import estimate_text_tokens
from qasynth.assemble import (
    AssembleConfig,
    format_answer,
    ocr_full_sample,
    ocr_needle_sample,
    page_transcript,
    vqa_sample,
)


def _pair(document, answer=(3, 4.5), answer_format=AnswerFormat.LIST) -> QAPair:
    return QAPair(
        qa_id="q1",
        doc_id=document.doc_id,
        segment=PageRange(first=4, last=14),
        task=Task.EXTRACT_MULTI,
        question="Which values are on Pages 5 and 7?",
        answer=list(answer),
        answer_format=answer_format,
        evidence_pages=[5, 7],
        evidence_sources=[EvidenceSource.TEXT],
        teacher="rules:bootstrap-v1",
        prompt_version="v",
    )


def test_vqa_sample_shows_every_page_then_the_question(document) -> None:
    sample = vqa_sample(_pair(document), document)
    assert sample is not None
    (message,) = sample.messages
    assert message.role == "user"
    pages = [p.page for p in message.content if isinstance(p, PagePart)]
    assert pages == list(range(1, document.num_pages + 1)) == sample.pages
    assert isinstance(message.content[-1], TextPart)
    assert message.content[-1].text == "Which values are on Pages 5 and 7?"
    assert sample.target == "[3, 4.5]" and sample.task is Task.EXTRACT_MULTI
    assert sample.qa_id == "q1"
    images = document.num_pages * page_tokens(612, 792)
    assert images == document.num_pages * (2508 + 2)  # 2508 image tokens plus the wrappers
    assert images < sample.est_tokens < images + 100


def test_page_labels_are_optional(document) -> None:
    plain = vqa_sample(_pair(document), document)
    labelled = vqa_sample(_pair(document), document, AssembleConfig(page_labels=True))
    assert plain and labelled and plain.sample_id != labelled.sample_id
    texts = [p.text for p in labelled.messages[0].content if isinstance(p, TextPart)]
    assert texts[:2] == ["Page 1:", "Page 2:"]
    assert labelled.est_tokens > plain.est_tokens


def test_too_long_documents_are_skipped(document) -> None:
    spec = VisionTokenSpec(dpi=144)
    assert (
        vqa_sample(_pair(document), document, AssembleConfig(spec=spec, max_length=50_000)) is None
    )


def test_wrong_document_is_refused(document, doc_factory) -> None:
    with pytest.raises(ValueError, match="is about"):
        vqa_sample(_pair(document), doc_factory("other"))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [(["a", "b"], '["a", "b"]'), (3.5, "3.5"), (12, "12"), ("Lyon", "Lyon")],
)
def test_answer_targets(answer, expected) -> None:
    assert format_answer(answer) == expected


def test_ocr_transcripts_keep_text_elements_in_order(document) -> None:
    text = page_transcript(document, 3)
    assert "Report header" not in text and "Page 3" not in text
    assert text.splitlines()[1].startswith("Table 1")
    assert "Site | 2019 | 2020" in text
    full = ocr_full_sample(document)
    assert full is not None and full.task is Task.OCR_FULL
    assert full.target.startswith("Page 1:\n") and f"Page {document.num_pages}:" in full.target
    assert full.est_tokens > document.num_pages * 2508 + estimate_text_tokens(full.target) - 1


def test_ocr_needle_asks_for_one_to_three_pages(document) -> None:
    for seed in range(8):
        sample = ocr_needle_sample(document, seed)
        assert sample is not None and sample.task is Task.OCR_NEEDLE
        named = [
            int(line[5:-1])
            for line in sample.target.splitlines()
            if line.startswith("Page ") and line.endswith(":")
        ]
        assert 1 <= len(named) <= 3
        assert len(sample.pages) == document.num_pages
        assert all(f"{n}" in sample.messages[0].content[-1].text for n in named)
    assert ocr_needle_sample(document, 1) == ocr_needle_sample(document, 1)


@pytest.mark.parametrize("flag", ["ocr", "parse-error: cannot read page"])
def test_ocr_and_parse_error_pages_are_never_transcription_targets(document, flag) -> None:
    # docpool flags pages whose text came from Tesseract or that failed to parse.
    pages = [p.model_copy(update={"flags": [flag]}) if p.number == 4 else p for p in document.pages]
    flagged = document.model_copy(update={"pages": pages})
    assert ocr_full_sample(document) is not None
    assert ocr_full_sample(flagged) is None
    for seed in range(16):
        needle = ocr_needle_sample(flagged, seed)
        assert needle is not None and "Page 4:" not in needle.target


def test_samples_can_be_cut_after_their_last_needed_page(document) -> None:
    vqa = vqa_sample(_pair(document), document, AssembleConfig(page_labels=True))
    assert vqa is not None and vqa.cut_after == 14  # the segment's last page, not evidence 7
    cut = vqa.cut(14, est_tokens=1)
    assert cut.pages == list(range(1, 15))
    texts = [p.text for p in cut.messages[0].content if isinstance(p, TextPart)]
    assert texts[-2:] == ["Page 14:", "Which values are on Pages 5 and 7?"]
    for seed in range(8):
        needle = ocr_needle_sample(document, seed)
        assert needle is not None
        named = [int(line[5:-1]) for line in needle.target.splitlines() if line[-1:] == ":"]
        assert needle.cut_after == max(named)
    full = ocr_full_sample(document)
    assert full is not None and full.cut_after is None


def test_samples_round_trip_as_json(document) -> None:
    sample = vqa_sample(_pair(document), document)
    assert sample is not None
    again = type(sample).model_validate(json.loads(sample.model_dump_json()))
    assert again == sample
