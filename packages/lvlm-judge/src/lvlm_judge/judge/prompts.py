"""Our wording of the two judge tasks of MMLongBench v1.1.

A single answer (String, Integer, Float, "Not answerable") gets a binary verdict; a List answer
gets two counts, the student's items and the reference items they cover, turned into F1 by the
caller. Both ask for a rationale first and a JSON object last, so a reply cut off early still
carries a parseable score line. Changing the wording changes PROMPT_VERSION, which is part of
every cache key.
"""

from __future__ import annotations

from dataclasses import dataclass

PROMPT_VERSION = "lvlm-judge-2025.1"

SINGLE_ANSWER_TASK = """\
You grade one answer to a question about a long document. Compare the student's answer with \
the reference answer and decide whether it is correct.

Grading rules:
- Correct (1 point): the student's answer states the same fact, number, name or conclusion as \
the reference. Wording, letter case, units written out or abbreviated, and harmless extra \
context do not matter. Numbers may differ by rounding (within about 1%), and a percentage may \
be written as a fraction (25% = 0.25).
- Incorrect (0 points): a different value, a different entity, a hedge between several \
candidates, a refusal, or an answer that contradicts the reference.
- If the reference is "Not answerable", the student earns 1 point only for saying that the \
document does not let them answer; any concrete answer earns 0. If the reference is a real \
answer, saying "Not answerable" earns 0.

Reply in exactly this layout:
[Scoring Rationale]: one or two sentences on why.
[Score]: 0 points or 1 points
[JSON]: {"answer_score": 0 or 1}
"""

SINGLE_ANSWER_CASE = """
Question: {question}
Reference answer: {reference}
Student answer: {prediction}
"""

LIST_ANSWER_TASK = """\
You grade a list answer to a question about a long document. The reference answer is a list \
of items. Count two things:
- student_answer_count: how many distinct items the student's answer gives (count the items \
the student actually asserts; a restated item counts once).
- covered_count: how many reference items are matched by some item of the student's answer, \
with the same tolerance as a human grader: wording, case and units may differ, numbers may \
differ by rounding. Each reference item is covered at most once.

If the student gives no usable item, both counts may be 0.

Reply in exactly this layout:
[Rationale]: which reference items are covered and which student items are extra.
[JSON]: {"student_answer_count": <int>, "covered_count": <int>}
"""

LIST_ANSWER_CASE = SINGLE_ANSWER_CASE


@dataclass(frozen=True)
class JudgePrompts:
    """The judge's request: task text + case template per answer kind, and its parameters.
    ``temperature`` None sends none (the server's default), as MMLongBench's request does."""

    single_task: str
    single_case: str
    list_task: str
    list_case: str
    version: str
    max_tokens: int
    temperature: float | None = 0.0
    source: str = "lvlm-judge"

    def single_prompt(self, question: str, reference: str, prediction: str) -> str:
        case = self.single_case.format(
            question=question, reference=reference, prediction=prediction
        )
        return self.single_task + case

    def list_prompt(self, question: str, reference: str, prediction: str) -> str:
        case = self.list_case.format(question=question, reference=reference, prediction=prediction)
        return self.list_task + case


DEFAULT_MAX_TOKENS = 1024
"""Room for a rationale and the JSON in our wording."""

OUR_JUDGE = JudgePrompts(
    SINGLE_ANSWER_TASK,
    SINGLE_ANSWER_CASE,
    LIST_ANSWER_TASK,
    LIST_ANSWER_CASE,
    version=PROMPT_VERSION,
    max_tokens=DEFAULT_MAX_TOKENS,
)
