"""MMLongBench-Doc's aggregate scores: accuracy and the generalised F1.

The generalised F1 balances answerable and unanswerable questions: recall is the mean score
over questions whose answer is not "Not answerable"; precision divides the same score sum by
the number of predictions that are not "Not answerable" (the reference code's numerator, kept
as is). A model that always abstains gets precision 0 and F1 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmprolong_schemas.qa import NOT_ANSWERABLE


@dataclass(frozen=True)
class ScoredAnswer:
    """What the aggregate needs of one item: its reference, parsed prediction and score."""

    answer: object
    prediction: str
    score: float


def _is_not_answerable(value: object) -> bool:
    return isinstance(value, str) and value == NOT_ANSWERABLE


def accuracy(items: Sequence[ScoredAnswer]) -> float:
    """Mean score; 0 for no items."""
    return sum(item.score for item in items) / len(items) if items else 0.0


def generalized_f1(items: Sequence[ScoredAnswer]) -> float:
    """MMLongBench-Doc's F1 of answerable recall against predicted-answerable precision."""
    answerable = [item for item in items if not _is_not_answerable(item.answer)]
    predicted_answerable = [item for item in items if not _is_not_answerable(item.prediction)]
    if not answerable or not predicted_answerable:
        return 0.0
    total = sum(item.score for item in answerable)
    recall = total / len(answerable)
    precision = total / len(predicted_answerable)
    return 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0
