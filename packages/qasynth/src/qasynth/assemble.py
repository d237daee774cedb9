"""Training samples: a QA pair put back into its whole document, OCR baselines, short data.

A long-document sample shows every page of the document as a PagePart (rendered at training
time, never stored), optionally preceded by "Page N:" text, then the question; the answer is
``target``, the only text that receives loss. ``cut_after`` marks the last page the question
and target depend on (the segment's last page, the last needle page); OCR-full samples
transcribe every page and cannot be cut. The chat layout is Qwen2.5-VL's: one user turn
holding images and text, one assistant turn; the default system turn is added by the chat
template and counted in ``est_tokens``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from mmprolong_schemas import (
    Block,
    BlockLabel,
    Document,
    Message,
    Page,
    QAPair,
    Sample,
    Task,
    TextPart,
    VisionTokenSpec,
)
from qasynth.prompts import PAGE_LABEL, page_parts
from qasynth.token_estimates import messages_text_tokens

OCR_LABELS = {
    BlockLabel.TITLE,
    BlockLabel.SECTION_HEADER,
    BlockLabel.TEXT,
    BlockLabel.LIST_ITEM,
    BlockLabel.TABLE,
    BlockLabel.CAPTION,
    BlockLabel.FOOTNOTE,
    BlockLabel.FORMULA,
}
"""Text elements an OCR target keeps; running headers, footers and pictures are left out."""

OCR_FULL_INSTRUCTION = (
    "Transcribe the text of every page above in reading order. Begin each page with "
    '"Page N:" and write tables one row per line with cells separated by " | ".'
)


@dataclass(frozen=True)
class AssembleConfig:
    spec: VisionTokenSpec = field(default_factory=VisionTokenSpec)
    page_labels: bool = False
    max_length: int = 131072


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:24]


def format_answer(answer: object) -> str:
    """The target text of an answer: lists as JSON, numbers as written, strings as they are."""
    if isinstance(answer, list):
        return json.dumps(answer, ensure_ascii=False)
    if isinstance(answer, float):
        return repr(answer)
    return str(answer)


def _sample(
    doc: Document,
    task: Task,
    sample_id: str,
    prompt_text: str,
    target: str,
    config: AssembleConfig,
    qa_id: str | None = None,
    cut_after: int | None = None,
) -> Sample | None:
    pages = list(range(1, doc.num_pages + 1))
    content = [
        *page_parts(doc.doc_id, pages, labels=config.page_labels),
        TextPart(text=prompt_text),
    ]
    messages = [Message(role="user", content=content)]
    tokens = doc.tokens(config.spec) + messages_text_tokens(messages, target)
    if tokens > config.max_length:
        return None
    return Sample(
        sample_id=sample_id,
        task=task,
        doc_id=doc.doc_id,
        pages=pages,
        messages=messages,
        target=target,
        est_tokens=tokens,
        qa_id=qa_id,
        cut_after=cut_after,
    )


def vqa_sample(pair: QAPair, doc: Document, config: AssembleConfig | None = None) -> Sample | None:
    """The QA pair over the whole document, or None when it exceeds ``max_length``."""
    config = config or AssembleConfig()
    if pair.doc_id != doc.doc_id:
        raise ValueError(f"QA pair {pair.qa_id} is about {pair.doc_id[:12]}, not {doc.doc_id[:12]}")
    return _sample(
        doc,
        pair.task,
        _digest("vqa", pair.qa_id, config.page_labels),
        pair.question,
        format_answer(pair.answer),
        config,
        qa_id=pair.qa_id,
        # Questions may name any page of the segment ("on Pages 12-15"); later pages are
        # context only, so a trainer may cut the document after the segment.
        cut_after=pair.segment.last,
    )


def _block_text(block: Block) -> str:
    if block.label is BlockLabel.TABLE and block.rows:
        return "\n".join(" | ".join(" ".join(c.split()) for c in row) for row in block.rows)
    return " ".join(block.text.split())


def page_transcript(doc: Document, page: int) -> str:
    """The page's text elements in reading order, one per line."""
    blocks = sorted(doc.page(page).blocks, key=lambda b: b.order)
    return "\n".join(t for t in (_block_text(b) for b in blocks if b.label in OCR_LABELS) if t)


def _transcripts(doc: Document, pages: Iterable[int]) -> str:
    return "\n\n".join(f"{PAGE_LABEL.format(page=p)}\n{page_transcript(doc, p)}" for p in pages)


UNTRUSTED_PAGE_FLAGS = ("ocr", "parse-error")
"""docpool page flags whose text is not the PDF's own: Tesseract's reading of a page without
a text layer, or nothing for a page that failed to parse. Never a transcription target."""


def _text_trusted(page: Page) -> bool:
    return not any(flag.split(":")[0] in UNTRUSTED_PAGE_FLAGS for flag in page.flags)


def ocr_full_sample(doc: Document, config: AssembleConfig | None = None) -> Sample | None:
    """Transcribe every page; None if the document has no text, has a page whose text came
    from OCR or a parse error (see ``UNTRUSTED_PAGE_FLAGS``), or exceeds ``max_length``."""
    config = config or AssembleConfig()
    if not all(_text_trusted(p) for p in doc.pages):
        return None
    if not any(page_transcript(doc, p.number) for p in doc.pages):
        return None
    target = _transcripts(doc, range(1, doc.num_pages + 1))
    return _sample(
        doc,
        Task.OCR_FULL,
        _digest("ocr-full", doc.doc_id, config.page_labels),
        OCR_FULL_INSTRUCTION,
        target,
        config,
    )


def ocr_needle_sample(
    doc: Document, seed: int = 0, config: AssembleConfig | None = None
) -> Sample | None:
    """Transcribe 1-3 pages chosen by (seed, document); the other pages are distractors."""
    config = config or AssembleConfig()
    with_text = [p.number for p in doc.pages if _text_trusted(p) and page_transcript(doc, p.number)]
    if not with_text:
        return None
    rng = random.Random(f"needle:{seed}:{doc.doc_id}")
    chosen = sorted(rng.sample(with_text, min(len(with_text), rng.randint(1, 3))))
    named = (
        f"Page {chosen[0]}"
        if len(chosen) == 1
        else "Pages " + ", ".join(map(str, chosen[:-1])) + f" and {chosen[-1]}"
    )
    instruction = (
        f"Transcribe the text of {named} in reading order. Begin each page with "
        '"Page N:" and write tables one row per line with cells separated by " | ".'
    )
    return _sample(
        doc,
        Task.OCR_NEEDLE,
        _digest("ocr-needle", doc.doc_id, seed, config.page_labels),
        instruction,
        _transcripts(doc, chosen),
        config,
        cut_after=chosen[-1],
    )


def assemble_document(
    doc: Document, pairs: list[QAPair], config: AssembleConfig, ocr: bool, seed: int
) -> tuple[list[Sample | None], list[Sample | None]]:
    """The per-document step of assembly: a VQA sample per pair (None: too long) and, with
    ``ocr``, the OCR-full and OCR-needle samples (None: no text or too long)."""
    vqa = [vqa_sample(pair, doc, config) for pair in pairs]
    ocr_samples = (
        [ocr_full_sample(doc, config), ocr_needle_sample(doc, seed, config)] if ocr else []
    )
    return vqa, ocr_samples
