"""MM-NIAH scores and MMLongBench-Doc's aggregates, from the references' behaviour."""

from __future__ import annotations

import pytest

from lvlm_judge.metrics import ScoredAnswer, accuracy, generalized_f1
from lvlm_judge.niah import (
    choice_index,
    count_list,
    count_positional,
    count_sum_match,
    score_niah,
    substring_match,
)


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("The needle is a red apple.", "red apple", 1.0),
        ("The needle is a red apple.", ["x", "Red Apple"], 1.0),
        ("The needle is a green apple.", "red apple", 0.0),
        ("It is the Eiffel tower", [["eiffel tower"], ["x"]], 1.0),
    ],
)
def test_substring_match(prediction: str, answers: object, expected: float) -> None:
    assert substring_match(prediction, answers) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prediction", "index"),
    [
        ("The answer is (C)", 2),
        ("Answer: B", 1),
        ("I think D is right", 3),  # "I" is a letter too, but D is the last lone one
        ("D, I think", 8),  # quirk: the last lone capital letter A-J wins
        ("none of them", -1),
    ],
)
def test_choice_index(prediction: str, index: int) -> None:
    assert choice_index(prediction) == index


@pytest.mark.parametrize(
    ("prediction", "counts"),
    [
        ("[1, 2, 3]", [1, 2, 3]),
        ("first [9] then [1, 2]", [1, 2]),
        ("[1, 'x', 2]", [1, 2]),  # not a count list, not JSON either: every number
        ('["1", "x", 2]', [1, 2]),
        ("I count 2 and 4", [2, 4]),
        ("[1 2]", [1, 2]),
    ],
)
def test_count_list(prediction: str, counts: list[int]) -> None:
    assert count_list(prediction) == counts


def test_counting_two_ways() -> None:
    assert count_sum_match("[3, 2, 1]", [1, 2, 3]) == 1.0
    assert count_positional("[3, 2, 1]", [1, 2, 3]) == pytest.approx(1 / 3)
    assert count_positional("[1, 2, 4]", [1, 2, 3]) == pytest.approx(2 / 3)
    assert count_positional("```json\n[1,2,3]\n```", [1, 2, 3]) == 1.0
    assert count_positional('{"a": [1], "b": [2, 3]}', [1, 2, 3]) == 1.0
    assert count_positional("[1, 2]", [1, 2, 3]) == pytest.approx(2 / 3)
    assert count_positional("one two", [1, 2]) == 0.0
    assert count_sum_match("no numbers", [1]) == 0.0


def test_score_niah_takes_the_better_of_raw_and_parsed() -> None:
    scores = score_niah("Answer: [1, 2, 3]", "[1, 2, 3]", "soft_acc")
    assert scores == {"soft_acc": 1.0, "soft_acc_positional": 1.0}
    assert score_niah("Answer: B", 1, "mc_acc") == {"mc_acc": 1.0}
    assert score_niah("Answer: B", "B", "mc_acc") == {"mc_acc": 1.0}
    assert score_niah("Answer: the key is 42", "42", "sub_em") == {"sub_em": 1.0}


def test_generalized_f1_and_accuracy() -> None:
    items = [
        ScoredAnswer("A", "A", 1.0),
        ScoredAnswer("Not answerable", "Not answerable", 1.0),
        ScoredAnswer("B", "Not answerable", 0.0),
        ScoredAnswer("Not answerable", "C", 0.0),
    ]
    assert accuracy(items) == 0.5
    assert generalized_f1(items) == pytest.approx(0.5)
    always_abstains = [ScoredAnswer("A", "Not answerable", 0.0)]
    assert generalized_f1(always_abstains) == 0.0
    assert accuracy([]) == 0.0
