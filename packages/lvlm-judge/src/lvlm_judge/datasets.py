"""Loaders: every source becomes a list of mmprolong_schemas.EvalItem.

- MMLongBench as released (its README, "Data"): ``mmlb_data/documentQA/{longdocurl,mmlongdoc,
  slidevqa}_K{8,16,32,64,128}.jsonl`` and ``mmlb_data/NIAH/{retrieval,counting,reasoning}-{text,
  image}_test_K{n}_dep{3,6}.jsonl``, with the page images in the sibling ``mmlb_image/`` (paths
  in the records are relative to it). Answers are kept as released; ``ans_page_list`` is
  0-based (README tip 6) and becomes our 1-based ``evidence_pages``.
- VLMEvalKit's MMLongBench_{32K,128K,256K,512K}.tsv (its scripts/build_mmlongbench_tsv.py):
  the official items at 256K and 512K, document QA and MM-NIAH; rows of the categories not
  scored here are counted with the reason. Its older MMLongBench_DOC.tsv loads too.
- Our held-out sets: qasynth QAPair records (JSONL or Parquet) over a docpool pool.

By default MMLongBench's own seeded subsets run, as its configs and data.py choose them:
document QA shuffled as Hugging Face ``datasets`` shuffles with seed 42, first 100; MM-NIAH 50
ids drawn by ``random.sample`` after seeding 42. ``subset="all"`` keeps every item.

A malformed record (bad JSON, a missing field, an answer MMLongBench's scorer cannot read, a
missing image) is reported with its file and line in the LoadReport and skipped; it never
aborts the load. A requested length the data lacks is an error naming the lengths it has.
"""

from __future__ import annotations

import ast
import csv
import json
import logging
import random
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lvlm_judge.context import ContextResolver, PoolLike
from lvlm_judge.prompting import IMAGE, interleave
from lvlm_judge.rules import score_answer
from mmprolong_runtime.errors import InputError
from mmprolong_schemas import (
    AnswerFormat,
    EvalItem,
    ImagePart,
    NiahMetric,
    PagePart,
    QAPair,
    SchemaError,
    TextPart,
    VisionTokenSpec,
    format_tokens,
    read_jsonl,
    read_parquet,
)
from mmprolong_schemas.io import atomic_path
from mmprolong_schemas.sample import Part
from mmprolong_schemas.units import K

log = logging.getLogger("lvlm_judge")

DOC_DATASETS = ("mmlongdoc", "longdocurl", "slidevqa")
DOC_LENGTHS = (8 * K, 16 * K, 32 * K, 64 * K, 128 * K)
NIAH_DATASETS = tuple(
    f"mm-niah-{task}-{modality}"
    for modality in ("text", "image")
    for task in ("retrieval", "counting", "reasoning")
)
NIAH_DEPTHS = {
    "retrieval-text": 6, "counting-text": 3, "reasoning-text": 3,
    "retrieval-image": 6, "counting-image": 3, "reasoning-image": 6,
}  # fmt: skip
"""The needle-depth file each task runs on: MMLongBench's configs/mm_niah_{text,image}_all.yaml."""
IMAGE_FOLDER = "mmlb_image"
DATA_FOLDER = "mmlb_data"

SUBSET_SEED = 42
"""MMLongBench's --seed default (arguments.py), set by set_seed before each file is loaded."""
DOC_SUBSET_SIZE = 100
"""max_test_samples of configs/docqa_all.yaml."""
NIAH_SUBSET_SIZE = 50
"""max_test_samples of configs/mm_niah_{text,image}_all.yaml."""
Subset = Literal["mmlb", "all"]
SUBSET_NAMES = {
    "mmlb": "mmlb-seeded (doc QA: HF shuffle seed 42, first 100; NIAH: 50 ids, seed 42)",
    "all": "all items",
}

_LENGTH_IN_NAME = re.compile(r"_K(\d+)(?:_dep\d+)?\.[A-Za-z]+$")
_TSV_LENGTH = re.compile(r"MMLongBench_(\d+)K\.tsv$", re.IGNORECASE)
_VLMEVALKIT_FORMATS = {
    "Str": AnswerFormat.STRING,
    "Int": AnswerFormat.INTEGER,
    "Float": AnswerFormat.FLOAT,
    "List": AnswerFormat.LIST,
    "None": AnswerFormat.NONE,
}


class DatasetError(InputError):
    """Bad input data, naming where it is."""


@dataclass
class LoadReport:
    """What a load skipped (file:line and why), which item sets it took per source, and how
    many rows of each category it does not score (and why)."""

    skipped: list[str] = field(default_factory=list)
    item_sets: dict[str, str] = field(default_factory=dict)
    not_scored: dict[str, int] = field(default_factory=dict)

    def skip(self, problem: str) -> None:
        self.skipped.append(problem)
        log.warning("skipped: %s", problem)

    @property
    def item_set(self) -> str:
        """One label for the whole load (the sets of its sources, joined)."""
        return "; ".join(sorted(set(self.item_sets.values()))) or "none"


def hf_shuffle_first(count: int, seed: int = SUBSET_SEED, keep: int = DOC_SUBSET_SIZE) -> list[int]:
    """Row indices ``Dataset.shuffle(seed=seed).select(range(keep))`` keeps, in that order.
    Hugging Face datasets' shuffle draws ``np.random.default_rng(seed).permutation(len(self))``
    (src/datasets/arrow_dataset.py, Dataset.shuffle) and select keeps the permutation's order."""
    permutation = np.random.default_rng(seed).permutation(count)
    return [int(index) for index in permutation[: min(count, keep)]]


def seeded_ids(
    ids: Iterable[Any], seed: int = SUBSET_SEED, keep: int = NIAH_SUBSET_SIZE
) -> set[Any]:
    """The ids MMLongBench's NIAH loaders keep: after set_seed(seed),
    ``random.sample(sorted(set(ids)), min(keep, n))`` (data.py, load_mm_niah_*)."""
    unique = sorted(set(ids))
    return set(random.Random(seed).sample(unique, min(keep, len(unique))))


def length_from_name(path: Path) -> int:
    """The context length a file name declares: mmlongdoc_K128.jsonl -> 131072;
    retrieval-text_test_K8_dep6.jsonl -> 8192."""
    match = _LENGTH_IN_NAME.search(path.name)
    if not match:
        raise DatasetError(f"{path}: the file name has no _K<length> part (e.g. _K128)")
    return int(match.group(1)) * K


def doc_file(root: Path, dataset: str, length: int) -> Path:
    return root / "documentQA" / f"{dataset}_K{length // K}.jsonl"


def _json_records(path: Path, report: LoadReport) -> list[tuple[str, dict[str, Any] | None]]:
    """Every non-blank line as (file:line, record); a line that is not a JSON object is
    reported and kept as None, so it still takes its place in the seeded shuffle."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such data file")
    rows: list[tuple[str, dict[str, Any] | None]] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                report.skip(f"{where}: not valid JSON ({error.msg})")
                rows.append((where, None))
                continue
            if not isinstance(record, dict):
                report.skip(f"{where}: a record must be a JSON object")
                rows.append((where, None))
                continue
            rows.append((where, record))
    return rows


def _json_lines(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Records of a JSONL file, raising on the first malformed line (for our own files)."""
    report = LoadReport()
    for where, record in _json_records(path, report):
        if record is None:
            raise DatasetError(report.skipped[-1])
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
    """1-based page numbers (our own sets)."""
    if not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 1]


def _zero_based_pages(where: str, values: object) -> list[int]:
    """MMLongBench's 0-based ans_page_list as our 1-based evidence pages."""
    if values is None:
        return []
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise DatasetError(f"{where}: ans_page_list must be a list of 0-based page indices")
    return [v + 1 for v in values]


def _check_answer(where: str, answer: object, answer_format: str) -> None:
    """The answer must be one MMLongBench's scorer can read (it would crash on it otherwise)."""
    try:
        score_answer(answer, "", answer_format)
    except (ValueError, TypeError, OverflowError) as error:
        raise DatasetError(f"{where}: answer {answer!r} ({answer_format}): {error}") from None


def _doc_item(
    where: str,
    record: dict[str, Any],
    dataset: str,
    length: int,
    resolver: ContextResolver | None,
) -> EvalItem:
    answer_format = str(_field(where, record, "answer_format"))
    answer = _field(where, record, "answer")
    if answer_format not in {f.value for f in AnswerFormat}:
        raise DatasetError(f"{where}: unknown answer_format {answer_format!r}")
    _check_answer(where, answer, answer_format)
    pages = _field(where, record, "page_list")
    if not isinstance(pages, list) or not all(isinstance(p, str) for p in pages):
        raise DatasetError(f"{where}: page_list must be a list of image paths")
    return _build(
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
        evidence_pages=_zero_based_pages(where, record.get("ans_page_list")),
        answer_sources=[str(s) for s in record.get("answer_sources") or []],
    )


def _collect(
    rows: Sequence[tuple[str, dict[str, Any] | None]],
    indices: Iterable[int],
    make: Any,
    report: LoadReport,
) -> list[EvalItem]:
    items = []
    for index in indices:
        where, record = rows[index]
        if record is None:
            continue  # already reported
        try:
            items.append(make(where, record))
        except DatasetError as error:
            report.skip(str(error))
    return items


def load_doc_file(
    path: str | Path,
    image_root: str | Path | None = None,
    *,
    dataset: str | None = None,
    length: int | None = None,
    check_images: bool = True,
    subset: Subset = "all",
    report: LoadReport | None = None,
) -> list[EvalItem]:
    """One MMLongBench documentQA file. ``dataset`` and ``length`` default to the file name's;
    ``subset="mmlb"`` keeps MMLongBench's seeded 100 (HF shuffle, seed 42)."""
    path = Path(path)
    report = report if report is not None else LoadReport()
    name = dataset or path.name.split("_K")[0]
    size = length or length_from_name(path)
    resolver = ContextResolver(image_root) if check_images else None
    rows = _json_records(path, report)
    indices = hf_shuffle_first(len(rows)) if subset == "mmlb" else range(len(rows))
    report.item_sets[str(path)] = SUBSET_NAMES[subset]
    return _collect(rows, indices, lambda w, r: _doc_item(w, r, name, size, resolver), report)


def niah_task(source: Path | str) -> tuple[str, str, NiahMetric]:
    """(task, needle modality, metric) from an MM-NIAH file name (or a TSV's source_dataset,
    e.g. counting-image), as MMLongBench decides (its data.py) and VLMEvalKit's
    MMLongBench._metric_for (vlmeval/dataset/mmlongbench.py) does too."""
    name = source.name if isinstance(source, Path) else source
    task = next((t for t in ("retrieval", "counting", "reasoning") if t in name), None)
    if task is None:
        raise DatasetError(f"{source}: not an MM-NIAH file (no retrieval/counting/reasoning)")
    modality = "text" if "text" in name else "image"
    if task == "counting":
        metric = NiahMetric.SOFT_ACC
    else:
        metric = NiahMetric.SUB_EM if modality == "text" else NiahMetric.MC_ACC
    return task, modality, metric


def _interleave(text: str, images: list[str], where: str) -> list[Part]:
    return [
        TextPart(text=piece) if isinstance(piece, str) else piece
        for piece in interleave(text, [ImagePart(path=image) for image in images], where,
                                error=DatasetError)
    ]  # fmt: skip


def _strings(where: str, record: dict[str, Any], name: str) -> list[str]:
    values = record.get(name) or []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DatasetError(f"{where}: {name} must be a list of image paths")
    return values


def _niah_item(
    where: str,
    record: dict[str, Any],
    kind: tuple[str, str, NiahMetric],
    length: int,
    resolver: ContextResolver | None,
) -> EvalItem:
    """As MMLongBench's loaders build it (data.py): text needles use the haystack images;
    image counting adds needle_image_list (its question holds their <image> places); image
    retrieval/reasoning add one lettered <image> option per choices_image."""
    task, modality, metric = kind
    dataset = f"mm-niah-{task}-{modality}"
    ctxs = _field(where, record, "ctxs")
    if not isinstance(ctxs, list):
        raise DatasetError(f"{where}: ctxs must be a list of paragraphs")
    texts = [c["text"] if isinstance(c, dict) and "text" in c else str(c) for c in ctxs]
    haystack = _strings(where, record, "image_list")
    question = str(_field(where, record, "question"))
    choices: list[str] = []
    if modality == "text":
        question_images: list[str] = []
    elif metric is NiahMetric.SOFT_ACC:
        question_images = _strings(where, record, "needle_image_list")
    else:
        choices = _strings(where, record, "choices_image")
        question += "".join(f"\n{chr(ord('A') + i)}. {IMAGE}" for i in range(len(choices)))
        question_images = choices
    if question.count(IMAGE) != len(question_images):
        raise DatasetError(
            f"{where}: the question has {question.count(IMAGE)} "
            f"{IMAGE} places but {len(question_images)} needle/choice images"
        )
    context = _interleave("\n\n".join(texts), haystack, where)
    context += [ImagePart(path=image) for image in question_images]
    answer = _field(where, record, "answer")
    if metric is NiahMetric.SOFT_ACC and isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except json.JSONDecodeError:
            raise DatasetError(f"{where}: counting answer {answer!r} is not a JSON list") from None
    return _build(
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


def load_niah_file(
    path: str | Path,
    image_root: str | Path | None = None,
    *,
    length: int | None = None,
    check_images: bool = True,
    subset: Subset = "all",
    report: LoadReport | None = None,
) -> list[EvalItem]:
    """One MM-NIAH file (``..._K8_dep6.jsonl``). The context holds the haystack (text and
    images interleaved), then the images the question's own <image> places refer to.
    ``subset="mmlb"`` keeps the 50 ids MMLongBench samples, in file order."""
    path = Path(path)
    report = report if report is not None else LoadReport()
    kind = niah_task(path)
    size = length or length_from_name(path)
    resolver = ContextResolver(image_root) if check_images else None
    rows = _json_records(path, report)
    indices: Iterable[int] = range(len(rows))
    if subset == "mmlb":
        ids = [r["id"] for _, r in rows if r is not None and "id" in r]
        try:
            kept = seeded_ids(ids)
        except TypeError:
            raise DatasetError(f"{path}: ids of mixed types cannot be sorted") from None
        indices = [i for i, (_, r) in enumerate(rows) if r is not None and r.get("id") in kept]
    report.item_sets[str(path)] = SUBSET_NAMES[subset]
    return _collect(rows, indices, lambda w, r: _niah_item(w, r, kind, size, resolver), report)


DATASET_GROUPS = {
    "documents": DOC_DATASETS,
    "niah": NIAH_DATASETS,
    "all": DOC_DATASETS + NIAH_DATASETS,
}
"""Names for several MMLongBench sets at once."""


def expand_datasets(names: Iterable[str]) -> list[str]:
    """Dataset names with the groups (documents, niah, all) spelled out, in order, once."""
    expanded: list[str] = []
    for name in names:
        for member in DATASET_GROUPS.get(name, (name,)):
            if member not in expanded:
                expanded.append(member)
    return expanded


def image_folder_for(data: Path) -> Path | None:
    """MMLongBench's image folder beside its data folder (mmlb_data/ -> mmlb_image/)."""
    sibling = data.parent / IMAGE_FOLDER
    return sibling if sibling.is_dir() else None


def data_folder(path: Path) -> Path:
    """The folder that holds documentQA/ and NIAH/: ``path`` or its mmlb_data/."""
    if (path / DATA_FOLDER).is_dir() and not (path / "documentQA").is_dir():
        return path / DATA_FOLDER
    return path


def _lengths_on_disk(files: Iterable[Path]) -> list[int]:
    found = set()
    for file in files:
        try:
            found.add(length_from_name(file))
        except DatasetError:
            continue
    return sorted(found)


def _shown(lengths: Iterable[int]) -> str:
    return ", ".join(format_tokens(n) for n in sorted(lengths)) or "none"


def _has(name: str, lengths: list[int]) -> str:
    if not lengths:
        return f"the data has no {name} file at any length"
    return f"the data has {name} at {_shown(lengths)}"


def _niah_file(root: Path, dataset: str, length: int) -> Path:
    stem = dataset.removeprefix("mm-niah-")
    folder = root / "NIAH"
    wanted = folder / f"{stem}_test_K{length // K}_dep{NIAH_DEPTHS[stem]}.jsonl"
    if wanted.is_file():
        return wanted
    present = sorted(folder.glob(f"{stem}_test_K*_dep*.jsonl")) if folder.is_dir() else []
    raise DatasetError(
        f"{folder}: no {dataset} file for {format_tokens(length)} ({wanted.name}); "
        f"{_has(stem, _lengths_on_disk(present))}"
    )


def load_mmlb_folder(
    root: str | Path,
    image_root: str | Path | None = None,
    *,
    datasets: Iterable[str] = DOC_DATASETS,
    lengths: Iterable[int] = (64 * K, 128 * K),
    check_images: bool = True,
    subset: Subset = "mmlb",
    report: LoadReport | None = None,
) -> list[EvalItem]:
    """MMLongBench's released ``mmlb_data`` folder: the documentQA and NIAH files of
    ``datasets`` at ``lengths``. Images come from ``image_root``, else the sibling
    ``mmlb_image/``, else the folder itself. A length a dataset lacks is an error naming the
    lengths it has."""
    folder = data_folder(Path(root))
    report = report if report is not None else LoadReport()
    if image_root is None:
        image_root = image_folder_for(folder) or folder
    items: list[EvalItem] = []
    for name in expand_datasets(datasets):
        if name not in DOC_DATASETS and name not in NIAH_DATASETS:
            raise DatasetError(
                f"unknown MMLongBench dataset {name!r}; known: {', '.join(DOC_DATASETS)}, "
                f"{', '.join(NIAH_DATASETS)}, and the groups {', '.join(DATASET_GROUPS)}"
            )
        for length in lengths:
            if name in NIAH_DATASETS:
                items += load_niah_file(
                    _niah_file(folder, name, length), image_root, length=length,
                    check_images=check_images, subset=subset, report=report,
                )  # fmt: skip
                continue
            path = doc_file(folder, name, length)
            if not path.is_file():
                present = _lengths_on_disk((folder / "documentQA").glob(f"{name}_K*.jsonl"))
                raise DatasetError(
                    f"{folder / 'documentQA'}: no {name} file for {format_tokens(length)} "
                    f"({path.name}); {_has(name, present)}. 256K and 512K "
                    "are VLMEvalKit's MMLongBench_256K.tsv / _512K.tsv (pass them with --data) "
                    "or our padding (lvlm-judge extend)"
                )
            items += load_doc_file(
                path, image_root, dataset=name, length=length, check_images=check_images,
                subset=subset, report=report,
            )  # fmt: skip
    return items


VLMEVALKIT_MAX_PAGES = 120
"""VLMEvalKit shows a document's first 120 pages."""


def _tsv_rows(path: Path, report: LoadReport) -> Iterator[tuple[str, dict[str, str]]]:
    """Rows as (file:line, columns), the line being where the row starts (a quoted field may
    span lines, as pandas writes them). A row with more or fewer fields than the header is
    reported and skipped."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such data file")
    csv.field_size_limit(sys.maxsize)
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        start = 2
        for row in reader:
            where = f"{path}:{start}"
            start = reader.line_num + 1
            if None in row or None in row.values():
                columns = len(reader.fieldnames or [])
                report.skip(f"{where}: the row does not have the header's {columns} fields")
                continue
            yield where, row


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
    for where, row in _tsv_rows(Path(path), LoadReport()):
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


def _doc_tsv_answer(where: str, answer: str, raw_format: str) -> Any:
    """MMLongBench-Doc's TSV writes List answers as Python literals ("['a', 'b']"): read them
    into a list, which the scorer takes as it takes MMLongBench's JSON strings."""
    if raw_format != "List":
        return answer
    try:
        items = ast.literal_eval(answer)
    except (ValueError, SyntaxError):
        raise DatasetError(f"{where}: List answer {answer!r} is not a list literal") from None
    if not isinstance(items, list):
        raise DatasetError(f"{where}: List answer {answer!r} is not a list")
    return items


def _doc_tsv_item(
    where: str, row: dict[str, str], length: int, dataset: str, max_pages: int,
    resolver: ContextResolver | None,
) -> EvalItem:  # fmt: skip
    raw_format = _field(where, row, "answer_format")
    if raw_format not in _VLMEVALKIT_FORMATS:
        raise DatasetError(f"{where}: unknown answer_format {raw_format!r}")
    pages = _tsv_pages(where, row, max_pages)
    try:
        evidence = ast.literal_eval(row.get("evidence_pages") or "[]")
        sources = ast.literal_eval(row.get("evidence_sources") or "[]")
    except (ValueError, SyntaxError) as error:
        raise DatasetError(f"{where}: unreadable list column ({error})") from None
    return _build(
        where,
        resolver,
        item_id=f"{dataset}:vlmevalkit:{_field(where, row, 'index')}",
        dataset=dataset,
        length=length,
        context=[ImagePart(path=str(page)) for page in pages],
        question=_field(where, row, "question"),
        answer=_doc_tsv_answer(where, _field(where, row, "answer"), raw_format),
        answer_format=_VLMEVALKIT_FORMATS[raw_format],
        doc_name=row.get("doc_id") or None,
        evidence_pages=_pages(evidence),
        answer_sources=[str(s) for s in sources],
    )


def load_vlmevalkit_tsv(
    path: str | Path,
    image_root: str | Path,
    *,
    length: int = 128 * K,
    dataset: str = "mmlongdoc",
    check_images: bool = True,
    max_pages: int = VLMEVALKIT_MAX_PAGES,
    report: LoadReport | None = None,
) -> list[EvalItem]:
    """VLMEvalKit's MMLongBench_DOC.tsv with its page images under ``image_root`` (image_path
    column; ``render_tsv_pages`` makes them from the TSV's PDFs). Whole documents, first
    ``max_pages`` pages: ``length`` labels the bucket they are reported in. A malformed row
    is reported in ``report`` with its file and row and skipped."""
    path = Path(path)
    report = report if report is not None else LoadReport()
    resolver = ContextResolver(image_root) if check_images else None
    items = []
    for where, row in _tsv_rows(path, report):
        try:
            items.append(_doc_tsv_item(where, row, length, dataset, max_pages, resolver))
        except DatasetError as error:
            report.skip(str(error))
    report.item_sets[str(path)] = SUBSET_NAMES["all"]
    return items


_QUESTION_PREFIX = "Based on Document {doc_id:.15}, answer the following question. "
"""The document-QA prompt's question prefix (MMLongBench data.py); the TSVs store it."""


def _tsv_json(where: str, row: dict[str, str], name: str) -> Any:
    try:
        return json.loads(_field(where, row, name))
    except json.JSONDecodeError as error:
        raise DatasetError(f"{where}: column {name} is not JSON ({error.msg})") from None


def _tsv_image(root: Path | None, length: int, name: str) -> str:
    """An image_path entry relative to ``root``: VLMEvalKit looks under <root>/<length>/
    first, then <root>/ (vlmeval/dataset/mmlongbench.py, _resolve_image_path)."""
    if root is not None and (root / format_tokens(length) / name).is_file():
        return f"{format_tokens(length)}/{name}"
    return name


def _tsv_extra_and_images(where: str, row: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """A VLMEvalKit MMLongBench row's extra_info (a JSON object) and image_path (a JSON list
    of file names)."""
    extra = _tsv_json(where, row, "extra_info")
    images = _tsv_json(where, row, "image_path")
    if not isinstance(extra, dict):
        raise DatasetError(f"{where}: extra_info must be a JSON object")
    if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
        raise DatasetError(f"{where}: image_path must be a JSON list of file names")
    return extra, images


def _mmlb_tsv_item(
    where: str, row: dict[str, str], length: int, root: Path | None,
    resolver: ContextResolver | None,
) -> EvalItem:  # fmt: skip
    extra, pages = _tsv_extra_and_images(where, row)
    dataset = str(_field(where, row, "source_dataset"))
    answer_format = str(_field(where, extra, "answer_format"))
    answer = extra.get("answer", _field(where, row, "answer"))  # extra_info keeps it typed
    _check_answer(where, answer, answer_format)
    doc_name = str(_field(where, extra, "doc_name"))
    question = str(_field(where, extra, "question"))
    question = question.removeprefix(_QUESTION_PREFIX.format(doc_id=doc_name))
    return _build(
        where,
        resolver,
        item_id=f"{dataset}:{format_tokens(length)}:{_field(where, row, 'question_id')}",
        dataset=dataset,
        length=length,
        context=[ImagePart(path=_tsv_image(root, length, page)) for page in pages],
        question=question,
        answer=answer,
        answer_format=answer_format,
        doc_name=doc_name,
        evidence_pages=_zero_based_pages(where, extra.get("ans_page_list")),
        answer_sources=[str(s) for s in extra.get("answer_sources") or []],
    )


def is_mmlb_tsv(path: Path) -> bool:
    """VLMEvalKit's MMLongBench_<n>K.tsv (task, source_dataset, extra_info columns), as
    opposed to its older MMLongBench_DOC.tsv."""
    if not path.is_file():
        return False
    with open(path, encoding="utf-8", newline="") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
    return {"task", "source_dataset", "extra_info"} <= set(header)


def tsv_image_root(path: Path) -> Path | None:
    """Where VLMEvalKit puts MMLongBench's images: <LMUData>/images/mmlb_image beside the
    TSV's folder, or an mmlb_image/ beside the TSV."""
    for candidate in (path.parent / "images" / IMAGE_FOLDER, path.parent / IMAGE_FOLDER):
        if candidate.is_dir():
            return candidate
    return None


TSV_NOT_SCORED = {
    "vrag": "visual RAG: its prompt is not built here",
    "ICL": "many-shot classification (cls_acc): no scorer here",
    "summ": "summarisation (ROUGE): no scorer here",
    "vh": "visual haystack yes/no (binary_acc): no scorer here",
}
"""Why rows of the other MMLongBench categories in VLMEvalKit's TSVs are not scored here
(its vlmeval/dataset/mmlongbench.py, _metric_for, names each category's metric)."""
_TSV_IMAGE_TOKEN = "<image token>"
"""What the TSV prompts hold where MMLongBench's own prompts hold <image>."""


def _tsv_niah_record(
    where: str, row: dict[str, str], kind: tuple[str, str, NiahMetric]
) -> dict[str, Any]:
    """The MM-NIAH record a TSV row was built from (scripts/build_mmlongbench_tsv.py,
    convert_niah): the haystack is the filled prompt's middle (after the one-paragraph
    instruction, before "Question: <question>"), image_path is the haystack images followed by
    the needle or option images, and extra_info is the record less its id and ctxs."""
    extra, images = _tsv_extra_and_images(where, row)
    question = str(_field(where, extra, "question"))
    prompt = str(_field(where, row, "question"))
    ending = f"\n\nQuestion: {question}"
    _, found, haystack = prompt.removesuffix(ending).partition("\n\n")
    if not prompt.endswith(ending) or not found:
        raise DatasetError(
            f"{where}: the prompt is not <instruction>, the haystack and 'Question: "
            "<extra_info question>', each two newlines apart"
        )
    _, modality, metric = kind
    record: dict[str, Any] = {
        "id": _field(where, row, "question_id"),
        "ctxs": [{"text": haystack.replace(_TSV_IMAGE_TOKEN, IMAGE)}],
        "answer": extra.get("answer", _field(where, row, "answer")),
    }
    question_images: list[str] = []
    if modality == "image" and metric is NiahMetric.SOFT_ACC:
        question_images = _strings(where, extra, "needle_image_list")
        record["needle_image_list"] = question_images
        question = question.replace(_TSV_IMAGE_TOKEN, IMAGE)
    elif modality == "image":
        question_images = _strings(where, extra, "choices_image")
        record["choices_image"] = question_images
        options = "".join(
            f"\n{chr(ord('A') + i)}. {_TSV_IMAGE_TOKEN}" for i in range(len(question_images))
        )
        if not question.endswith(options):
            raise DatasetError(f"{where}: the question does not end with its lettered options")
        question = question.removesuffix(options)
    haystack_count = len(images) - len(question_images)
    if haystack_count < 0 or images[haystack_count:] != question_images:
        raise DatasetError(f"{where}: image_path does not end with the question's images")
    record["image_list"] = images[:haystack_count]
    record["question"] = question
    return record


def _mmlb_tsv_niah_item(
    where: str, row: dict[str, str], length: int, root: Path | None,
    resolver: ContextResolver | None,
) -> EvalItem:  # fmt: skip
    kind = niah_task(str(_field(where, row, "source_dataset")))
    record = _tsv_niah_record(where, row, kind)
    for name in ("image_list", "needle_image_list", "choices_image"):
        if name in record:
            record[name] = [_tsv_image(root, length, image) for image in record[name]]
    return _niah_item(where, record, kind, length, resolver)


def _tsv_category(row: dict[str, str]) -> tuple[str, str | None]:
    """(our dataset name, None) for a row we score, else (its category, why not)."""
    task, source = row.get("task", ""), row.get("source_dataset", "")
    if task == "documentQA":
        return source, None
    if task == "NIAH" and source.startswith("vh_"):
        return f"NIAH {source}", TSV_NOT_SCORED["vh"]
    if task == "NIAH":
        try:
            niah, modality, _ = niah_task(source)
        except DatasetError:
            return f"NIAH {source}", "an MM-NIAH task this loader does not know"
        return f"mm-niah-{niah}-{modality}", None
    return f"{task} {source}", TSV_NOT_SCORED.get(task, "a task this loader does not know")


def load_mmlb_tsv(
    path: str | Path,
    image_root: str | Path | None = None,
    *,
    datasets: Iterable[str] = DATASET_GROUPS["all"],
    check_images: bool = True,
    report: LoadReport | None = None,
) -> list[EvalItem]:
    """VLMEvalKit's MMLongBench_{32K,128K,256K,512K}.tsv: the official items (all of them:
    the file is already the released subset), the document-QA and MM-NIAH rows of
    ``datasets``. Columns as its scripts/build_mmlongbench_tsv.py writes them: question_id,
    question (the filled prompt), image_path (JSON list), task, source_dataset and extra_info
    (the original record, typed answer included). Rows of the categories we do not score
    (visual RAG, visual haystack, ICL, summarisation) and of datasets not asked for are
    counted in ``report.not_scored`` with the reason; a malformed row is reported and
    skipped."""
    path = Path(path)
    report = report if report is not None else LoadReport()
    match = _TSV_LENGTH.search(path.name)
    if not match:
        raise DatasetError(f"{path}: not named MMLongBench_<n>K.tsv, so its length is unknown")
    length = int(match.group(1)) * K
    wanted = set(expand_datasets(datasets))
    root = Path(image_root) if image_root is not None else tsv_image_root(path)
    resolver = ContextResolver(root) if check_images else None
    items = []
    for where, row in _tsv_rows(path, report):
        category, not_scored = _tsv_category(row)
        if not_scored is None and category not in wanted:
            not_scored = "not asked for (--datasets)"
        if not_scored is not None:
            key = f"{path.name}: {category} ({not_scored})"
            report.not_scored[key] = report.not_scored.get(key, 0) + 1
            continue
        make = _mmlb_tsv_item if row.get("task") == "documentQA" else _mmlb_tsv_niah_item
        try:
            items.append(make(where, row, length, root, resolver))
        except DatasetError as error:
            report.skip(str(error))
    unscored = sum(n for key, n in report.not_scored.items() if key.startswith(f"{path.name}:"))
    report.item_sets[str(path)] = (
        f"vlmevalkit-tsv (the released rows, all of them; {unscored} rows not scored)"
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
    for _, record in _json_records(path, LoadReport()):
        if record is not None:
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
    subset: Subset = "mmlb",
    report: LoadReport | None = None,
) -> list[EvalItem]:
    """Items from any mix of sources, recognised by their shape: an MMLongBench data folder
    (with documentQA/, or holding mmlb_data/), a .tsv (VLMEvalKit), a .parquet of QA pairs,
    or a .jsonl of MMLongBench documents, MM-NIAH records, QA pairs or EvalItems. ``lengths``
    picks the MMLongBench files and filters every other source; a requested length no source
    has is an error naming the lengths there are. ``subset`` applies to MMLongBench's JSONL."""
    report = report if report is not None else LoadReport()
    wanted = sorted(set(lengths)) if lengths else None
    items: list[EvalItem] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            folder = data_folder(path)
            if not (folder / "documentQA").is_dir() and not (folder / "NIAH").is_dir():
                raise DatasetError(f"{path}: a data folder must hold documentQA/ or NIAH/")
            folder_lengths = [n for n in (wanted or [64 * K, 128 * K]) if n <= max(DOC_LENGTHS)]
            items += load_mmlb_folder(
                folder, image_root, datasets=datasets, lengths=folder_lengths,
                check_images=check_images, subset=subset, report=report,
            )  # fmt: skip
            continue
        if path.suffix == ".tsv" and is_mmlb_tsv(path):
            found = load_mmlb_tsv(path, image_root, datasets=datasets, check_images=check_images,
                                  report=report)  # fmt: skip
        elif path.suffix == ".tsv":
            if image_root is None:
                raise DatasetError(f"{path}: a VLMEvalKit TSV needs --image-root")
            tsv_length = wanted[0] if wanted and len(wanted) == 1 else 128 * K
            found = load_vlmevalkit_tsv(path, image_root, length=tsv_length,
                                        check_images=check_images, report=report)  # fmt: skip
        elif path.suffix == ".parquet":
            found = _heldout(path, pool, spec)
        else:
            record = _first_record(path)
            root = (
                image_root
                if image_root is not None
                else (image_folder_for(path.parent.parent) or path.parent)
            )
            if "context" in record:
                found = read_eval_items(path)
            elif "qa_id" in record:
                found = _heldout(path, pool, spec)
            elif "page_list" in record:
                found = load_doc_file(
                    path, root, check_images=check_images, subset=subset, report=report
                )
            elif "ctxs" in record:
                found = load_niah_file(
                    path, root, check_images=check_images, subset=subset, report=report
                )
            else:
                raise DatasetError(f"{path}: not a data file lvlm-judge knows")
            if "context" in record or "qa_id" in record:
                report.item_sets.setdefault(str(path), SUBSET_NAMES["all"])
        items += [item for item in found if wanted is None or item.length in wanted]
    if wanted:
        have = {item.length for item in items}
        missing = [n for n in wanted if n not in have]
        if missing:
            raise DatasetError(
                f"no item at {_shown(missing)}: the data given has {_shown(have)}. "
                "256K and 512K are VLMEvalKit's MMLongBench_256K.tsv / _512K.tsv or our padding "
                "(lvlm-judge extend)"
            )
    return items


def _heldout(path: Path, pool: PoolLike | None, spec: VisionTokenSpec | None) -> list[EvalItem]:
    if pool is None:
        raise DatasetError(f"{path}: QA pairs need the pool they were made from (--pool)")
    return load_heldout(path, pool, spec=spec)
