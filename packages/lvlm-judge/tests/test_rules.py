"""The v1.0 rule scorer on a wide table of cases, each derived from MMLongBench's
``eval_docqa_score`` behaviour (including its quirks)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lvlm_judge.rules import (
    clean_number_string,
    is_certain_match,
    merged_list,
    needs_exact_match,
    parse_generation,
    parse_output,
    score_answer,
    score_output,
    string_type,
    token_f1,
)
from mmprolong_schemas import AnswerFormat

CASES = [
    # Integer: any whole number in the cleaned prediction.
    ("Integer", "5", "5", 1.0),
    ("Integer", "5", "There are 5 apples", 1.0),
    ("Integer", "5", "5.0", 1.0),
    ("Integer", "5", "5.5", 0.0),
    ("Integer", "1204", "1,204", 1.0),
    ("Integer", "1,204", "1204 people", 1.0),
    ("Integer", "12", "12m", 1.0),  # unit suffix stripped without a word boundary
    ("Integer", "3", "three", 0.0),
    ("Integer", 5, "between 3 and 5", 1.0),  # any number counts
    ("Integer", "-2", "-2", 1.0),
    ("Integer", "10", "10%", 1.0),
    ("Integer", "7", "7 minutes", 1.0),
    ("Integer", "7", "", 0.0),
    # Float: 1% relative tolerance against answer, answer/100, answer*100.
    ("Float", "0.5", "0.5", 1.0),
    ("Float", "0.5", "50%", 1.0),
    ("Float", "50%", "0.5", 1.0),
    ("Float", "3.14", "3.17", 1.0),
    ("Float", "3.14", "3.18", 0.0),
    ("Float", "100", "101", 1.0),
    ("Float", "100", "102", 0.0),
    ("Float", "$1,234.5", "1234.5 dollars", 1.0),
    ("Float", "2.5 million", "2.5", 1.0),
    ("Float", "0.25", "25", 1.0),
    ("Float", "1.5", "no idea", 0.0),
    ("Float", "0.5", "The value is 0.5%", 1.0),
    ("Float", 12.0, "12", 1.0),
    # String: exact-match patterns are case-sensitive substrings, else token F1.
    ("String", "Paris", "Paris", 1.0),
    ("String", "Paris", "The answer is Paris", 0.5),
    ("String", "New York City", "new york", 0.8),
    ("String", "https://example.com/a", "see https://example.com/a", 1.0),
    ("String", "https://example.com/a", "HTTPS://EXAMPLE.COM/A", 0.0),
    ("String", "page 5", "on page 5.", 1.0),
    ("String", "page 5", "Page 5", 0.0),  # exact match is case-sensitive
    ("String", "Page 5", "page 5", 1.0),  # capital P: not exact-match, token F1
    ("String", "2023-05-01", "2023-05-01", 1.0),
    ("String", "2023-05-01", "May 1, 2023", 0.0),
    ("String", "2019/12", "In 2019/12.", 1.0),
    ("String", "12/25/2019", "on 12/25/2019", 1.0),
    ("String", "a.b@x.org", "mail a.b@x.org", 1.0),
    ("String", "10 a.m.", "10 a.m. sharp", 1.0),
    ("String", "10 a.m.", "10 am", 0.0),
    ("String", "555-1234", "call 555-1234", 1.0),
    ("String", "train.py", "run train.py", 1.0),
    ("String", "the cat", "a cat", 1.0),  # articles do not count
    # Not answerable: token F1 like any string.
    ("None", "Not answerable", "Not answerable.", 1.0),
    ("None", "Not answerable", "The question is not answerable", 2 / 3),
    ("None", "Not answerable", "Paris", 0.0),
    # List: plain strings merged, other items scored alone, mean over the merged list.
    ("List", ["apple", "banana"], "apple and banana", 0.8),
    ("List", ["3", "5"], "3 and 5", 1.0),
    ("List", ["3", "5"], "3", 0.5),
    ("List", '["Paris", 5]', "Paris, 5", (2 / 3 + 1) / 2),
    ("List", ["page 3", "Tokyo"], "page 3 Tokyo", 0.75),
    ("List", [1.5, "2%"], "1.5 and 0.02", 1.0),
    ("List", ["12m"], "12 metres", 1.0),
    ("List", ["red", "blue", "green"], "red, blue", 0.8),
]


@pytest.mark.parametrize(("answer_format", "answer", "prediction", "expected"), CASES)
def test_rule_table(answer_format: str, answer: object, prediction: str, expected: float) -> None:
    assert score_answer(answer, prediction, answer_format) == pytest.approx(expected)


def test_integer_answer_that_is_not_whole_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a whole number"):
        score_answer("2.5", "2", "Integer")


def test_list_answer_that_is_not_json_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a JSON list"):
        score_answer("not json", "x", "List")


@pytest.mark.parametrize(
    ("output", "parsed"),
    [
        ("Answer: Paris", "Paris"),
        ("answer: Answer: Paris", "Paris"),
        ("I think Paris", "I think Paris"),
        ("Let me look.\nAnswer: 42\nDone", "42\nDone"),
        ("  ", ""),
    ],
)
def test_parse_output(output: str, parsed: str) -> None:
    assert parse_output(output) == parsed


def test_score_output_prefixes_answer_before_parsing_as_mmlongbench_does() -> None:
    """MMLongBench eval.py (run_test) prepends the prompt's system_template ("Answer:") to the
    generation, then data.py's post-processing parses it with utils.parse_output: the first
    "Answer:" is the prepended one, so an answer later in the text is not cut out."""
    assert score_output("7", "Answer: 7", "Integer") == (1.0, "7")
    assert score_output("7", " 7", "Integer") == (1.0, "7")
    parsed = "Reading the table.\nFinal answer: 10"
    assert score_output("10", parsed, "Integer") == (1.0, parsed)
    # The whole generation is scored: the 3 before "Answer:" counts for an Integer.
    assert score_output("3", "There are 3 rows.\nAnswer: 4", "Integer") == (
        1.0,
        "There are 3 rows.\nAnswer: 4",
    )
    assert parse_generation("Answer: Answer: Paris") == "Answer: Paris"
    assert parse_generation("") == ""


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("1,204", "1204"),
        ("$12", "12"),
        ("£3 ", "3"),
        ("'5'", "5"),
        ("12 kg", "12"),
        ("45%", "45"),
        ("3 million", "3"),
        ("7mm", "7"),
        ("team", "tea"),
    ],
)
def test_clean_number_string(text: str, cleaned: str) -> None:
    assert clean_number_string(text) == cleaned


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("5", "Integer"),
        ("5%", "Float"),
        ("2.5", "Float"),
        ("1,000", "Integer"),
        ("inf", "String"),
        ("nan", "String"),
        ("Paris", "String"),
        ("12m", "Integer"),
    ],
)
def test_string_type(text: str, kind: str) -> None:
    assert string_type(text) is AnswerFormat(kind)


@pytest.mark.parametrize(
    ("text", "exact"),
    [
        ("https://a.b", True),
        ("nb.ipynb", True),
        ("page 4", True),
        ("Page 4", False),
        ("555 1234", True),
        ("5 p.m.", True),
        ("2024-1-2", True),
        ("2024 01", True),
        ("x@y.com", True),
        ("Paris", False),
        ("12 apples", False),
    ],
)
def test_exact_match_patterns(text: str, exact: bool) -> None:
    assert needs_exact_match(text) is exact


def test_merge_keeps_exact_and_numeric_items_apart() -> None:
    assert merged_list(["a", "page 2", "b", 3, "4.5"]) == [
        ("a b", AnswerFormat.STRING),
        ("page 2", AnswerFormat.STRING),
        (3, AnswerFormat.INTEGER),
        ("4.5", AnswerFormat.FLOAT),
    ]


def test_token_f1_is_zero_without_overlap() -> None:
    assert token_f1("", "x") == 0.0
    assert token_f1("a b", "c") == 0.0


@pytest.mark.parametrize(
    ("answer", "prediction", "answer_format", "certain"),
    [
        ("12", "12", "Integer", True),
        ("12", "1,2", "Integer", True),
        ("1000", "1e3", "Integer", False),  # not a plain number: left to the judge
        ("12", "about 12", "Integer", False),
        ("0.5", "0.50", "Float", True),
        ("0.5", "50%", "Float", False),
        ("Paris", "paris.", "String", True),
        ("Paris", "Paris, France", "String", False),
        ("Not answerable", "Not answerable.", "None", True),
        ("Not answerable", "", "None", False),
        (["a", "b"], '["B", "a"]', "List", True),
        (["a", "b"], "a and b", "List", False),
    ],
)
def test_certain_match(answer: object, prediction: str, answer_format: str, certain: bool) -> None:
    assert is_certain_match(answer, prediction, answer_format) is certain


@settings(max_examples=300, deadline=None)
@given(
    prediction=st.text(max_size=60),
    case=st.sampled_from(CASES),
)
def test_any_prediction_scores_within_bounds(prediction: str, case: tuple) -> None:
    answer_format, answer, _, _ = case
    score = score_answer(answer, prediction, answer_format)
    assert 0.0 <= score <= 1.0
    certain = is_certain_match(answer, prediction, answer_format)
    if certain and answer_format in ("Integer", "Float", "None"):
        # The pre-judge only skips answers the rules also count as right.
        assert score == 1.0
