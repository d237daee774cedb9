"""Prompts in MMLongBench's v1.1 layout, in our own words.

Document QA: an instruction (short answer, "Not answerable." when the pages do not say), one
"Document <id>: <image>" line per page, the question prefixed with "Based on Document <id>, ",
and "Answer:" as the start of the model's reply. The page-index variant labels each page
"Document <id> (page <n>):". MM-NIAH: an instruction for the task, the interleaved haystack,
the question. Ids are cut to 15 characters, as MMLongBench does. The format's name is stored
with every prediction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from mmprolong_schemas import EvalItem, ImagePart, NiahMetric, PagePart, Part, TextPart

ANSWER_PREFILL = "Answer:"
DOC_ID_CHARS = 15
PROMPT_FORMATS = ("mmlb-v1.1", "mmlb-v1.1-page-index")

DOC_INSTRUCTION = (
    "Below are the pages of one or more documents, followed by a question. Reply as briefly as "
    "the question allows: a number, a name, a short phrase or one sentence. If the pages do not "
    "contain what the question asks for, reply 'Not answerable.' Use this layout:\n"
    "Answer: [your answer]"
)
NIAH_INSTRUCTIONS = {
    NiahMetric.SUB_EM: (
        "Below is a long context of text and images, followed by a question about it. Answer "
        "from the context. Use this layout:\nAnswer: [your answer]"
    ),
    NiahMetric.MC_ACC: (
        "Below is a long context of text and images, followed by a question with lettered "
        "options. Reply with the letter of the right option (A, B, ...). Use this layout:\n"
        "Answer: [letter]"
    ),
    NiahMetric.SOFT_ACC: (
        "Below is a long context of text and images, followed by a counting question. Reply "
        "with a list of counts, one per item asked about, like [1, 0, 2]. Use this layout:\n"
        "Answer: [list]"
    ),
}

_PAGE_NUMBER = re.compile(r"page[_-]?(\d+)", re.IGNORECASE)

Segment = str | ImagePart | PagePart


@dataclass(frozen=True)
class Prompt:
    """A user turn as text and images in order, and the start of the assistant's reply."""

    segments: list[Segment]
    prefill: str
    prompt_format: str

    @property
    def images(self) -> list[ImagePart | PagePart]:
        return [s for s in self.segments if not isinstance(s, str)]

    def text(self, placeholder: str = "<image>") -> str:
        return "".join(s if isinstance(s, str) else placeholder for s in self.segments)


def page_label(part: ImagePart | PagePart, position: int) -> tuple[str, int]:
    """(document id, page number) shown for a page. Image files follow MMLongBench's layout
    <root>/<doc>/<...page12.png>; a name without a page number gets its position (1-based)."""
    if isinstance(part, PagePart):
        return part.doc_id[:DOC_ID_CHARS], part.page
    path = PurePosixPath(part.path.replace("\\", "/"))
    doc_id = path.parent.name or path.stem
    match = _PAGE_NUMBER.search(path.name)
    return doc_id[:DOC_ID_CHARS], int(match.group(1)) if match else position + 1


def _merge(segments: list[Segment]) -> list[Segment]:
    merged: list[Segment] = []
    for segment in segments:
        if isinstance(segment, str) and merged and isinstance(merged[-1], str):
            merged[-1] += segment
        elif segment != "":
            merged.append(segment)
    return merged


def doc_prompt(item: EvalItem, prompt_format: str = "mmlb-v1.1") -> Prompt:
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt format {prompt_format!r}; use one of {PROMPT_FORMATS}")
    segments: list[Segment] = [DOC_INSTRUCTION, "\n\n"]
    pages = [part for part in item.context if not isinstance(part, TextPart)]
    for position, part in enumerate(pages):
        doc_id, page = page_label(part, position)
        label = f"Document {doc_id}"
        if prompt_format == "mmlb-v1.1-page-index":
            label += f" (page {page})"
        if position:
            segments.append("\n\n")
        segments += [f"{label}: ", part]
    doc_name = (item.doc_name or (page_label(pages[0], 0)[0] if pages else ""))[:DOC_ID_CHARS]
    question = f"Based on Document {doc_name}, answer the following question. {item.question}"
    segments += ["\n\nQuestion: ", question]
    return Prompt(_merge(segments), ANSWER_PREFILL, prompt_format)


def niah_prompt(item: EvalItem, prompt_format: str = "mmlb-v1.1") -> Prompt:
    """The haystack, then the question; the question's <image> places take the context's
    trailing images (needles or option images), in order."""
    assert item.metric is not None
    question_images = item.question.count("<image>")
    visual = [i for i, part in enumerate(item.context) if not isinstance(part, TextPart)]
    split = visual[-question_images] if question_images else len(item.context)
    segments: list[Segment] = [NIAH_INSTRUCTIONS[item.metric], "\n\n"]
    segments += [_segment(part) for part in item.context[:split]]
    segments.append("\n\nQuestion: ")
    tail = iter(item.context[split:])
    pieces = item.question.split("<image>")
    for index, piece in enumerate(pieces):
        segments.append(piece)
        if index < len(pieces) - 1:
            segments.append(_segment(next(tail)))
    return Prompt(_merge(segments), ANSWER_PREFILL, prompt_format)


def _segment(part: Part) -> Segment:
    return part.text if isinstance(part, TextPart) else part


def build_prompt(item: EvalItem, prompt_format: str = "mmlb-v1.1") -> Prompt:
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt format {prompt_format!r}; use one of {PROMPT_FORMATS}")
    return niah_prompt(item, prompt_format) if item.metric else doc_prompt(item, prompt_format)
