"""VTCBench's containsAll score, restated from its definition.

VTCBench (github.com/Moenupa/VTCBench, docs/DATA.md and src/vtcbench/metric.py ``calc_metrics``)
scores its Retrieval and Reasoning splits with containsAll: after dropping ``<think>...</think>``
blocks and surrounding whitespace from the response, and stripping each gold answer (taken as
text), the share of gold answers that occur in the response as substrings. Both sides are
lower-cased first (since its commit b21255d, 2025-12-08, "does not affect existing results").
Its Memory split is scored by an LLM judge (lvlm_judge.vtc_judge).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmprolong_runtime.errors import InputError
from mmprolong_schemas.io import atomic_path

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


def contains_all(response: str, gold_answers: Sequence[object]) -> float:
    """Share of ``gold_answers`` contained in ``response`` (1.0 when all are)."""
    golds = [str(answer).strip().lower() for answer in gold_answers]
    if not golds:
        raise ValueError("containsAll needs at least one gold answer")
    text = _THINK.sub("", response).strip().lower()
    return sum(gold in text for gold in golds) / len(golds)


VTC_SPLITS = ("Retrieval", "Reasoning", "Memory")
CONTAINS_ALL_SPLITS = ("Retrieval", "Reasoning")
"""Splits scored by containsAll; Memory is scored by an LLM judge."""
PAPER_COLUMNS = {"Retrieval": "VTC.Ret", "Reasoning": "VTC.Reas", "Memory": "VTC.Mem"}
"""Split -> column of table18_vtcbench_wild (prefixed to keep MM-NIAH's Ret/Reas apart)."""


class VtcDataError(InputError):
    """The VTCBench-Wild release is missing or not in its released layout."""


@dataclass(frozen=True)
class VtcItem:
    item_id: str
    split: str
    problem: str
    answers: list[str]
    images: list[str]
    """Image files, relative to the image root they were written under."""


def split_files(release: str | Path, split: str) -> list[Path]:
    """The Parquet files of one split of the Hugging Face release (MLLM-CL/VTCBench, fetched
    with `hf download --repo-type dataset MLLM-CL/VTCBench --local-dir DIR`), named
    ``<split>-NNNNN-of-NNNNN.parquet`` as the Hub stores a pushed split."""
    root = Path(release)
    files = sorted(root.glob(f"**/{split}-*.parquet"))
    if not files:
        raise VtcDataError(
            f"{root}: no {split}-*.parquet. Download VTCBench-Wild first: `hf download "
            f"--repo-type dataset MLLM-CL/VTCBench --local-dir {root}`"
        )
    return files


def load_vtc_split(release: str | Path, split: str, image_root: str | Path) -> list[VtcItem]:
    """One split's items, restated from VTCBench's examples/run_wild.py (columns problem,
    answers, images, _context) and src/vtcbench/async_evaluate.py (each image is a struct whose
    ``bytes`` are sent to the model). The images are written once under ``image_root``."""
    import pyarrow.parquet as pq

    root = Path(image_root)
    items: list[VtcItem] = []
    for file in split_files(release, split):
        table = pq.read_table(file)
        missing = {"problem", "answers", "images"} - set(table.column_names)
        if missing:
            raise VtcDataError(f"{file}: no column(s) {sorted(missing)}; not VTCBench-Wild")
        for row, record in enumerate(table.to_pylist()):
            item_id = f"{split}-{file.stem}-{row}"
            paths = []
            for k, image in enumerate(record["images"] or []):
                if not image or not image.get("bytes"):
                    raise VtcDataError(f"{file}: row {row} image {k} has no bytes")
                relative = f"{split}/{item_id}-{k}.img"
                target = root / relative
                if not target.exists():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_path(target) as tmp:
                        tmp.write_bytes(image["bytes"])
                paths.append(relative)
            answers = record["answers"]
            if not answers:
                raise VtcDataError(f"{file}: row {row} has no answers")
            items.append(VtcItem(item_id, split, str(record["problem"]),
                                 [str(a) for a in answers], paths))  # fmt: skip
    return items


def read_instructions(path: str | Path) -> dict[str, str]:
    """Split -> instruction put before each problem. VTCBench's own instructions (in its
    examples/run_wild.py) are not shipped here: the user copies them into this JSON file."""
    file = Path(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise VtcDataError(f"{file}: cannot read the instructions ({error})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise VtcDataError(f"{file}: expected a JSON object of split -> instruction text")
    return data


def evaluate_split(
    items: Sequence[VtcItem],
    runner: Any,
    instruction: str,
    predictions_path: str | Path,
) -> list[tuple[VtcItem, str, float]]:
    """Generate an answer per item (images first, then instruction + problem, as VTCBench's
    evaluate_static builds its request) and score it with containsAll. Predictions already in
    ``predictions_path`` are reused; new ones are appended as they come."""
    from lvlm_judge.prompting import Prompt
    from lvlm_judge.runners.base import GenerationRequest
    from mmprolong_schemas import ImagePart

    path = Path(predictions_path)
    done: dict[str, str] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["item_id"]] = record["prediction"]
    todo = [
        GenerationRequest(
            item.item_id,
            Prompt([*(ImagePart(path=p) for p in item.images), instruction + item.problem],
                   "", "vtcbench-wild"),
        )
        for item in items
        if item.item_id not in done
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        for prediction in runner.generate(todo):
            if prediction.error:
                continue  # not recorded: a rerun tries it again
            done[prediction.item_id] = prediction.output
            handle.write(json.dumps({"item_id": prediction.item_id,
                                     "prediction": prediction.output}) + "\n")  # fmt: skip
            handle.flush()
    return [
        (item, done[item.item_id], contains_all(done[item.item_id], item.answers))
        for item in items
        if item.item_id in done
    ]
