"""Reading judge replies the way MMLongBench v1.1 does.

Single answers: the "[Score]: x points" line wins; else the JSON object's answer_score; else 0.
List answers: F1 from student_answer_count and covered_count; covered 0 or a missing key -> 0.
The JSON object is read after the "[JSON]:" marker; when it is cut off or malformed, each key is
looked up on its own with a regular expression, so a truncated reply still yields what it holds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from mmprolong_schemas.numbers import parse_number

_RATIONALE = re.compile(r"\[Scoring Rationale\]:(.*?)(?=\[Score\]:|\[JSON\]:|$)", re.DOTALL)
_LIST_RATIONALE = re.compile(r"\[Rationale\]:(.*?)(?=\[JSON\]:|$)", re.DOTALL)
_SCORE_LINE = re.compile(r"\[Score\]:\s*(\d+)\s*points?")
_JSON_START = re.compile(r"\[JSON\]:.*?(\{)", re.DOTALL)


@dataclass(frozen=True)
class JudgeVerdict:
    score: float
    rationale: str
    parsed: bool = field(default=True, metadata={"doc": "False when the reply held no score."})


def extract_json(text: str, keys: list[str]) -> dict[str, object]:
    """The JSON object after "[JSON]:", else each of ``keys`` found as "key": number."""
    match = _JSON_START.search(text)
    if match:
        try:
            value, _ = json.JSONDecoder().raw_decode(text[match.start(1) :])
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    found: dict[str, object] = {}
    for key in keys:
        number = re.search(rf'"{re.escape(key)}"\s*:\s*(-?\d+(?:\.\d+)?)', text)
        if number:
            found[key] = parse_number(number.group(1))
    return found


def _number(value: object) -> float | None:
    """A JSON value or a reply's digits as a score; None when it is no number."""
    if isinstance(value, str):
        value = parse_number(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer too long for a float
        return None


def _clamp(score: float) -> float:
    return max(0.0, min(1.0, score))


def parse_single_verdict(reply: str) -> JudgeVerdict:
    rationale_match = _RATIONALE.search(reply)
    rationale = rationale_match.group(1).strip() if rationale_match else ""
    score_line = _SCORE_LINE.search(reply)
    line_score = _number(score_line.group(1)) if score_line else None
    if line_score is not None:
        return JudgeVerdict(_clamp(line_score), rationale)
    score = _number(extract_json(reply, ["answer_score"]).get("answer_score"))
    if score is not None:
        return JudgeVerdict(_clamp(score), rationale)
    return JudgeVerdict(0.0, rationale or reply.strip()[:500], parsed=False)


def list_f1(student_count: float, covered_count: float, reference_count: int) -> float:
    """F1 of covered/reference (recall) and covered/student (precision), within [0, 1]."""
    if covered_count <= 0 or student_count <= 0 or reference_count <= 0:
        return 0.0
    recall = covered_count / reference_count
    precision = covered_count / student_count
    return _clamp(2 * recall * precision / (recall + precision))


def parse_list_verdict(reply: str, reference_count: int) -> JudgeVerdict:
    rationale_match = _LIST_RATIONALE.search(reply)
    rationale = rationale_match.group(1).strip() if rationale_match else ""
    data = extract_json(reply, ["student_answer_count", "covered_count"])
    student = _number(data.get("student_answer_count"))
    covered = _number(data.get("covered_count"))
    if student is None or covered is None:
        return JudgeVerdict(0.0, rationale or reply.strip()[:500], parsed=False)
    return JudgeVerdict(list_f1(student, covered, reference_count), rationale)
