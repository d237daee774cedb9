"""VTCBench's containsAll score, restated from its definition.

VTCBench (github.com/Moenupa/VTCBench, docs/DATA.md and src/locoxim/metric.py ``calc_metrics``)
scores its Retrieval and Reasoning splits with containsAll: after dropping ``<think>...</think>``
blocks and surrounding whitespace from the response, and stripping each gold answer (taken as
text), the share of gold answers that occur in the response as substrings (case-sensitive).
Its Memory split is scored differently (ROUGE-L upstream; the paper uses an LLM judge) and is
not scored here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def contains_all(response: str, gold_answers: Sequence[object]) -> float:
    """Share of ``gold_answers`` contained in ``response`` (1.0 when all are)."""
    golds = [str(answer).strip() for answer in gold_answers]
    if not golds:
        raise ValueError("containsAll needs at least one gold answer")
    text = _THINK.sub("", response).strip()
    return sum(gold in text for gold in golds) / len(golds)
