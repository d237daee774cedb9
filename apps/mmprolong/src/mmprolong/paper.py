"""The paper's published figures (shipped as data), for context in reports.

These are the paper's numbers, measured on the real benchmarks with 7B/8B models; a report
shows them beside ours, labelled as reference, never mixed into our own results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from mmprolong_schemas import ModelFamily, Recipe

TABLE_TITLES = {
    "table1_vqa_vs_ocr": "Table 1: long-document VQA vs OCR transcription data",
    "table2_extraction_reasoning_ratio": "Table 2: extraction:reasoning ratio",
    "table4_long_document_vqa": "Table 4: long-document VQA at 64K and 128K",
    "table5_beyond_128k": "Table 5: beyond the 128K training window",
    "table14_length_distribution": "Table 14: pool-native vs long-biased lengths",
    "table15_short_data_long_vqa": "Table 15: short-data share, long-document VQA",
    "table16_mrope_base": "Table 16: mRoPE base",
    "table20_qwen3vl_doc": "Table 20: the recipe on Qwen3-VL-8B",
}


@dataclass(frozen=True)
class PaperRow:
    table: str
    row: str
    values: dict[str, float]

    @property
    def title(self) -> str:
        return TABLE_TITLES.get(self.table, self.table)


@cache
def paper_tables() -> dict[str, Any]:
    text = resources.files("mmprolong").joinpath("data/paper_tables.json").read_text("utf-8")
    tables: dict[str, Any] = json.loads(text)
    return tables


def paper_row(table: str, row: str) -> PaperRow:
    tables = paper_tables()
    if table not in tables or row not in tables[table]:
        raise KeyError(f"the paper's tables have no row {row!r} in {table!r}")
    return PaperRow(table, row, dict(tables[table][row]))


def rows_for(recipe: Recipe, sweep_row: tuple[str, str] | None = None) -> list[PaperRow]:
    """The published rows that give context to a run of ``recipe``: the headline comparison
    for its model family, and the ablation row it reproduces when it is a sweep run."""
    if recipe.family is ModelFamily.QWEN3_VL:
        rows = [
            paper_row("table20_qwen3vl_doc", "Qwen3-VL-8B"),
            paper_row("table20_qwen3vl_doc", "Qwen3-VL-8B + recipe"),
        ]
    else:
        rows = [
            paper_row("table4_long_document_vqa", "Qwen2.5-VL-7B"),
            paper_row("table4_long_document_vqa", "MMProLong"),
            paper_row("table5_beyond_128k", "Qwen2.5-VL-7B"),
            paper_row("table5_beyond_128k", "MMProLong"),
        ]
    if sweep_row is not None:
        rows.append(paper_row(*sweep_row))
    return rows
