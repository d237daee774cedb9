"""MM-NIAH scoring: substring exact match, multiple-choice letters, and counting both ways.

MMLongBench scores every NIAH metric on the raw output and on the answer after "Answer:" and
keeps the better of the two; ``score_niah`` does the same. Counting has two scores: MMLongBench
compares the sums of the predicted and expected count lists ("soft_acc" in its code), the
original MM-NIAH gives the share of positions whose count is right. Counts are read by the
shared parser (``mmprolong_schemas.numbers``) in MMLongBench's counting reading,
``Reading.DIGIT_RUNS``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from lvlm_judge.rules import (
    ANSWER_PREFIX,
    normalize_answer,
    normalize_keep_punctuation,
    parse_output,
)
from mmprolong_schemas import NiahMetric
from mmprolong_schemas.numbers import Reading, find_numbers, parse_number

_COUNT_LIST = re.compile(r"\[[\d\s,]+\]", re.IGNORECASE | re.DOTALL)
_ANY_LIST = re.compile(r"\[.*?\]", re.IGNORECASE | re.DOTALL)
_CHOICE_ANSWER_IS = re.compile(r"answer is \(?([A-J])\)?")
_CHOICE_ANSWER_COLON = re.compile(r"[aA]nswer:\s*([A-J])")
_CHOICE_LAST_LETTER = re.compile(r"\b[A-J]\b(?!.*\b[A-J]\b)", re.DOTALL)


def substring_match(prediction: str, answers: str | Sequence[object]) -> float:
    """1 when any normalised answer occurs in the normalised prediction."""
    candidates: list[object]
    if isinstance(answers, str):
        candidates = [answers]
    elif answers and isinstance(answers[0], list):
        candidates = [answer for group in answers if isinstance(group, list) for answer in group]
    else:
        candidates = list(answers)
    if not candidates:
        raise ValueError("a substring-match item needs at least one answer")
    return max(
        float(normalize_answer(str(answer)) in normalize_answer(prediction))
        for answer in candidates
    )


def choice_index(prediction: str) -> int:
    """The chosen option as a 0-based index ("answer is (B)", "Answer: B", last lone letter),
    or -1 when no option letter can be found."""
    text = " ".join(prediction.split())
    for pattern in (_CHOICE_ANSWER_IS, _CHOICE_ANSWER_COLON):
        match = pattern.search(text)
        if match:
            return ord(match.group(1)) - ord("A")
    match = _CHOICE_LAST_LETTER.search(text)
    return ord(match.group(0)) - ord("A") if match else -1


def _int_items(values: object) -> list[int]:
    if not isinstance(values, list):
        return []
    items = []
    for value in values:
        if isinstance(value, str):  # a quoted count ("3")
            count = parse_number(value, reading=Reading.DIGIT_RUNS)
            if count is not None:
                items.append(int(count))
            continue
        try:
            items.append(int(value))
        except (TypeError, ValueError, OverflowError):
            continue
    return items


def count_list(prediction: str) -> list[int]:
    """MMLongBench's reading of a predicted count list: the last [1, 2, 3]-like list, else the
    last bracketed list (non-numbers dropped), else every number in the text."""
    text = normalize_keep_punctuation(prediction)
    for pattern, as_ints in ((_COUNT_LIST, False), (_ANY_LIST, True)):
        found = pattern.findall(text)
        if found:
            try:
                loaded = json.loads(found[-1])
            except json.JSONDecodeError:
                continue
            return _int_items(loaded) if as_ints else loaded
    return [int(run.value) for run in find_numbers(text, reading=Reading.DIGIT_RUNS)]


def count_sum_match(prediction: str, answer: Sequence[int]) -> float:
    """MMLongBench's counting score: the predicted counts add up to the expected total."""
    predicted = count_list(prediction)
    try:
        return float(sum(predicted) == sum(answer))
    except TypeError:
        return 0.0


def count_positional(prediction: str, answer: Sequence[int]) -> float:
    """The original MM-NIAH counting score: the share of positions with the right count.
    The prediction must be a JSON list (```json fences allowed), else it scores 0."""
    if not answer:
        raise ValueError("a counting item needs a non-empty list of counts")
    text = prediction.strip(".").replace("json", "").replace("```", "").strip()
    try:
        loaded = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return 0.0
    if isinstance(loaded, dict):
        try:
            loaded = sum(loaded.values(), start=[])
        except TypeError:
            return 0.0
    if not isinstance(loaded, list | tuple):
        return 0.0
    return sum(int(got == want) for got, want in zip(loaded, answer, strict=False)) / len(answer)


def count_answer(answer: object) -> list[int]:
    """A counting answer as ints; MM-NIAH files sometimes store it as a JSON string."""
    if isinstance(answer, str):
        answer = json.loads(answer)
    if not isinstance(answer, list) or not all(
        isinstance(v, int | float) and float(v).is_integer() for v in answer
    ):
        raise ValueError(f"counting answer {answer!r} is not a list of whole numbers")
    return [int(v) for v in answer]


def _mc_answer(answer: object) -> int:
    if isinstance(answer, bool) or not isinstance(answer, int | str):
        raise ValueError(f"multiple-choice answer {answer!r} is not an option index or letter")
    if isinstance(answer, str):
        answer = answer.strip()
        if len(answer) == 1 and answer.isalpha():
            return ord(answer.upper()) - ord("A")
        index = parse_number(answer)
        if not isinstance(index, int):
            raise ValueError(f"multiple-choice answer {answer!r} is not an option index or letter")
        return index
    return answer


def _one(output: str, answer: object, metric: NiahMetric) -> dict[str, float]:
    if metric is NiahMetric.SUB_EM:
        return {"sub_em": substring_match(output, answer)}  # type: ignore[arg-type]
    if metric is NiahMetric.MC_ACC:
        return {"mc_acc": float(choice_index(output) == _mc_answer(answer))}
    counts = count_answer(answer)
    return {
        "soft_acc": count_sum_match(output, counts),
        "soft_acc_positional": count_positional(output, counts),
    }


def score_niah(output: str, answer: object, metric: NiahMetric | str) -> dict[str, float]:
    """Every score of ``metric`` for a generation, each the better of the prefixed and the
    parsed output: MMLongBench prefixes "Answer:" to the generation first (eval.py), multiple
    choice included. The first key is the headline score (MMLongBench's)."""
    metric = NiahMetric(metric)
    text = ANSWER_PREFIX + output
    raw = _one(text, answer, metric)
    parsed = _one(parse_output(text), answer, metric)
    return {key: max(value, parsed[key]) for key, value in raw.items()}
