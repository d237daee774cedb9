import pytest

from mmprolong_schemas import PagePart, Task, TextPart
from qasynth.prompts import EXEMPLARS, PROMPT_VERSION, build_prompt, reply_json_schema
from qasynth.segments import sample_segments


@pytest.mark.parametrize("task", [Task.EXTRACT_SINGLE, Task.EXTRACT_MULTI, Task.REASONING])
def test_prompt_carries_the_requirements(document, task) -> None:
    (segment,) = sample_segments(document, 1, seed=0)
    prompt = build_prompt(segment, task, seed=0)
    text = prompt.text
    assert prompt.version == PROMPT_VERSION
    for needle in (
        "Page indices",
        'Never write "in the document"',
        "String",
        "Integer",
        "Float",
        "List",
        "Text:",
        "Layout:",
        "Figure:",
        "Table:",
        "Evidence:",
        "JSON:",
        f"Pages {segment.pages.first}-{segment.pages.last}",
    ):
        assert needle in text
    assert text.count("EXAMPLE ") == 2
    pages = [p.page for p in prompt.parts if isinstance(p, PagePart)]
    assert pages == segment.pages.pages
    labels = [
        p.text for p in prompt.parts if isinstance(p, TextPart) and p.text.startswith("Page ")
    ]
    assert labels == [f"Page {p}:" for p in pages]


def test_task_restrictions_differ(document) -> None:
    (segment,) = sample_segments(document, 1, seed=0)
    texts = {t: build_prompt(segment, t).text for t in (Task.EXTRACT_SINGLE, Task.REASONING)}
    assert "exactly that one page" in texts[Task.EXTRACT_SINGLE]
    assert "at least two" in texts[Task.REASONING]


def test_exemplars_are_seeded_and_of_the_task(document) -> None:
    (segment,) = sample_segments(document, 1, seed=0)
    chosen = {build_prompt(segment, Task.EXTRACT_MULTI, seed=s).text for s in range(6)}
    assert len(chosen) >= 1
    assert (
        build_prompt(segment, Task.EXTRACT_MULTI, 1).text
        == build_prompt(segment, Task.EXTRACT_MULTI, 1).text
    )
    assert sum(e.task is Task.EXTRACT_MULTI for e in EXEMPLARS) >= 2


def test_non_vqa_task_is_refused(document) -> None:
    (segment,) = sample_segments(document, 1, seed=0)
    with pytest.raises(ValueError, match="ocr-full"):
        build_prompt(segment, Task.OCR_FULL)


def test_schema_lists_required_fields() -> None:
    schema = reply_json_schema()
    assert schema["required"][0] == "evidence_description"
    assert set(schema["properties"]["answer_format"]["enum"]) == {
        "String",
        "Integer",
        "Float",
        "List",
    }
