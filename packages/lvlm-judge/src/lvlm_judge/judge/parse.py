"""Reading judge replies exactly as MMLongBench v1.1 does (its utils.py: parse_judge_output,
parse_list_judge_output, robust_json_extraction, eval_docqa_score_with_llm_judge and
eval_docqa_list_score_with_llm_judge).

Single answers: the first "[Score]: <digits> point(s)" wins, as that integer; else the JSON
object's answer_score; else 0. Neither is clamped: the prompt asks for 0 or 1, and a judge
that answers 7 (or -1 in the JSON) puts 7 (or -1) into the mean, there as here. Such a score
is flagged ``in_range=False`` so it is counted.
List answers: with both student_answer_count and covered_count present and covered > 0, the
F1 of covered/reference (recall) and covered/student (precision), clamped to [0, 1]; covered
0 or less gives 0; a missing key gives 0.
The JSON object is the one after "[JSON]:"; when it is cut off or malformed, each key is
looked up on its own as "key": number anywhere in the reply.

Where MMLongBench's code raises (a count of 0 students with covered > 0, an empty reference)
or returns what its mean cannot take (a string, null, a list), the reply scores 0 and is
flagged ``parsed=False`` (VLMEvalKit's port records such a reply as 0 with an error); so is
a value that is not finite.
"""

from __future__ import annotations

import json
import math
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
    in_range: bool = field(default=True, metadata={"doc": "False for a score outside [0, 1]."})


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
    """A JSON value as MMLongBench's arithmetic takes it (numbers, booleans), else None."""
    if not isinstance(value, bool | int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too long for a float
        return None
    return number if math.isfinite(number) else None


def _unscorable(rationale: str, reply: str) -> JudgeVerdict:
    return JudgeVerdict(0.0, rationale or reply.strip()[:500], parsed=False)


def parse_single_verdict(reply: str) -> JudgeVerdict:
    rationale_match = _RATIONALE.search(reply)
    rationale = rationale_match.group(1).strip() if rationale_match else ""
    score_line = _SCORE_LINE.search(reply)
    if score_line:
        line_score = _number(int(score_line.group(1)))
        if line_score is None:
            return _unscorable(rationale, reply)
        score = line_score
    else:
        data = extract_json(reply, ["answer_score"])
        if "answer_score" not in data:
            return _unscorable(rationale, reply)  # MMLongBench: 0.0
        number = _number(data["answer_score"])
        if number is None:
            return _unscorable(rationale, reply)
        score = number
    return JudgeVerdict(score, rationale, in_range=0.0 <= score <= 1.0)


def list_f1(student_count: float, covered_count: float, reference_count: int) -> float | None:
    """MMLongBench's list score: 0 when nothing is covered, else the F1 of covered/reference
    (recall) and covered/student (precision) clamped to [0, 1]; None where its code divides
    by zero."""
    if covered_count <= 0:
        return 0.0
    if reference_count == 0 or student_count == 0:
        return None
    recall = covered_count / reference_count
    precision = covered_count / student_count
    if recall + precision == 0:
        return None
    return max(min(2 * recall * precision / (recall + precision), 1.0), 0.0)


def parse_list_verdict(reply: str, reference_count: int) -> JudgeVerdict:
    rationale_match = _LIST_RATIONALE.search(reply)
    rationale = rationale_match.group(1).strip() if rationale_match else ""
    data = extract_json(reply, ["student_answer_count", "covered_count"])
    if "student_answer_count" not in data or "covered_count" not in data:
        return _unscorable(rationale, reply)  # MMLongBench: 0.0
    student = _number(data["student_answer_count"])
    covered = _number(data["covered_count"])
    if student is None or covered is None:
        return _unscorable(rationale, reply)
    score = list_f1(student, covered, reference_count)
    if score is None:
        return _unscorable(rationale, reply)
    return JudgeVerdict(score, rationale)
