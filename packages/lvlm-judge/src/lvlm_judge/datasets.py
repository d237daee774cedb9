"""Loaders: every source becomes a list of mmprolong_schemas.EvalItem.

- MMLongBench document QA as released: documentQA/{longdocurl,mmlongdoc,slidevqa}_K{8..128}.jsonl
  with page_list images under an image root.
- MMLongBench's MM-NIAH files (ctxs, image_list, needle_image_list, choices_image, depth).
- VLMEvalKit's MMLongBench TSV split (page images already dumped under its image root).
- Our held-out sets: qasynth QAPair records (JSONL or Parquet) over a docpool pool.

A record that does not validate, or an image that is not there, is an error naming the file,
the line and the problem: an evaluation never skips an item silently.
"""

from __future__ import annotations

import ast
import csv
import json
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from lvlm_judge.context import ContextResolver, PoolLike
from mmprolong_schemas import (
    AnswerFormat,
    EvalItem,
    ImagePart,
    K,
    NiahMetric,
    PagePart,
    Part,
    QAPair,
    SchemaError,
    TextPart,
    VisionTokenSpec,
    atomic_path,
    read_jsonl,
    read_parquet,
)

DOC_DATASETS = ("mmlongdoc", "longdocurl", "slidevqa")
DOC_LENGTHS = (8 * K, 16 * K, 32 * K, 64 * K, 128 * K)
IMAGE_PLACEHOLDER = "<image>"

_LENGTH_IN_NAME = re.compile(r"_K(\d+)(?:_dep\d+)?\.[A-Za-z]+$")
_VLMEVALKIT_FORMATS = {
    "Str": AnswerFormat.STRING,
    "Int": AnswerFormat.INTEGER,
    "Float": AnswerFormat.FLOAT,
    "List": AnswerFormat.LIST,
    "None": AnswerFormat.NONE,
}


class DatasetError(ValueError):
    """Bad input data, naming where it is."""


def length_from_name(path: Path) -> int:
    """The context length a file name declares: mmlongdoc_K128.jsonl -> 131072."""
    match = _LENGTH_IN_NAME.search(path.name)
    if not match:
        raise DatasetError(f"{path}: the file name has no _K<length> part (e.g. _K128)")
    return int(match.group(1)) * K


def doc_file(root: Path, dataset: str, length: int) -> Path:
    return root / "documentQA" / f"{dataset}_K{length // K}.jsonl"


def _json_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    if not path.is_file():
        raise DatasetError(f"{path}: no such data file")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{where}: a record must be a JSON object")
            yield where, record


def _build(where: str, resolver: ContextResolver | None, **fields: Any) -> EvalItem:
    try:
        item = EvalItem.model_validate(fields)
    except ValueError as error:
        problems = getattr(error, "errors", None)
        detail = "; ".join(str(e.get("msg")) for e in problems()) if problems else str(error)
        raise DatasetError(f"{where}: {detail}") from None
    if resolver is not None:
        for part in item.context:
            try:
                resolver.check(part)
            except (FileNotFoundError, ValueError, IndexError, KeyError) as error:
                raise DatasetError(f"{where}: {error}") from None
    return item


def _field(where: str, record: dict[str, Any], name: str) -> Any:
    if name not in record:
        raise DatasetError(f"{where}: field {name!r} is missing")
    return record[name]


def _pages(values: object) -> list[int]:
    if not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 1]


def load_doc_file(
    path: str | Path,
    image_root: str | Path | None = None,
    *,
    dataset: str | None = None,
    length: int | None = None,
    check_images: bool = True,
) -> list[EvalItem]:
    """One MMLongBench documentQA file. ``dataset`` and ``length`` default to the file name's."""
    path = Path(path)
    dataset = dataset or path.name.split("_K")[0]
    length = length or length_from_name(path)
    resolver = ContextResolver(image_root) if check_images else None
    items = []
    for where, record in _json_lines(path):
        answer_format = str(_field(where, record, "answer_format"))
        answer = _field(where, record, "answer")
        pages = _field(where, record, "page_list")
        if not isinstance(pages, list) or not all(isinstance(p, str) for p in pages):
            raise DatasetError(f"{where}: page_list must be a list of image paths")
        items.append(
            _build(
                where,
                resolver,
                item_id=f"{dataset}:{length // K}K:{_field(where, record, 'id')}",
                dataset=dataset,
                length=length,
                context=[ImagePart(path=page) for page in pages],
                question=_field(where, record, "question"),
                answer=answer,
                answer_format=answer_format,
                doc_name=str(_field(where, record, "doc_name")),
                evidence_pages=_pages(record.get("ans_page_list")),
                answer_sources=[str(s) for s in record.get("answer_sources") or []],
            )
        )
    return items


def load_doc_benchmark(
    root: str | Path,
    image_root: str | Path | None = None,
    *,
    datasets: Iterable[str] = DOC_DATASETS,
    lengths: Iterable[int] = (64 * K, 128 * K),
    check_images: bool = True,
) -> list[EvalItem]:
    """Every (dataset, length) file of MMLongBench's documentQA folder under ``root``."""
    root = Path(root)
    image_root = image_root if image_root is not None else root
    items: list[EvalItem] = []
    for length in lengths:
        for dataset in datasets:
            items += load_doc_file(
                doc_file(root, dataset, length), image_root, check_images=check_images
            )
    return items


def niah_task(path: Path) -> tuple[str, str, NiahMetric]:
    """(task, needle modality, metric) from an MM-NIAH file name, as MMLongBench decides."""
    name = path.name
    task = next((t for t in ("retrieval", "counting", "reasoning") if t in name), None)
    if task is None:
        raise DatasetError(f"{path}: not an MM-NIAH file (no retrieval/counting/reasoning)")
    modality = "text" if "text" in name else "image"
    if task == "counting":
        metric = NiahMetric.SOFT_ACC
    else:
        metric = NiahMetric.SUB_EM if modality == "text" else NiahMetric.MC_ACC
    return task, modality, metric


def _interleave(text: str, images: list[str], where: str) -> list[Part]:
    pieces = text.split(IMAGE_PLACEHOLDER)
    if len(pieces) - 1 != len(images):
        raise DatasetError(
            f"{where}: the text has {len(pieces) - 1} {IMAGE_PLACEHOLDER} places "
            f"but {len(images)} images are listed"
        )
    parts: list[Part] = []
    for index, piece in enumerate(pieces):
        if piece:
            parts.append(TextPart(text=piece))
        if index < len(images):
            parts.append(ImagePart(path=images[index]))
    return parts


def _strings(where: str, record: dict[str, Any], name: str) -> list[str]:
    values = record.get(name) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DatasetError(f"{where}: {name} must be a list of image paths")
    return values


def load_niah_file(
    path: str | Path,
    image_root: str | Path | None = None,
    *,
    length: int | None = None,
    check_images: bool = True,
) -> list[EvalItem]:
    """One MM-NIAH file. The context holds the haystack (text and images interleaved), then
    the images that the question's own <image> places refer to, in order."""
    path = Path(path)
    task, modality, metric = niah_task(path)
    dataset = f"mm-niah-{task}-{modality}"
    length = length or length_from_name(path)
    resolver = ContextResolver(image_root) if check_images else None
    items = []
    for where, record in _json_lines(path):
        ctxs = _field(where, record, "ctxs")
        texts = [c["text"] if isinstance(c, dict) else str(c) for c in ctxs]
        haystack = _strings(where, record, "image_list")
        needles = _strings(where, record, "needle_image_list")
        choices = _strings(where, record, "choices_image")
        question = str(_field(where, record, "question"))
        question += "".join(
            f"\n{chr(ord('A') + i)}. {IMAGE_PLACEHOLDER}" for i in range(len(choices))
        )
        context = _interleave("\n\n".join(texts), haystack, where)
        question_images = needles + choices
        if question.count(IMAGE_PLACEHOLDER) != len(question_images):
            raise DatasetError(
                f"{where}: the question has {question.count(IMAGE_PLACEHOLDER)} "
                f"{IMAGE_PLACEHOLDER} places but {len(question_images)} needle/choice images"
            )
        context += [ImagePart(path=image) for image in question_images]
        answer = _field(where, record, "answer")
        if metric is NiahMetric.SOFT_ACC and isinstance(answer, str):
            answer = json.loads(answer)
        items.append(
            _build(
                where,
                resolver,
                item_id=f"{dataset}:{length // K}K:{_field(where, record, 'id')}",
                dataset=dataset,
                length=length,
                context=context,
                question=question,
                answer=answer,
                metric=metric,
                choices=choices or None,
            )
        )
    return items


VLMEVALKIT_MAX_PAGES = 120
"""VLMEvalKit shows a document's first 120 pages."""


def _tsv_rows(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    if not path.is_file():
        raise DatasetError(f"{path}: no such data file")
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle, delimiter="\t"), start=2):
            yield f"{path}:{number}", row


def _tsv_pages(where: str, row: dict[str, str], max_pages: int) -> list[str]:
    try:
        pages = ast.literal_eval(_field(where, row, "image_path"))
    except (ValueError, SyntaxError) as error:
        raise DatasetError(f"{where}: unreadable image_path ({error})") from None
    pages = [pages] if isinstance(pages, str) else pages
    if not isinstance(pages, list) or not all(isinstance(p, str) for p in pages):
        raise DatasetError(f"{where}: image_path must be a list of file names")
    return pages[:max_pages]


def render_tsv_pages(
    path: str | Path,
    image_root: str | Path,
    *,
    dpi: float = 144,
    max_pages: int = VLMEVALKIT_MAX_PAGES,
) -> int:
    """Render the page images a VLMEvalKit TSV names from the PDF in its base64 ``image``
    column, as VLMEvalKit does (PNG at 144 DPI), skipping pages already on disk. Needs
    PyMuPDF (pip install 'lvlm-judge[pdf]'). Returns the number of pages written."""
    import base64
    import binascii

    try:
        import pymupdf
    except ImportError as error:
        raise ImportError("rendering TSV pages needs: pip install 'lvlm-judge[pdf]'") from error
    from lvlm_judge.context import MissingImageError, resolve_image

    root = Path(image_root)
    written = 0
    for where, row in _tsv_rows(Path(path)):
        targets = []
        for name in _tsv_pages(where, row, max_pages):
            try:
                resolve_image(root, name)
            except MissingImageError as missing:
                if "leaves the image root" in str(missing):
                    raise DatasetError(f"{where}: {missing}") from None
                targets.append(name)
        if not targets:
            continue
        try:
            pdf = base64.b64decode(_field(where, row, "image"), validate=True)
            document = pymupdf.open(stream=pdf, filetype="pdf")
        except (binascii.Error, ValueError, RuntimeError) as error:
            raise DatasetError(
                f"{where}: the image column holds no readable PDF ({error})"
            ) from None
        with document:
            names = _tsv_pages(where, row, max_pages)
            for index, name in enumerate(names):
                if name not in targets:
                    continue
                if index >= document.page_count:
                    raise DatasetError(
                        f"{where}: {name} is page {index + 1} but the PDF has "
                        f"{document.page_count} pages"
                    )
                target = (root / name).resolve()
                target.parent.mkdir(parents=True, exist_ok=True)
                pixmap = document[index].get_pixmap(dpi=int(dpi))
                with atomic_path(target) as tmp:
                    tmp.write_bytes(pixmap.tobytes(output="png"))
                written += 1
    return written


def load_vlmevalkit_tsv(
    path: str | Path,
    image_root: str | Path,
    *,
    length: int = 128 * K,
    dataset: str = "mmlongdoc",
    check_images: bool = True,
    max_pages: int = VLMEVALKIT_MAX_PAGES,
) -> list[EvalItem]:
    """VLMEvalKit's MMLongBench_DOC.tsv with its page images under ``image_root`` (image_path
    column; ``render_tsv_pages`` makes them from the TSV's PDFs). Whole documents, first
    ``max_pages`` pages: ``length`` labels the bucket they are reported in."""
    path = Path(path)
    resolver = ContextResolver(image_root) if check_images else None
    items = []
    for where, row in _tsv_rows(path):
        raw_format = _field(where, row, "answer_format")
        if raw_format not in _VLMEVALKIT_FORMATS:
            raise DatasetError(f"{where}: unknown answer_format {raw_format!r}")
        pages = _tsv_pages(where, row, max_pages)
        try:
            evidence = ast.literal_eval(row.get("evidence_pages") or "[]")
            sources = ast.literal_eval(row.get("evidence_sources") or "[]")
        except (ValueError, SyntaxError) as error:
            raise DatasetError(f"{where}: unreadable list column ({error})") from None
        items.append(
            _build(
                where,
                resolver,
                item_id=f"{dataset}:vlmevalkit:{_field(where, row, 'index')}",
                dataset=dataset,
                length=length,
                context=[ImagePart(path=str(page)) for page in pages],
                question=_field(where, row, "question"),
                answer=_field(where, row, "answer"),
                answer_format=_VLMEVALKIT_FORMATS[raw_format],
                doc_name=row.get("doc_id") or None,
                evidence_pages=_pages(evidence),
                answer_sources=[str(s) for s in sources],
            )
        )
    return items


def length_bucket(tokens: int, buckets: Iterable[int] = DOC_LENGTHS) -> int:
    """The smallest bucket that holds ``tokens`` (the largest when none does)."""
    ordered = sorted(buckets)
    return next((bucket for bucket in ordered if tokens <= bucket), ordered[-1])


def read_qa_pairs(path: str | Path) -> list[QAPair]:
    path = Path(path)
    if path.suffix == ".parquet":
        return list(read_parquet(path, QAPair))
    try:
        return list(read_jsonl(path, QAPair))
    except SchemaError as error:
        raise DatasetError(str(error)) from None


def load_heldout(
    qa_path: str | Path,
    pool: PoolLike,
    *,
    dataset: str = "heldout",
    spec: VisionTokenSpec | None = None,
    length: int | None = None,
) -> list[EvalItem]:
    """qasynth QA pairs over a docpool pool; the context is the whole document, page by page.
    ``length`` defaults to the smallest standard bucket (8K..128K) holding the document."""
    resolver = ContextResolver(pool=pool, spec=spec)
    items = []
    for qa in read_qa_pairs(qa_path):
        where = f"{qa_path}: QA pair {qa.qa_id}"
        try:
            document = resolver.document(qa.doc_id)
        except (KeyError, FileNotFoundError, ValueError, IndexError) as error:
            raise DatasetError(
                f"{where}: document {qa.doc_id[:12]} is not in the pool ({error})"
            ) from None
        context: list[Part] = [PagePart(doc_id=qa.doc_id, page=p.number) for p in document.pages]
        tokens = sum(resolver.tokens(part) for part in context)
        items.append(
            _build(
                where,
                None,
                item_id=f"{dataset}:{qa.qa_id}",
                dataset=dataset,
                length=length or length_bucket(tokens),
                context=context,
                question=qa.question,
                answer=qa.answer,
                answer_format=qa.answer_format,
                doc_name=qa.doc_id,
                evidence_pages=qa.evidence_pages,
                answer_sources=[source.value for source in qa.evidence_sources],
                est_tokens=tokens,
            )
        )
    return items


def read_eval_items(path: str | Path) -> list[EvalItem]:
    """EvalItem JSONL, as ``lvlm-judge extend`` writes it."""
    try:
        return list(read_jsonl(path, EvalItem))
    except SchemaError as error:
        raise DatasetError(str(error)) from None


def _first_record(path: Path) -> dict[str, Any]:
    for _, record in _json_lines(path):
        return record
    raise DatasetError(f"{path}: the file holds no record")


def load_data(
    paths: Iterable[str | Path],
    *,
    image_root: str | Path | None = None,
    pool: PoolLike | None = None,
    lengths: Iterable[int] | None = None,
    datasets: Iterable[str] = DOC_DATASETS,
    spec: VisionTokenSpec | None = None,
    check_images: bool = True,
) -> list[EvalItem]:
    """Items from any mix of sources, recognised by their shape:
    a folder with documentQA/ (MMLongBench), a .tsv (VLMEvalKit), a .parquet of QA pairs, or a
    .jsonl of MMLongBench documents, MM-NIAH records, QA pairs or EvalItems. ``lengths``
    picks the MMLongBench files and filters every other source."""
    wanted = sorted(set(lengths)) if lengths else None
    items: list[EvalItem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if not (path / "documentQA").is_dir():
                raise DatasetError(f"{path}: a data folder must hold documentQA/")
            doc_lengths = [n for n in (wanted or [64 * K, 128 * K]) if n in DOC_LENGTHS]
            items += load_doc_benchmark(
                path, image_root if image_root is not None else path,
                datasets=datasets, lengths=doc_lengths, check_images=check_images,
            )  # fmt: skip
            continue
        if path.suffix == ".tsv":
            if image_root is None:
                raise DatasetError(f"{path}: a VLMEvalKit TSV needs --image-root")
            tsv_length = wanted[0] if wanted and len(wanted) == 1 else 128 * K
            found = load_vlmevalkit_tsv(path, image_root, length=tsv_length,
                                        check_images=check_images)  # fmt: skip
        elif path.suffix == ".parquet":
            found = _heldout(path, pool, spec)
        else:
            record = _first_record(path)
            root = image_root if image_root is not None else path.parent
            if "context" in record:
                found = read_eval_items(path)
            elif "qa_id" in record:
                found = _heldout(path, pool, spec)
            elif "page_list" in record:
                found = load_doc_file(path, root, check_images=check_images)
            elif "ctxs" in record:
                found = load_niah_file(path, root, check_images=check_images)
            else:
                raise DatasetError(f"{path}: not a data file lvlm-judge knows")
        items += [item for item in found if wanted is None or item.length in wanted]
    return items


def _heldout(path: Path, pool: PoolLike | None, spec: VisionTokenSpec | None) -> list[EvalItem]:
    if pool is None:
        raise DatasetError(f"{path}: QA pairs need the pool they were made from (--pool)")
    return load_heldout(path, pool, spec=spec)
