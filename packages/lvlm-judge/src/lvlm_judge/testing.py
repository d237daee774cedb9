"""Test helpers for lvlm-judge and the packages that use it (tests, benchmarks, demos). The fake
OpenAI-compatible chat server they talk to is ``mmprolong_runtime.testing.ChatServer``.

- make_doc_benchmark: a small MMLongBench-layout data tree with generated page images.
- make_document / InMemoryPool: pool documents without PDFs, with docpool's get/render.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from mmprolong_schemas import Document, Page
from mmprolong_schemas.vision_tokens import pixels_at_dpi


def make_document(
    name: str, num_pages: int, width_pt: float = 612.0, height_pt: float = 792.0
) -> Document:
    """A Document record with blank pages of the given size; doc_id is the sha256 of name."""

    doc_id = hashlib.sha256(name.encode()).hexdigest()
    pages = [Page(number=n, width=width_pt, height=height_pt) for n in range(1, num_pages + 1)]
    return Document(
        doc_id=doc_id, source_path=f"{name}.pdf", file_size=1, num_pages=num_pages, pages=pages
    )


class InMemoryPool:
    """The part of a docpool pool lvlm-judge uses, over Documents held in memory; pages render
    as white images of the right pixel size with the document and page written on them."""

    def __init__(self, documents: list[Document]):
        self.documents = {document.doc_id: document for document in documents}

    def get(self, doc_id: str) -> Document:
        if doc_id not in self.documents:
            raise KeyError(f"document {doc_id[:12]} is not in the pool")
        return self.documents[doc_id]

    def render(self, doc_id: str, pages: list[int], dpi: float = 144) -> list[Image.Image]:
        document = self.get(doc_id)
        images = []
        for number in pages:
            page = document.page(number)
            size = (pixels_at_dpi(page.width, dpi), pixels_at_dpi(page.height, dpi))
            image = Image.new("RGB", size, "white")
            ImageDraw.Draw(image).text((10, 10), f"{doc_id[:8]} p{number}", fill="black")
            images.append(image)
        return images


DOC_QUESTIONS = [
    ("What is the title word on page 1?", "apple", "String"),
    ("How many rows does the table have?", "12", "Integer"),
    ("What share grew?", "18.29%", "Float"),
    ("Which colours appear?", '["red", "blue"]', "List"),
    ("Who signed the letter?", "Not answerable", "None"),
]
"""One question per answer format, answers written as MMLongBench releases them."""


def _page_image(path: Path, label: str, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((8, 8), label, fill="black")
    image.save(path)


def doc_page_name(dataset: str, doc: str, index: int) -> str:
    """A page image name as MMLongBench's README (tip 6) describes them: SlideVQA keeps its
    1-based "<deck>-<n>-1024.jpg", the others "<doc>_page<i>.jpg" with i from 0. The folder
    above is the document's id (data.py reads it as ``image_path.split("/")[-2]``)."""
    if dataset == "slidevqa":
        return f"{dataset}/{doc}/{doc}-{index + 1}-1024.jpg"
    return f"{dataset}/{doc}/{doc}_page{index}.jpg"


def make_doc_benchmark(
    root: str | Path,
    *,
    datasets: tuple[str, ...] = ("mmlongdoc", "longdocurl", "slidevqa"),
    lengths: tuple[int, ...] = (8,),
    docs: int = 2,
    pages: int = 3,
    image_size: tuple[int, int] = (224, 280),
) -> Path:
    """MMLongBench's released layout in small (its README, "Data"): ``root/mmlb_data/
    documentQA/<dataset>_K<n>.jsonl`` and the page images in ``root/mmlb_image/``, five
    questions (one per answer format) per document. Returns the mmlb_data folder."""
    data = Path(root) / "mmlb_data"
    images = Path(root) / "mmlb_image"
    (data / "documentQA").mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        for doc in range(docs):
            name = f"{dataset}-doc{doc}"
            for index in range(pages):
                page = doc_page_name(dataset, name, index)
                _page_image(images / page, f"{name} p{index}", image_size)
        for length in lengths:
            records = []
            for doc in range(docs):
                name = f"{dataset}-doc{doc}"
                for number, (question, answer, answer_format) in enumerate(DOC_QUESTIONS):
                    records.append({
                        "id": f"{dataset}_{doc * len(DOC_QUESTIONS) + number}",
                        "doc_name": name,
                        "question": question,
                        "answer": answer,
                        "answer_format": answer_format,
                        "page_list": [doc_page_name(dataset, name, i) for i in range(pages)],
                        "ans_page_list": [0],
                        "answer_sources": ["Pure-text (Plain-text)"],
                        "length": length * 1024,
                    })  # fmt: skip
            path = data / "documentQA" / f"{dataset}_K{length}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return data


def make_niah_file(
    root: str | Path,
    task: str,
    modality: str,
    *,
    length: int = 8,
    depth: int = 6,
    records: int = 3,
    image_size: tuple[int, int] = (56, 56),
) -> Path:
    """One MM-NIAH file in MMLongBench's layout (``mmlb_data/NIAH/<task>-<modality>_test_K<n>_
    dep<d>.jsonl``, images in ``mmlb_image/``) with the fields its data.py reads: ctxs (text
    with <image> places), image_list, needle_image_list, choices_image, question, answer."""
    data = Path(root) / "mmlb_data" / "NIAH"
    images = Path(root) / "mmlb_image"
    data.mkdir(parents=True, exist_ok=True)
    lines = []
    for number in range(records):
        haystack = [f"niah/{task}-{modality}/{number}/hay{i}.jpg" for i in range(2)]
        for path in haystack:
            _page_image(images / path, path, image_size)
        record: dict[str, Any] = {
            "id": number,
            "ctxs": [{"text": "Paragraph one."}, {"text": "<image>"},
                     {"text": "A needle sits here."}, {"text": "<image>"}],
            "image_list": haystack,
            "needle_image_list": [],
            "choices_image": [],
            "question": f"What sits in paragraph {number}?",
            "answer": "needle",
        }  # fmt: skip
        if task == "counting":
            record["answer"] = [1, 0]
        if modality == "image":
            needles = [f"niah/{task}-{modality}/{number}/needle{i}.jpg" for i in range(2)]
            for path in needles:
                _page_image(images / path, path, image_size)
            if task == "counting":
                record["needle_image_list"] = needles
                record["question"] = "How often does each appear? <image> <image>"
            else:
                record["choices_image"] = needles
                record["answer"] = 1
        lines.append(json.dumps(record) + "\n")
    target = data / f"{task}-{modality}_test_K{length}_dep{depth}.jsonl"
    target.write_text("".join(lines), encoding="utf-8")
    return target
