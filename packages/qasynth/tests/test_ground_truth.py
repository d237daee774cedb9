"""The rules teacher on the docpool generated corpus: answers checked against ground truth.

Expected answers are recomputed from the corpus ground truth (what the generator printed, and
where), not from anything the teacher or docpool parsed.
"""

from __future__ import annotations

import re

import pytest

from mmprolong_schemas import QAPair, Segment, read_jsonl
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, reply_settings
from qasynth.pipeline import CACHE_FILE, PAIRS_FILE, SEGMENTS_FILE, generate_pairs, segment_pool
from qasynth.prompts import PROMPT_VERSION
from qasynth.segments import segment_id
from qasynth.teachers.base import request_key
from qasynth.teachers.rules import RulesTeacher

SEPARATORS = {"en": (",", "."), "fr": (" ", ","), "de": (".", ",")}


def printed_number(text: str, lang: str) -> float:
    thousands, decimal = SEPARATORS[lang]
    return float(text.replace(thousands, "").replace(decimal, "."))


def _flat(text: str) -> str:
    return " ".join(text.split())


def true_sentence_value(doc, locator) -> float | None:
    prefix, suffix = locator["sentence_cloze"]
    for fact in doc.facts:
        sentence = _flat(fact.sentence)
        if (
            fact.page == locator["page"]
            and sentence.startswith(prefix)
            and sentence.endswith(suffix)
        ):
            middle = sentence[len(prefix) : len(sentence) - len(suffix)]
            if middle == fact.value_text and not isinstance(fact.value, str):
                return float(fact.value)
            if re.fullmatch(r"\d{4}", middle):
                return float(middle)
    return None


def true_table(doc, page: int, caption: str):
    for table in doc.tables:
        if table.page == page and _flat(table.caption) == caption:
            return table
    return None


def true_cell(doc, locator) -> float | None:
    table = true_table(doc, locator["page"], locator["caption"])
    if table is None:
        return None
    header = [_flat(c) for c in table.rows[0]]
    for row in table.rows[1:]:
        if _flat(row[0]) == locator["row"] and locator["column"] in header:
            return printed_number(row[header.index(locator["column"])], doc.lang)
    return None


def expected_answer(doc, meta, cloze_of) -> object:
    values = []
    for locator in meta["facts"]:
        if locator["kind"] == "sentence":
            locator = dict(locator, sentence_cloze=cloze_of(locator))
            values.append(true_sentence_value(doc, locator))
        else:
            values.append(true_cell(doc, locator))
    if None in values:
        return None
    operation = meta["operation"]
    tables = [true_table(doc, t["page"], t["caption"]) for t in meta["tables"]]
    if operation == "caption":
        (locator,) = meta["captions"]
        for caption in doc.captions:
            text = _flat(caption.text)
            if caption.page == locator["page"] and text.startswith(locator["label"]):
                return text[len(locator["label"]) :].lstrip(" :.")
        return None
    if operation == "value":
        return values[0]
    if operation == "list-values":
        return values
    if operation == "sum":
        return values[0] + values[1]
    if operation == "difference":
        return values[0] - values[1]
    if operation == "compare":
        return "A" if values[0] > values[1] else "B"
    if None in tables:
        return None
    if operation == "list-row-labels":
        return list(dict.fromkeys(_flat(r[0]) for t in tables for r in t.rows[1:]))
    if operation == "count-rows":
        return float(sum(len(t.rows) - 1 for t in tables))
    raise AssertionError(operation)


def same(answer: object, expected: object) -> bool:
    if isinstance(expected, list):
        return (
            isinstance(answer, list)
            and len(answer) == len(expected)
            and all(same(a, e) for a, e in zip(answer, expected, strict=True))
        )
    if isinstance(expected, float):
        return isinstance(answer, int | float) and abs(answer - expected) < 1e-6
    return answer == expected


@pytest.mark.slow
def test_rules_teacher_matches_the_corpus_ground_truth(corpus_pool, tmp_path) -> None:
    pool, truth, _ = corpus_pool
    by_id = {doc.doc_id: doc for doc in truth.documents}
    summary = segment_pool(pool, tmp_path, per_doc=2, seed=0)
    assert summary["documents_chosen"] == len(truth.documents)
    segments = list(read_jsonl(tmp_path / SEGMENTS_FILE, Segment))
    outlined = {d.doc_id for d in truth.documents if d.has_outline}
    for segment in segments:
        assert 8 <= len(segment.pages) <= 15
        if segment.doc_id in outlined:
            assert segment.section_titles
    teacher = RulesTeacher(pool.get)
    stats = generate_pairs(pool, tmp_path, teacher)
    pairs = list(read_jsonl(tmp_path / PAIRS_FILE, QAPair))
    assert len(pairs) >= 0.9 * len(segments) * 3, stats
    checked = correct = 0
    operations: list[str] = []
    misses = []
    with RequestCache(tmp_path / CACHE_FILE) as cache:
        for pair in pairs:
            meta = None
            for attempt in range(3):
                key = request_key(
                    teacher.name,
                    PROMPT_VERSION,
                    segment_id(pair.doc_id, pair.segment),
                    pair.task,
                    0,
                    attempt,
                    reply_settings(teacher, GenerateConfig()),
                )
                reply = cache.get(key)
                if reply and reply.text and pair.question in reply.text.replace('\\"', '"'):
                    meta = reply.meta
                    break
            assert meta is not None
            doc = by_id[pair.doc_id]

            def cloze_of(locator, pair=pair):
                cloze = next(
                    part
                    for part in pair.question.split('"')
                    if "___" in part and locator["sentence"].startswith(part.split("___")[0])
                )
                return tuple(cloze.split("___"))

            expected = expected_answer(doc, meta, cloze_of)
            operations.append(meta["operation"])
            checked += 1
            if expected is not None and same(pair.answer, expected):
                correct += 1
            else:
                misses.append((pair.question, pair.answer, expected))
    assert checked == len(pairs)
    print(f"ground truth: {correct}/{checked} correct", stats["rejected"], misses[:3])
    assert correct / checked >= 0.95, misses[:5]
    assert any(meta_ops == "caption" for meta_ops in operations)
    tasks = {p.task.value for p in pairs}
    assert tasks == {"extract-single", "extract-multi", "reasoning"}
