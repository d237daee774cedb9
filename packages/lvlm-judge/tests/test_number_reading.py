"""lvlm-judge reads every number with the shared parser (mmprolong_schemas.numbers): in
MMLongBench's own readings where it restates MMLongBench (EdinburghNLP/MMLongBench utils.py:
eval_docqa_score, extract_number_list, extract_cnt_list), in the default reading elsewhere."""

from __future__ import annotations

import pytest

from lvlm_judge.judge.parse import parse_list_verdict, parse_single_verdict
from lvlm_judge.niah import count_list, score_niah
from lvlm_judge.rules import is_certain_match, score_answer, string_type
from mmprolong_schemas import AnswerFormat


def test_document_qa_reads_commas_as_mmlongbench_does_whatever_the_language() -> None:
    # MMLongBench deletes every comma before reading: "3,7" is 37 there, not 3.7.
    assert score_answer("37", "3,7", "Integer") == 1.0
    assert score_answer(3.7, "3,7", "Float") == 0.0
    assert string_type("1,5") is AnswerFormat.INTEGER
    assert string_type("1e3") is AnswerFormat.INTEGER  # float("1e3") is 1000.0
    # A minus glued to a year range, and a number glued to a letter, are read as numbers.
    assert score_answer("-2020", "2019-2020", "Integer") == 1.0
    assert score_answer("4", "format A4", "Integer") == 1.0


def test_float_answer_that_is_no_finite_number_is_an_error() -> None:
    for answer in ("inf", "1e999", "nan"):
        with pytest.raises(ValueError, match="marked Float but is no number"):
            score_answer(answer, "1", "Float")
    with pytest.raises(ValueError, match="marked Integer but is no number"):
        score_answer("many", "1", "Integer")


@pytest.mark.parametrize(
    ("answer", "prediction", "certain"),
    [
        ("1204", "1,204", True),
        ("1204", "1204 m", True),  # the unit goes, as in the scorer's cleaning
        ("0.5", ".5", True),
        ("1000", "1e3", False),  # two numbers in MMLongBench's reading: left to the judge
        ("1204", "12 04", False),
    ],
)
def test_certain_match_needs_one_whole_number(answer: str, prediction: str, certain: bool) -> None:
    assert is_certain_match(answer, prediction, "Float") is certain


def test_niah_counts_are_digit_runs() -> None:
    # extract_cnt_list's last resort: every run of digits, so "1.5" gives 1 and 5.
    assert count_list("I saw 1.5 apples and -3 pears") == [1, 5, 3]
    # turn_int_list: quoted counts are read as int() reads them, others dropped.
    assert count_list('counts: ["2", " -1 ", "3.0", "x"]') == [2, -1]
    assert score_niah("Answer: [1, 2]", [1, 2], "soft_acc")["soft_acc"] == 1.0


def test_multiple_choice_answer_as_an_index_string() -> None:
    assert score_niah("The answer is (C)", "2", "mc_acc") == {"mc_acc": 1.0}
    with pytest.raises(ValueError, match="'2.5' is not an option index or letter"):
        score_niah("The answer is (C)", "2.5", "mc_acc")


@pytest.mark.parametrize(
    ("reply", "score", "parsed"),
    [
        # A quoted score is a string, which MMLongBench's mean cannot take (utils.py,
        # eval_docqa_score_with_llm_judge): unparsed, 0.
        ('[JSON]: {"answer_score": "0.5"}', 0.0, False),
        ('[JSON]: {"answer_score": "nan"}', 0.0, False),  # float("nan") would clamp to 1
        ('[JSON]: {"answer_score": "1e0"}', 0.0, False),
        ('"answer_score": 1, cut', 1.0, True),
        ("[Score]: " + "9" * 400 + " points", 0.0, False),  # no float holds it
    ],
)
def test_judge_reply_numbers(reply: str, score: float, parsed: bool) -> None:
    verdict = parse_single_verdict(reply)
    assert (verdict.score, verdict.parsed) == (score, parsed)


def test_list_verdict_reads_counts_of_a_cut_off_reply_with_the_shared_parser() -> None:
    # A reply cut off inside its JSON: each count is looked up on its own and read as a number.
    cut = '[JSON]: {"student_answer_count": 2, "covered_count": 1, "ration'
    assert parse_list_verdict(cut, 2).score == 0.5
    # A quoted count is a string, which MMLongBench's division cannot take (utils.py,
    # eval_docqa_list_score_with_llm_judge): unparsed, 0.
    quoted = '[JSON]: {"student_answer_count": "2", "covered_count": 1}'
    assert not parse_list_verdict(quoted, 2).parsed
