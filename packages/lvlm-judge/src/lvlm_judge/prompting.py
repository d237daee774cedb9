"""Prompts in MMLongBench's layout, from templates: ours, or MMLongBench's own read at run time.

The layout (MMLongBench data.py, load_doc_qa / load_mm_niah_*): a user template with
``{context}`` and ``{question}``; for document QA the context is one page template per page
(``Document <id>: <image>``, ids cut to 15 characters) joined by blank lines, and the question
gets a prefix naming the document; for MM-NIAH the context is the haystack text with its
``<image>`` places. The reply starts with the prefill ("Answer:"). Every ``<image>`` of the
filled template takes the item's next page or image, in order.

``lvlm-judge-v1`` (and its page-index variant) is our own wording, shipped here. ``mmlb-v1.1``
is MMLongBench's wording, read from the user's checkout (lvlm_judge.mmlb_source); this package
ships none of it. The format's name is stored with every prediction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TypeVar

from mmprolong_schemas import EvalItem, ImagePart, NiahMetric, PagePart, TextPart

ANSWER_PREFILL = "Answer:"
DOC_ID_CHARS = 15
IMAGE = "<image>"
"""Where an image stands in MMLongBench's templates and in its MM-NIAH texts."""
OUR_FORMAT = "lvlm-judge-v1"
OUR_PAGE_INDEX_FORMAT = "lvlm-judge-v1-page-index"
MMLB_FORMAT = "mmlb-v1.1"
PROMPT_FORMATS = (OUR_FORMAT, OUR_PAGE_INDEX_FORMAT, MMLB_FORMAT)
NIAH_KINDS = ("text", "text_count", "image_count", "image_mc")
"""Which MM-NIAH template an item takes: MMLongBench uses one for every text-needle task,
one for image counting and one for image multiple choice (data.py, load_data)."""

_ANSWER_LAYOUT = "Use this layout:\nAnswer: [{what}]"
DOC_INSTRUCTION = (
    "Below are the pages of one or more documents, followed by a question. Reply as briefly as "
    "the question allows: a number, a name, a short phrase or one sentence. If the pages do not "
    "contain what the question asks for, reply 'Not answerable.' "
    + _ANSWER_LAYOUT.format(what="your answer")
)
_SUB_EM = (
    "Below is a long context of text and images, followed by a question about it. Answer "
    "from the context. " + _ANSWER_LAYOUT.format(what="your answer")
)
_COUNT = (
    "Below is a long context of text and images, followed by a counting question. Reply "
    "with a list of counts, one per item asked about, like [1, 0, 2]. "
    + _ANSWER_LAYOUT.format(what="list")
)
_MC = (
    "Below is a long context of text and images, followed by a question with lettered "
    "options. Reply with the letter of the right option (A, B, ...). "
    + _ANSWER_LAYOUT.format(what="letter")
)
_USER = "{instruction}\n\n{{context}}\n\nQuestion: {{question}}"

_PAGE_NUMBER = re.compile(r"page[_-]?(\d+)|-(\d+)-\d+\.\w+$", re.IGNORECASE)

Segment = str | ImagePart | PagePart


@dataclass(frozen=True)
class PromptTemplates:
    """One prompt format. ``doc_page`` may use {doc_id} and {page_id}; ``doc_question``
    {doc_id}; every user template {context} and {question}."""

    name: str
    doc_user: str
    doc_page: str
    doc_question: str
    niah_user: dict[str, str]
    prefill: str = ANSWER_PREFILL
    source: str = "lvlm-judge"


OUR_TEMPLATES = PromptTemplates(
    name=OUR_FORMAT,
    doc_user=_USER.format(instruction=DOC_INSTRUCTION),
    doc_page="Document {doc_id:.15}: " + IMAGE,
    doc_question="Question about document {doc_id:.15}: ",
    niah_user={
        "text": _USER.format(instruction=_SUB_EM),
        "text_count": _USER.format(instruction=_COUNT),
        "image_count": _USER.format(instruction=_COUNT),
        "image_mc": _USER.format(instruction=_MC),
    },
)
OUR_PAGE_INDEX_TEMPLATES = PromptTemplates(
    name=OUR_PAGE_INDEX_FORMAT,
    doc_user=OUR_TEMPLATES.doc_user,
    doc_page="Document {doc_id:.15} (page {page_id}): " + IMAGE,
    doc_question=OUR_TEMPLATES.doc_question,
    niah_user=OUR_TEMPLATES.niah_user,
)
SHIPPED = {t.name: t for t in (OUR_TEMPLATES, OUR_PAGE_INDEX_TEMPLATES)}


def shipped_templates(prompt_format: str) -> PromptTemplates:
    """Our own templates by name; ``mmlb-v1.1`` needs the user's MMLongBench checkout."""
    if prompt_format == MMLB_FORMAT:
        raise ValueError(
            "prompt format mmlb-v1.1 is MMLongBench's own wording, read from your checkout: "
            "pass --mmlb-source DIR (a clone of github.com/EdinburghNLP/MMLongBench)"
        )
    if prompt_format not in SHIPPED:
        raise ValueError(f"unknown prompt format {prompt_format!r}; use one of {PROMPT_FORMATS}")
    return SHIPPED[prompt_format]


@dataclass(frozen=True)
class Prompt:
    """A user turn as text and images in order, and the start of the assistant's reply."""

    segments: list[Segment]
    prefill: str
    prompt_format: str
    question: str = ""
    """The question as the model saw it (document prefix included): what the judge gets."""

    @property
    def images(self) -> list[ImagePart | PagePart]:
        return [s for s in self.segments if not isinstance(s, str)]

    def text(self, placeholder: str = IMAGE) -> str:
        return "".join(s if isinstance(s, str) else placeholder for s in self.segments)


def page_label(part: ImagePart | PagePart, position: int) -> tuple[str, int]:
    """(document id, page number) shown for a page. MMLongBench reads the id from the image's
    folder (``image_path.split("/")[-2]``); the page number comes from "page<n>" or SlideVQA's
    "-<n>-1024.jpg" in the name, else the position (1-based)."""
    if isinstance(part, PagePart):
        return part.doc_id[:DOC_ID_CHARS], part.page
    path = PurePosixPath(part.path.replace("\\", "/"))
    doc_id = path.parent.name or path.stem
    match = _PAGE_NUMBER.search(path.name)
    number = int(match.group(1) or match.group(2)) if match else position + 1
    return doc_id[:DOC_ID_CHARS], number


Visual = TypeVar("Visual")


def interleave(
    text: str,
    visual: Sequence[Visual],
    where: str,
    what: str = "the text",
    error: type[ValueError] = ValueError,
) -> list[str | Visual]:
    """``text`` cut at each IMAGE with ``visual[i]`` in the i-th place, empty pieces dropped;
    a count of places other than ``len(visual)`` is an ``error`` naming ``where``."""
    pieces = text.split(IMAGE)
    if len(pieces) - 1 != len(visual):
        raise error(
            f"{where}: {what} has {len(pieces) - 1} {IMAGE} places but {len(visual)} images "
            "are listed"
        )
    out: list[str | Visual] = []
    for index, piece in enumerate(pieces):
        if piece:
            out.append(piece)
        if index < len(visual):
            out.append(visual[index])
    return out


def _fill(text: str, visual: list[ImagePart | PagePart], where: str) -> list[Segment]:
    return interleave(text, visual, where, what="the filled template")


def doc_question(item: EvalItem, templates: PromptTemplates) -> str:
    """The question as the model sees it, with the template's document prefix."""
    pages = [part for part in item.context if not isinstance(part, TextPart)]
    doc_name = item.doc_name or (page_label(pages[0], 0)[0] if pages else "")
    return templates.doc_question.format(doc_id=doc_name) + item.question


def doc_prompt(item: EvalItem, templates: PromptTemplates = OUR_TEMPLATES) -> Prompt:
    pages = [part for part in item.context if not isinstance(part, TextPart)]
    labels = []
    for position, part in enumerate(pages):
        doc_id, page = page_label(part, position)
        labels.append(templates.doc_page.format(doc_id=doc_id, page_id=page))
    question = doc_question(item, templates)
    text = templates.doc_user.format(context="\n\n".join(labels), question=question)
    return Prompt(_fill(text, pages, item.item_id), templates.prefill, templates.name, question)


def niah_kind(item: EvalItem) -> str:
    """The MM-NIAH template of an item: by needle modality (in the dataset name) and metric."""
    image_needles = item.dataset.endswith("-image") or item.metric is NiahMetric.MC_ACC
    if item.metric is NiahMetric.MC_ACC:
        return "image_mc"
    if item.metric is NiahMetric.SOFT_ACC:
        return "image_count" if image_needles else "text_count"
    return "text"


def niah_prompt(item: EvalItem, templates: PromptTemplates = OUR_TEMPLATES) -> Prompt:
    """The haystack (its text with <image> places), then the question, whose own <image>
    places take the context's trailing images (needles or option images), in order."""
    assert item.metric is not None
    question_images = item.question.count(IMAGE)
    visual = [part for part in item.context if not isinstance(part, TextPart)]
    positions = [i for i, part in enumerate(item.context) if not isinstance(part, TextPart)]
    split = positions[-question_images] if question_images else len(item.context)
    haystack = "".join(
        part.text if isinstance(part, TextPart) else IMAGE for part in item.context[:split]
    )
    text = templates.niah_user[niah_kind(item)].format(context=haystack, question=item.question)
    return Prompt(
        _fill(text, visual, item.item_id), templates.prefill, templates.name, item.question
    )


def build_prompt(item: EvalItem, templates: PromptTemplates | str = OUR_TEMPLATES) -> Prompt:
    """The prompt of ``item`` in a format: templates, or the name of one we ship."""
    if isinstance(templates, str):
        templates = shipped_templates(templates)
    return niah_prompt(item, templates) if item.metric else doc_prompt(item, templates)
