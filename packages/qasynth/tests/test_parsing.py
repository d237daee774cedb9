import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmprolong_schemas import AnswerFormat, EvidenceSource, PageRange, Segment, Task
from qasynth.parsing import QARejectReason, QAValidator, Rejected, anchored_pages, parse_reply

DOC = "a" * 64
SEGMENT = Segment(
    segment_id="s",
    doc_id=DOC,
    pages=PageRange(first=10, last=20),
    section_titles=["3 Results"],
    doc_pages=40,
)


def reply(**fields) -> str:
    data = {
        "question": "What is the total on Page 12?",
        "answer": "42",
        "answer_format": "Integer",
        "evidence_pages": [12],
        "evidence_sources": ["Table"],
    }
    data.update(fields)
    return f"Evidence: Table on Page 12 shows 42.\nJSON: {json.dumps(data)}"


def check(text: str, task: Task = Task.EXTRACT_SINGLE, validator: QAValidator | None = None):
    return (validator or QAValidator()).validate(text, SEGMENT, task, "test", "v")


def reason(text: str, task: Task = Task.EXTRACT_SINGLE) -> QARejectReason:
    with pytest.raises(Rejected) as caught:
        check(text, task)
    return caught.value.reason


def test_well_formed_reply_becomes_a_pair() -> None:
    pair = check(reply())
    assert pair.answer == 42 and pair.answer_format is AnswerFormat.INTEGER
    assert pair.evidence_sources == [EvidenceSource.TABLE]
    assert pair.evidence_description == "Table on Page 12 shows 42."
    assert pair.prompt_version == "v" and pair.segment == SEGMENT.pages


@pytest.mark.parametrize(
    "text",
    [
        '[Evidence Description]: seen.\n[JSON]:\n```json\n{"question": "What on Page 11?", '
        '"answer": "x", "answer_format": "String", "evidence_pages": ["11"], '
        '"evidence_sources": ["text"],}\n```\nHope this helps!',
        "Evidence: seen\nJSON: {'question': 'What on Page 11?', 'answer': 'x', "
        "'answer_format': 'string', 'evidence_pages': ['Page 11'], 'evidence_sources': 'Text'}",
        '{"evidence_description": "seen", "question": "What on Page 11?", "answer": "x", '
        '"answer_format": "String", "evidence_pages": [11], "evidence_sources": ["Text"]}',
    ],
)
def test_messy_replies_are_read(text: str) -> None:
    pair = check(text)
    assert pair.evidence_pages == [11] and pair.answer == "x"
    assert pair.evidence_description.startswith("seen")


def test_decorated_numbers_parse() -> None:
    assert check(reply(answer="$1,204.50", answer_format="Float")).answer == 1204.5
    assert check(reply(answer="98.5%", answer_format="float")).answer == 98.5


@pytest.mark.parametrize(
    ("text", "task", "expected"),
    [
        ("no json here at all", Task.EXTRACT_SINGLE, QARejectReason.NO_JSON),
        ('JSON: {"question": "unterminated', Task.EXTRACT_SINGLE, QARejectReason.NO_JSON),
        (reply(evidence_pages=[25]), Task.EXTRACT_SINGLE, QARejectReason.EVIDENCE_OUTSIDE_SEGMENT),
        (reply(evidence_pages=[12, 13]), Task.EXTRACT_SINGLE, QARejectReason.SINGLE_NOT_ONE_PAGE),
        (reply(), Task.EXTRACT_MULTI, QARejectReason.TOO_FEW_PAGES),
        (reply(), Task.REASONING, QARejectReason.TOO_FEW_PAGES),
        (reply(answer="many"), Task.EXTRACT_SINGLE, QARejectReason.ANSWER_FORMAT),
        (
            reply(answer="a", answer_format="List"),
            Task.EXTRACT_SINGLE,
            QARejectReason.ANSWER_FORMAT,
        ),
        (reply(answer_format="None"), Task.EXTRACT_SINGLE, QARejectReason.ANSWER_FORMAT),
        (reply(question="What is the total?"), Task.EXTRACT_SINGLE, QARejectReason.NO_ANCHOR),
        (
            reply(question="What part of the pump fails?"),
            Task.EXTRACT_SINGLE,
            QARejectReason.NO_ANCHOR,
        ),
        (
            reply(question="What is the total on Page 31?"),
            Task.EXTRACT_SINGLE,
            QARejectReason.NO_ANCHOR,
        ),
        (
            reply(question="What is the total across the document on Page 12?"),
            Task.EXTRACT_SINGLE,
            QARejectReason.BROAD_SCOPE,
        ),
        (reply(evidence_sources=["Sound"]), Task.EXTRACT_SINGLE, QARejectReason.BAD_FIELDS),
        (reply(evidence_pages=[]), Task.EXTRACT_SINGLE, QARejectReason.BAD_FIELDS),
    ],
)
def test_rejections_carry_reasons(text: str, task: Task, expected: QARejectReason) -> None:
    assert reason(text, task) is expected


def test_multi_page_and_fallback() -> None:
    assert check(reply(evidence_pages=[12, 14]), Task.EXTRACT_MULTI).evidence_pages == [12, 14]
    validator = QAValidator()
    text = reply().replace("Evidence:", "Evidence: single-page fallback.")
    assert check(text, Task.REASONING, validator).evidence_pages == [12]
    assert validator.fallbacks == 1


def test_section_anchor_is_enough() -> None:
    pair = check(reply(question="What is the total in the Results section?"))
    assert "Results" in pair.question


def test_duplicates_are_rejected() -> None:
    validator = QAValidator()
    check(reply(), validator=validator)
    with pytest.raises(Rejected) as caught:
        check(reply(question="what is the TOTAL on page 12 ?"), validator=validator)
    assert caught.value.reason is QARejectReason.DUPLICATE


def test_anchored_pages() -> None:
    assert anchored_pages("on Pages 12-14 and Page 20") == [12, 13, 14, 20]
    assert anchored_pages("Based on Pages 6, 13, and 19") == [6, 13, 19]
    assert anchored_pages("no anchor") == []


def test_parse_reply_prefers_the_object_after_the_json_marker() -> None:
    text = 'Evidence: example {"question": "old"} here\nJSON: {"question": "new", "answer": 1}'
    assert parse_reply(text).data["question"] == "new"


def _json_reply(question, answer, answer_format, pages) -> str:
    data = {
        "question": question,
        "answer": answer,
        "answer_format": answer_format,
        "evidence_pages": pages,
        "evidence_sources": ["Text"],
    }
    return "JSON: " + json.dumps(data)


REPLIES = st.text(max_size=300) | st.builds(
    _json_reply,
    st.text(max_size=40),
    st.one_of(st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=3)),
    st.sampled_from(["String", "Integer", "Float", "List", "None", "x"]),
    st.lists(st.integers(min_value=-3, max_value=30), max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(REPLIES)
def test_any_reply_becomes_a_pair_or_a_reasoned_rejection(text: str) -> None:
    outcome: object
    try:
        outcome = check(text)
    except Rejected as rejection:
        outcome = rejection.reason
    if isinstance(outcome, QARejectReason):
        return
    assert all(p in SEGMENT.pages for p in outcome.evidence_pages)  # type: ignore[attr-defined]
