"""The teacher prompt: one core template, a task description and a restriction per task,
two in-context exemplars from a small curated pool, and the segment's page images.

The text is ours. It carries the recipe's requirements: an explicit segment anchor in every
question, the page-index rule (the index we give, not the number printed on the page), the
scope constraint, the four answer formats and the four evidence types. Changing any text here
changes ``PROMPT_VERSION``, a digest of every text here computed at import (never kept by
hand), which is recorded on every QAPair and is part of every teacher request's cache key, so
replies to an old prompt are never reused for a new one.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mmprolong_schemas import AnswerFormat, EvidenceSource, PagePart, Segment, Task, TextPart

SYSTEM_PROMPT = (
    "You write question-answer pairs for training document-understanding models. You are "
    "shown consecutive pages of one document and write exactly one question that a careful "
    "reader can answer from those pages alone, together with its answer and the evidence."
)

TASK_DESCRIPTIONS: dict[Task, str] = {
    Task.EXTRACT_SINGLE: (
        "Fact extraction from one page. Ask for a precise piece of information that is "
        "printed in the pages: a name, date, place, quantity, a cell of a table, an item of a "
        "list or a step of a procedure. The answer must be readable directly from the text, "
        "a table or a layout element, without calculation."
    ),
    Task.EXTRACT_MULTI: (
        "Fact extraction across pages. Ask for information that has to be collected from "
        "several of the pages, such as the values a table continues on the next page, the "
        "items a list spreads over two pages, or the same kind of figure reported on "
        "different pages. The answer is read from the pages, not calculated."
    ),
    Task.REASONING: (
        "Quantitative reasoning. Ask a question whose answer needs an operation on facts from "
        "the pages: a calculation (sum, difference, ratio, average), a comparison (larger, "
        "smaller, highest, lowest, trend) or a count of items meeting a condition. The answer "
        "must not appear verbatim anywhere in the pages."
    ),
}

TASK_RESTRICTIONS: dict[Task, str] = {
    Task.EXTRACT_SINGLE: (
        "- One page only: choose a single page of those shown and ask about it alone. Its "
        "answer must follow from that page without looking at any other page, and "
        "evidence_pages must list exactly that one page."
    ),
    Task.EXTRACT_MULTI: (
        "- Two or more pages: the answer must combine information printed on at least two "
        "different pages, and evidence_pages must list each of them. Only when the pages "
        "share no information worth linking may you ask about one page; then write "
        '"single-page fallback" in the evidence description.'
    ),
    Task.REASONING: (
        "- Two or more facts: the question must need at least two separate pieces of "
        "information combined by the operation, found on at least two different pages "
        "listed in evidence_pages. Only when no two pages hold related numbers or items may "
        'both facts come from one page; then write "single-page fallback" in the evidence '
        "description."
    ),
}

CORE_TEMPLATE = """\
TASK
{task_description}

RULES
- The question must be answerable with certainty from the pages shown, with no outside \
knowledge. Do not ask about something the pages do not contain.
- Anchor the question to where it applies, because it will later be asked about the whole \
document: name the page(s) ("on Page 12", "on Pages 12 and 14", "on Pages 12-15") or the \
section by its title ("in the Methods section"). Never write "in the document" or "in the \
whole file".
- Page indices: use the index given before each image ("Page 12:"), never the page number \
printed inside the image, in the question, in the evidence description and in evidence_pages.
{task_restriction}

EVIDENCE TYPES (use these names in evidence_sources)
- Text: running text such as paragraphs and list items.
- Layout: text whose position gives it meaning: titles, headings, headers, footers, captions.
- Figure: charts, diagrams, photographs and other images.
- Table: values arranged in rows and columns.

ANSWER FORMATS (answer_format)
- String: a name, phrase or short sentence, e.g. "Annual Review 2021".
- Integer: a whole number such as a count or a year, e.g. 42.
- Float: a number with a fractional part, a percentage or an amount, e.g. 12.5.
- List: several items, e.g. ["alpha", "beta"].

REPLY FORMAT
First write "Evidence:" and describe, in one or more paragraphs, the text and visual elements \
that support the answer, naming each element's evidence type and page index. Then write \
"JSON:" followed by one JSON object with exactly these keys:
{{"question": "...", "answer": ..., "answer_format": "String|Integer|Float|List", \
"evidence_pages": [page indices], "evidence_sources": ["Text|Layout|Figure|Table", ...]}}

{exemplars}
CURRENT PAGES
The images below are Pages {first}-{last} of the document{sections}. Write one question \
for the task above about these pages only, anchored as the rules require."""


PAGE_LABEL = "Page {page}:"
CLOSING = "Now write the evidence description and the JSON object."


@dataclass(frozen=True)
class Exemplar:
    task: Task
    pages: str
    evidence: str
    reply: dict[str, Any]

    def render(self, number: int) -> str:
        return (
            f"EXAMPLE {number} (pages {self.pages} of another document)\n"
            f"Evidence: {self.evidence}\nJSON: {json.dumps(self.reply, ensure_ascii=False)}\n"
        )


EXEMPLARS: tuple[Exemplar, ...] = (
    Exemplar(
        Task.EXTRACT_SINGLE,
        "31-40",
        "Table on Page 34: the row 'Pump B' of the table 'Maintenance intervals' gives "
        "'every 1,500 hours' in the column 'Interval'.",
        {
            "question": "According to the maintenance intervals table on Page 34, how often is "
            "Pump B serviced?",
            "answer": "every 1,500 hours",
            "answer_format": "String",
            "evidence_pages": [34],
            "evidence_sources": ["Table"],
        },
    ),
    Exemplar(
        Task.EXTRACT_SINGLE,
        "5-16",
        "Layout on Page 9: the caption below the map reads 'Figure 3. Survey sites, 2019'. "
        "Figure on Page 9: the map marks seven numbered sites.",
        {
            "question": "In which year were the survey sites shown in the map on Page 9 recorded?",
            "answer": 2019,
            "answer_format": "Integer",
            "evidence_pages": [9],
            "evidence_sources": ["Layout", "Figure"],
        },
    ),
    Exemplar(
        Task.EXTRACT_MULTI,
        "18-27",
        "Text on Page 19 names Dr. Amara Osei as the lead of the field study; Text on Page 24 "
        "names Lukas Brandt as the lead of the laboratory analysis.",
        {
            "question": "Within the Study Team section on Pages 18-27, who leads the field study "
            "and the laboratory analysis?",
            "answer": ["Amara Osei", "Lukas Brandt"],
            "answer_format": "List",
            "evidence_pages": [19, 24],
            "evidence_sources": ["Text"],
        },
    ),
    Exemplar(
        Task.EXTRACT_MULTI,
        "40-52",
        "Table on Page 41 starts 'Table 6. Licensed sites' with Aberdeen and Bergen; the table "
        "continues on Page 42 with Cork.",
        {
            "question": "Which sites are listed in Table 6 on Pages 41 and 42?",
            "answer": ["Aberdeen", "Bergen", "Cork"],
            "answer_format": "List",
            "evidence_pages": [41, 42],
            "evidence_sources": ["Table", "Layout"],
        },
    ),
    Exemplar(
        Task.REASONING,
        "60-71",
        "Table on Page 62 gives 2020 revenue of 418.2 million; Table on Page 67 gives 2021 "
        "revenue of 455.9 million. The difference is 455.9 - 418.2 = 37.7.",
        {
            "question": "By how many million did revenue grow from 2020 (Page 62) to 2021 "
            "(Page 67)?",
            "answer": 37.7,
            "answer_format": "Float",
            "evidence_pages": [62, 67],
            "evidence_sources": ["Table"],
        },
    ),
    Exemplar(
        Task.REASONING,
        "3-14",
        "Figure on Page 6: the bar chart shows 12 participating schools in the north region; "
        "Figure on Page 11: the chart shows 9 in the south region. North has more.",
        {
            "question": "Comparing the charts on Pages 6 and 11, which region has more "
            "participating schools, north or south?",
            "answer": "north",
            "answer_format": "String",
            "evidence_pages": [6, 11],
            "evidence_sources": ["Figure"],
        },
    ),
)


def reply_json_schema() -> dict[str, Any]:
    """JSON schema of a reply for engines with structured output. The evidence description
    comes first so the model still writes its evidence before the answer."""
    scalar = {"type": ["string", "number", "integer"]}
    return {
        "type": "object",
        "properties": {
            "evidence_description": {"type": "string"},
            "question": {"type": "string"},
            "answer": {"anyOf": [scalar, {"type": "array", "items": scalar}]},
            "answer_format": {
                "type": "string",
                "enum": [f.value for f in AnswerFormat if f is not AnswerFormat.NONE],
            },
            "evidence_pages": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
            "evidence_sources": {
                "type": "array",
                "items": {"type": "string", "enum": [s.value for s in EvidenceSource]},
                "minItems": 1,
            },
        },
        "required": [
            "evidence_description",
            "question",
            "answer",
            "answer_format",
            "evidence_pages",
            "evidence_sources",
        ],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Prompt:
    """A teacher request's content: system text, then text and page parts of the user turn."""

    version: str
    task: Task
    segment: Segment
    system: str
    parts: tuple[TextPart | PagePart, ...]

    @property
    def page_parts(self) -> list[PagePart]:
        return [p for p in self.parts if isinstance(p, PagePart)]

    @property
    def text(self) -> str:
        """All text of the user turn, pages shown as [page N]: for logs and text-only tests."""
        return "\n".join(
            p.text if isinstance(p, TextPart) else f"[page {p.page}]" for p in self.parts
        )


def choose_exemplars(task: Task, key: str, count: int = 2) -> list[Exemplar]:
    """``count`` exemplars of ``task`` (topped up from other tasks), chosen by ``key``."""
    rng = random.Random(f"exemplars:{key}")
    same = [e for e in EXEMPLARS if e.task is task]
    other = [e for e in EXEMPLARS if e.task is not task]
    rng.shuffle(same)
    rng.shuffle(other)
    return (same + other)[:count]


def build_prompt(
    segment: Segment, task: Task, seed: int = 0, *, exemplars: int = 2, page_labels: bool = True
) -> Prompt:
    """The prompt for one (segment, task); exemplars are drawn by (seed, segment, task)."""
    if task not in TASK_DESCRIPTIONS:
        raise ValueError(f"task {task.value!r} is not a long-document VQA task")
    chosen = choose_exemplars(task, f"{seed}:{segment.segment_id}:{task.value}", exemplars)
    rendered = "".join(e.render(n) + "\n" for n, e in enumerate(chosen, start=1))
    titles = segment.section_titles
    sections = f", covering the section(s) {'; '.join(repr(t) for t in titles)}" if titles else ""
    head = CORE_TEMPLATE.format(
        task_description=TASK_DESCRIPTIONS[task],
        task_restriction=TASK_RESTRICTIONS[task],
        exemplars=rendered,
        first=segment.pages.first,
        last=segment.pages.last,
        sections=sections,
    )
    parts: list[TextPart | PagePart] = [
        TextPart(text=head),
        *page_parts(segment.doc_id, segment.pages.pages, labels=page_labels),
        TextPart(text=CLOSING),
    ]
    return Prompt(PROMPT_VERSION, task, segment, SYSTEM_PROMPT, tuple(parts))


def page_parts(doc_id: str, pages: Iterable[int], *, labels: bool) -> list[TextPart | PagePart]:
    """Each page as an image part, preceded by its ``PAGE_LABEL`` text when ``labels``: the
    one way teacher prompts and training samples put pages in a message."""
    parts: list[TextPart | PagePart] = []
    for page in pages:
        if labels:
            parts.append(TextPart(text=PAGE_LABEL.format(page=page)))
        parts.append(PagePart(doc_id=doc_id, page=page))
    return parts


def _prompt_version() -> str:
    """'qasynth-qa-' and a digest of every text a prompt is built from."""
    texts = [
        SYSTEM_PROMPT,
        CORE_TEMPLATE,
        PAGE_LABEL,
        CLOSING,
        *(f"{task.value}:{text}" for task, text in sorted(TASK_DESCRIPTIONS.items())),
        *(f"{task.value}:{text}" for task, text in sorted(TASK_RESTRICTIONS.items())),
        *(f"{e.task.value}:{e.render(0)}" for e in EXEMPLARS),
        json.dumps(reply_json_schema(), sort_keys=True),
    ]
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    return f"qasynth-qa-{digest[:12]}"


PROMPT_VERSION = _prompt_version()
