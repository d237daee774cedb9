from mmprolong_schemas import Task
from mmprolong_schemas.numbers import parse_number
from qasynth.cache import RequestCache
from qasynth.facts import extract_facts, sentence_facts
from qasynth.generate import GenerateConfig, generate
from qasynth.segments import sample_segments
from qasynth.teachers.rules import RulesTeacher


def test_numbers_follow_the_language() -> None:
    assert parse_number("4,512", "en") == 4512
    assert parse_number("4 512", "fr") == 4512
    assert parse_number("4.512", "de") == 4512
    assert parse_number("3,7", "de") == 3.7
    assert parse_number("12.5", "en") == 12.5
    assert parse_number("abc", "en") is None


def test_sentence_facts_blank_the_single_value() -> None:
    facts = sentence_facts(3, "The Lyon facility processed 4,512 samples in 2019. No number.", "en")
    assert len(facts) == 1
    assert facts[0].value == 4512
    assert facts[0].cloze == "The Lyon facility processed ___ samples in 2019."
    (year,) = sentence_facts(3, "The Porto facility first opened its doors in 1987.", "en")
    assert year.value == 1987


def test_cjk_sentences_end_at_their_full_stop() -> None:
    facts = sentence_facts(2, "上海工厂处理了4,512个样本。成都工厂用电12.5兆瓦时。没有数字。", "zh")
    assert [(f.value, f.cloze) for f in facts] == [
        (4512, "上海工厂处理了___个样本。"),
        (12.5, "成都工厂用电___兆瓦时。"),
    ]


def test_table_facts_use_caption_row_and_column(document) -> None:
    facts = extract_facts(document)
    cells = [f for f in facts.facts if f.kind == "table" and f.page == 3]
    assert cells and cells[0].caption == "Table 1: Employees by site"
    assert (cells[0].row_label, cells[0].column, cells[0].value) == ("Utrecht", "2019", 3)


def _true_value(document, locator) -> float:
    page = locator["page"]
    if locator["kind"] == "sentence":
        if "samples" in locator["sentence"]:
            return page * 100 + 7
        return page + 0.5
    table = [b for b in document.page(page).blocks if b.rows][0]
    header = table.rows[0]
    row = next(r for r in table.rows if r[0] == locator["row"])
    return float(row[header.index(locator["column"])])


def test_rules_teacher_answers_are_true(document, tmp_path) -> None:
    segments = sample_segments(document, 2, seed=0)
    teacher = RulesTeacher(lambda doc_id: document)
    with RequestCache(tmp_path / "cache.sqlite") as cache:
        result = generate(segments, teacher, cache, GenerateConfig(seed=0))
        assert sum(result.stats.accepted.values()) == 6
        assert len(result.pairs) == 6
        for pair in result.pairs:
            key = next(
                k
                for k in range(3)
                if cache.get(_key(teacher, pair, k)) is not None
                and _question_of(cache.get(_key(teacher, pair, k)).text) == pair.question
            )
            meta = cache.get(_key(teacher, pair, key)).meta
            truths = [_true_value(document, f) for f in meta["facts"]]
            if pair.task is Task.EXTRACT_SINGLE and meta["operation"] == "caption":
                (caption,) = meta["captions"]
                assert pair.answer == caption["title"] == "Employees by site"
            elif pair.task is Task.EXTRACT_SINGLE:
                assert truths == [pair.answer]
                assert len(pair.evidence_pages) == 1
            elif pair.task is Task.EXTRACT_MULTI and meta["facts"]:
                assert truths == pair.answer
            elif pair.task is Task.REASONING and meta["facts"]:
                a, b = truths
                options = {round(a + b, 1), round(a - b, 1), "A" if a > b else "B"}
                answer = (
                    round(pair.answer, 1) if isinstance(pair.answer, float | int) else pair.answer
                )
                assert answer in options
            assert f"Page {pair.evidence_pages[0]}" in pair.question or "Pages" in pair.question


def _key(teacher, pair, attempt):
    from qasynth.generate import reply_settings
    from qasynth.prompts import PROMPT_VERSION
    from qasynth.segments import segment_id
    from qasynth.teachers.base import request_key

    return request_key(
        teacher.name,
        PROMPT_VERSION,
        segment_id(pair.doc_id, pair.segment),
        pair.task,
        0,
        attempt,
        reply_settings(teacher, GenerateConfig()),
    )


def _question_of(text):
    from qasynth.parsing import parse_reply

    return parse_reply(text).data["question"]


def test_rules_teacher_is_deterministic(document, tmp_path) -> None:
    segments = sample_segments(document, 1, seed=4)
    runs = []
    for name in ("a", "b"):
        with RequestCache(tmp_path / f"{name}.sqlite") as cache:
            runs.append(generate(segments, RulesTeacher(lambda d: document), cache).pairs)
    assert [p.model_dump() for p in runs[0]] == [p.model_dump() for p in runs[1]]
