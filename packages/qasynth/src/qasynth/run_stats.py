"""Statistics of a run directory or a mixture directory, from the files the stages wrote."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from mmprolong_schemas import QAPair, read_jsonl
from qasynth.grounding import grounding_rates
from qasynth.mix import REPORT_FILE
from qasynth.pipeline import PAIRS_FILE, QA_STATS_FILE, SAMPLES_DIR, SEGMENTS_SUMMARY


def _load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def qa_statistics(path: Path) -> dict[str, Any]:
    """Counts of pairs by task, answer format, evidence pages and evidence source."""
    tasks: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    pages: Counter[int] = Counter()
    sources: Counter[str] = Counter()
    for pair in read_jsonl(path, QAPair):
        tasks[pair.task.value] += 1
        formats[pair.answer_format.value] += 1
        pages[len(pair.evidence_pages)] += 1
        sources.update(s.value for s in pair.evidence_sources)
    return {
        "pairs": sum(tasks.values()),
        "tasks": dict(tasks),
        "answer_formats": dict(formats),
        "evidence_page_counts": dict(sorted(pages.items())),
        "evidence_sources": dict(sources),
        "grounding": grounding_rates(read_jsonl(path, QAPair)),
    }


def run_statistics(directory: str | Path) -> dict[str, dict[str, Any]]:
    """Every statistic found in ``directory``, by stage name."""
    root = Path(directory)
    found: dict[str, dict[str, Any]] = {}
    if (segments := _load(root / SEGMENTS_SUMMARY)) is not None:
        found["segments"] = segments
    if (qa := _load(root / QA_STATS_FILE)) is not None:
        found["QA generation"] = qa
    if (root / PAIRS_FILE).exists():
        found["QA pairs"] = qa_statistics(root / PAIRS_FILE)
    if (samples := _load(root / SAMPLES_DIR / "summary.json")) is not None:
        found["samples"] = samples
    if (mixture := _load(root / REPORT_FILE)) is not None:
        found["mixture"] = mixture
    return found
