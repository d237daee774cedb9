"""MMLongBench's v1.0 rule scorer for document QA, reproduced behaviour for behaviour.

The reference (MMLongBench's ``eval_docqa_score``) decides by the answer format:

- Integer: every number in the cleaned prediction that is whole is compared with the answer.
- Float: any number in the prediction within 1% (relative) of the answer, the answer / 100
  or the answer x 100 counts.
- String / None: answers that look like URLs, code files, "page ...", phone-like numbers,
  times, dates, month strings or emails need the answer verbatim (case-sensitive substring) in
  the prediction; any other string is scored by SQuAD-style token F1.
- List: the plain-string items are merged into one string (better recall for token F1), every
  other item keeps its own format; the score is the mean over the merged list.

Quirks kept on purpose so scores match the published numbers: the exact-match patterns are
case-sensitive ("Page 3" is not exact-match, "page 3" is), unit suffixes are stripped from the
end of a number string without a word boundary ("12m" -> "12"), and "Not answerable" answers are
scored by token F1, so "not answerable." scores 1 and "the question is not answerable" 0.67.
Numbers are read by the shared parser (``mmprolong_schemas.numbers``) in MMLongBench's own
reading, ``Reading.COMMAS_DROPPED``: every comma is deleted ("1,2" is 12), a dot is decimal,
whatever the language of the document.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Sequence
from math import isclose

from mmprolong_schemas import AnswerFormat
from mmprolong_schemas.numbers import Number, Reading, find_numbers, parse_number

ANSWER_PREFIX = "Answer:"

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_UNIT_SUFFIXES = (
    "kg", "meters", "acres", "minutes", "miles", "mile", "feet",
    "million", "thousand", "billion", "mm", "m",
)  # fmt: skip
_UNIT_PATTERNS = [re.compile(re.escape(suffix) + r"$") for suffix in _UNIT_SUFFIXES]
_EDGE_QUOTE = re.compile(r"^['\"]|['\"]$")
_EXACT_MATCH_PATTERNS = [
    re.compile(pattern)
    for pattern in (
        r"https://",
        r".*\.(py|ipynb)$",
        r"^page",
        r"^\d+(-\d+|\s\d+)?$",
        r"(a\.m\.|p\.m\.)",
        r"^\d{4}[-/\s]\d{1,2}[-/\s]\d{1,2}$",
        r"^\d{1,2}[-/\s]\d{1,2}[-/\s]\d{2,4}$",
        r"^\d{4}[-/\s]\d{1,2}$",
        r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$",
    )
]


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_keep_punctuation(text: str) -> str:
    return " ".join(_ARTICLES.sub(" ", text.lower()).split())


def token_f1(prediction: str, reference: str) -> float:
    """Token-level F1 of the normalised strings (0 when nothing is shared)."""
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(reference).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def parse_output(output: str, prefix: str = ANSWER_PREFIX) -> str:
    """The text after the first ``prefix`` (or all of it), with a repeated prefix removed
    (MMLongBench utils.py, parse_output)."""
    match = re.search(f"(?:{re.escape(prefix)})(.*)", output, flags=re.IGNORECASE | re.DOTALL)
    text = (match[1] if match else output).strip()
    text = re.sub(f"^{re.escape(prefix)}", "", text, flags=re.IGNORECASE)
    return text.strip()


def parse_generation(generation: str, prefix: str = ANSWER_PREFIX) -> str:
    """The answer in a model's generation as MMLongBench reads it: its eval prefixes the
    prompt's prefill ("Answer:") to the generation, then parses (eval.py, run_test). So
    "... Final answer: 10" parses to the whole generation, not "10"."""
    return parse_output(prefix + generation, prefix)


def clean_number_string(value: object) -> str:
    """MMLongBench's cleaning before reading a number: units, quotes, $, £ and % go."""
    text = str(value).lower().strip().replace(",", "")
    for pattern in _UNIT_PATTERNS:
        text = pattern.sub("", text).strip()
    text = _EDGE_QUOTE.sub("", text).strip()
    for symbol in ("$", "£", "%"):
        text = text.strip().strip(symbol).strip()
    return text


def needs_exact_match(text: str) -> bool:
    """Whether a string answer is only right when it appears verbatim (URL, date, email...)."""
    return any(pattern.search(text) for pattern in _EXACT_MATCH_PATTERNS)


def _number(value: object) -> Number | None:
    """A whole answer string as MMLongBench reads it: cleaned, then one number or None."""
    return parse_number(clean_number_string(value), reading=Reading.COMMAS_DROPPED)


def _numbers_in(prediction: str) -> list[Number]:
    """Every number MMLongBench finds in a cleaned prediction."""
    cleaned = clean_number_string(prediction)
    return [span.value for span in find_numbers(cleaned, reading=Reading.COMMAS_DROPPED)]


def _reference_number(reference: object, answer_format: AnswerFormat) -> Number:
    number = _number(reference)
    if number is None:
        raise ValueError(f"answer {reference!r} is marked {answer_format.value} but is no number")
    return number


def string_type(value: str) -> AnswerFormat:
    """How MMLongBench reads a list item given as a string: Integer, Float or String."""
    number = _number(value)
    if number is None:
        return AnswerFormat.STRING
    whole = number == int(number) and "%" not in value
    return AnswerFormat.INTEGER if whole else AnswerFormat.FLOAT


def float_matches(reference: float, prediction: float) -> bool:
    """1% relative tolerance against the answer, the answer / 100 and the answer x 100."""
    return any(
        isclose(candidate, prediction, rel_tol=0.01)
        for candidate in (reference / 100, reference, reference * 100)
    )


def _integer_score(reference: object, prediction: str) -> float:
    expected = _reference_number(reference, AnswerFormat.INTEGER)
    if int(expected) != expected:
        raise ValueError(f"answer {reference!r} is marked Integer but is not a whole number")
    found = _numbers_in(prediction)
    return float(any(int(expected) == int(number) for number in found if int(number) == number))


def _float_score(reference: object, prediction: str) -> float:
    expected = _reference_number(reference, AnswerFormat.FLOAT)
    return float(any(float_matches(expected, number) for number in _numbers_in(prediction)))


def _string_score(reference: str, prediction: str) -> float:
    if needs_exact_match(reference):
        return float(reference in prediction)
    return token_f1(prediction, reference)


def list_items(reference: object) -> list[object]:
    """A List answer as items: a list as is, or MMLongBench's JSON string."""
    if isinstance(reference, list | tuple):
        return list(reference)
    if isinstance(reference, str):
        try:
            items = json.loads(reference)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"List answer {reference!r} is not a JSON list ({error.msg})"
            ) from None
        if isinstance(items, list):
            return items
    raise ValueError(f"List answer {reference!r} is not a list")


def merged_list(reference: object) -> list[tuple[object, AnswerFormat]]:
    """The greedy merge: plain-string items joined into one leading item, the rest kept,
    each with the format it is scored by."""
    items = list_items(reference)
    merge = [
        isinstance(item, str)
        and string_type(item) is AnswerFormat.STRING
        and not needs_exact_match(item)
        for item in items
    ]
    merged = " ".join(str(item) for item, flag in zip(items, merge, strict=True) if flag).strip()
    if merged:
        items = [merged] + [item for item, flag in zip(items, merge, strict=True) if not flag]
    typed: list[tuple[object, AnswerFormat]] = []
    for item in items:
        if isinstance(item, list):
            raise ValueError(f"List answer {reference!r} nests a list")
        if isinstance(item, bool) or not isinstance(item, int | float):
            typed.append((item, string_type(str(item))))
        elif isinstance(item, int):
            typed.append((item, AnswerFormat.INTEGER))
        else:
            typed.append((item, AnswerFormat.FLOAT))
    return typed


def score_answer(reference: object, prediction: str, answer_format: AnswerFormat | str) -> float:
    """MMLongBench v1.0 rule score in [0, 1] of a parsed ``prediction`` against ``reference``."""
    answer_format = AnswerFormat(answer_format)
    if answer_format is AnswerFormat.INTEGER:
        return _integer_score(reference, prediction)
    if answer_format is AnswerFormat.FLOAT:
        return _float_score(reference, prediction)
    if answer_format in (AnswerFormat.STRING, AnswerFormat.NONE):
        return _string_score(str(reference), prediction)
    items = merged_list(reference)
    return sum(score_answer(item, prediction, kind) for item, kind in items) / len(items)


def score_output(
    reference: object, output: str, answer_format: AnswerFormat | str
) -> tuple[float, str]:
    """Score a model's generation as MMLongBench does (parse_generation, then the rule
    score). Returns (score, parsed answer)."""
    parsed = parse_generation(output)
    return score_answer(reference, parsed, answer_format), parsed


def is_certain_match(reference: object, prediction: str, answer_format: AnswerFormat | str) -> bool:
    """True when a rule alone proves the prediction right, so an LLM judge adds nothing:
    an exact number, a normalised exact string, an exact "Not answerable", or a list whose
    normalised items equal the answer's. Never claims a prediction wrong."""
    answer_format = AnswerFormat(answer_format)
    text = prediction.strip().rstrip(".").strip()
    if answer_format in (AnswerFormat.INTEGER, AnswerFormat.FLOAT):
        # Only a prediction that is one plain number and nothing else ("1e3" is two numbers).
        predicted = clean_number_string(text)
        spans = list(find_numbers(predicted, reading=Reading.COMMAS_DROPPED))
        if len(spans) != 1 or (spans[0].start, spans[0].end) != (0, len(predicted)):
            return False
        return spans[0].value == _number(reference)
    if answer_format is AnswerFormat.LIST:
        items = _prediction_items(text)
        if items is None:
            return False
        expected = [normalize_answer(str(item)) for item in list_items(reference)]
        return sorted(normalize_answer(str(item)) for item in items) == sorted(expected)
    normalized = normalize_answer(text)
    return bool(normalized) and normalized == normalize_answer(str(reference))


def _prediction_items(text: str) -> Sequence[object] | None:
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        return None
    return items if isinstance(items, list) else None
