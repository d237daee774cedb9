import json

import pytest

from mmprolong_schemas import AnswerFormat, EvidenceSource, PageRange, QAPair, Task
from qasynth.review import draw, ingest_review, wilson_interval, write_review


def _pairs(document, count=6):
    return [
        QAPair(
            qa_id=f"q{i}",
            doc_id=document.doc_id,
            segment=PageRange(first=1, last=10),
            task=Task.EXTRACT_SINGLE,
            question=f"What <b>is</b> on Page {i + 1}?",
            answer=str(i),
            answer_format=AnswerFormat.STRING,
            evidence_pages=[i + 1],
            evidence_sources=[EvidenceSource.TEXT],
            evidence_description="Text <script>",
            teacher="rules:bootstrap-v1",
            prompt_version="v",
        )
        for i in range(count)
    ]


def test_page_embeds_images_escapes_text_and_has_buttons(document, renderer, tmp_path) -> None:
    drawn = write_review(_pairs(document), renderer, tmp_path / "r.html", count=4, seed=1)
    page = (tmp_path / "r.html").read_text()
    assert len(drawn) == 4 and page.count('class="pair"') == 4
    assert page.count("data:image/jpeg;base64,") == 4
    assert "&lt;b&gt;is&lt;/b&gt;" in page and "Text &lt;script&gt;" in page
    for verdict in ("correct", "wrong-answer", "wrong-evidence"):
        assert page.count(f'data-verdict="{verdict}"') == 4
    assert [p.qa_id for p in draw(_pairs(document), 4, 1)] == [p.qa_id for p in drawn]


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(97, 100)
    assert low == pytest.approx(0.9155, abs=1e-3) and high == pytest.approx(0.9897, abs=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_ingest_counts_verdicts(tmp_path) -> None:
    verdicts = {f"q{i}": "correct" for i in range(97)} | {
        "x": "wrong-answer",
        "y": "wrong-answer",
        "z": "wrong-evidence",
    }
    (tmp_path / "v.json").write_text(
        json.dumps({"verdicts": verdicts, "qa_ids": [*verdicts, "unjudged"]})
    )
    summary = ingest_review(tmp_path / "v.json")
    assert summary.judged == 100 and summary.accuracy == 0.97
    assert summary.counts == {"correct": 97, "wrong-answer": 2, "wrong-evidence": 1}
    assert summary.unjudged == 1


def test_ingest_rejects_bad_files(tmp_path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a qasynth verdicts file"):
        ingest_review(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text(json.dumps({"verdicts": {"a": "maybe"}}))
    with pytest.raises(ValueError, match="unknown verdicts"):
        ingest_review(tmp_path / "odd.json")


def test_page_shows_the_grounding_rate_per_teacher_and_task(document, renderer, tmp_path) -> None:
    pairs = _pairs(document)
    pairs = [
        p.model_copy(update={"grounding": "grounded" if i < 3 else "unverified"})
        for i, p in enumerate(pairs)
    ]
    write_review(pairs, renderer, tmp_path / "r.html", count=2, seed=1)
    page = (tmp_path / "r.html").read_text()
    row = "<td>rules:bootstrap-v1</td><td>extract-single</td><td>3</td><td>3</td><td>0</td>"
    assert row + "<td>50.0%</td>" in page
