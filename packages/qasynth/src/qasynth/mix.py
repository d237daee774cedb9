"""Token-budgeted training mixtures: which samples, how many tokens per task, in what order.

Selection works on a light index (id, task, tokens, pages) read from the sample Parquet files,
never on validated records, so 100k+ samples mix in seconds. Each task gets its share of the
token budget (``MixtureSpec.task_budget``: long tasks by ``task_ratios``, short data by
``short_share``) and is filled in a seeded random order (weighted by the histogram for the
``custom`` length distribution): take samples while they fit, then fill the gap with any later
sample that still fits. With a pool too small for a budget, ``shrink`` scales every budget by
the same factor so the ratios still hold, ``repeat`` reuses samples, ``error`` stops.

Selected rows are copied with Arrow from the input files into shards of the same Parquet
layout ``mmprolong_schemas.write_parquet`` writes (so ``read_parquet(..., Sample)`` reads
them), in a seeded shuffled order, next to ``mixture.json`` and ``token_histogram.png``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmprolong_schemas import (
    B,
    K,
    LengthDistribution,
    MixtureSpec,
    Task,
    atomic_path,
    config_hash,
)

REPORT_FILE = "mixture.json"
HISTOGRAM_FILE = "token_histogram.png"
SHARD_PATTERN = "samples-{:05d}.parquet"
LONG_THRESHOLD = 100 * K
_INDEX_COLUMNS = ["sample_id", "task", "est_tokens", "pages"]
_LONG_DOC_TASKS = {
    Task.EXTRACT_SINGLE,
    Task.EXTRACT_MULTI,
    Task.REASONING,
    Task.OCR_FULL,
    Task.OCR_NEEDLE,
}

Shortfall = Literal["shrink", "repeat", "error"]


class MixtureError(ValueError):
    pass


@dataclass
class SampleIndex:
    """One row per input sample: where it is and what selection needs."""

    file: np.ndarray
    row: np.ndarray
    task: np.ndarray
    tokens: np.ndarray
    pages: np.ndarray
    files: list[Path]

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def _sample_files(inputs: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(path.rglob("*.parquet"))
        elif path.exists():
            files.append(path)
        else:
            raise MixtureError(f"sample input {path} does not exist")
    if not files:
        raise MixtureError(f"no Parquet files of samples under {[str(i) for i in inputs]}")
    return files


def _page_counts(column: pa.ChunkedArray) -> np.ndarray:
    # The pages column holds JSON lists of ints: counting commas is exact and fast.
    texts = column.to_pylist()
    return np.fromiter(
        (0 if not t or t == "[]" else t.count(",") + 1 for t in texts),
        dtype=np.int64,
        count=len(texts),
    )


def load_index(inputs: Sequence[str | Path]) -> SampleIndex:
    """Index every sample of the Parquet files (or folders of them) in ``inputs``; a sample id
    seen twice is kept once."""
    files = _sample_files(inputs)
    parts: dict[str, list[np.ndarray]] = {
        "file": [],
        "row": [],
        "task": [],
        "tokens": [],
        "pages": [],
    }
    seen: set[str] = set()
    for number, path in enumerate(files):
        try:
            written_as = (pq.read_schema(path).metadata or {}).get(b"mmprolong.model", b"")
            if written_as != b"Sample":
                raise MixtureError(
                    f"{path} holds {written_as.decode() or 'no'} records, not Sample"
                )
            table = pq.read_table(path, columns=_INDEX_COLUMNS)
        except (pa.ArrowInvalid, OSError, KeyError) as error:
            raise MixtureError(f"{path} is not a Parquet file of samples ({error})") from None
        keep = np.zeros(table.num_rows, dtype=bool)
        for position, sample_id in enumerate(table.column("sample_id").to_pylist()):
            if sample_id not in seen:
                seen.add(sample_id)
                keep[position] = True
        parts["file"].append(np.full(keep.sum(), number, dtype=np.int32))
        parts["row"].append(np.nonzero(keep)[0].astype(np.int64))
        parts["task"].append(np.asarray(table.column("task").to_pylist(), dtype=object)[keep])
        parts["tokens"].append(table.column("est_tokens").to_numpy().astype(np.int64)[keep])
        parts["pages"].append(_page_counts(table.column("pages"))[keep])
    joined = {name: np.concatenate(arrays) for name, arrays in parts.items()}
    return SampleIndex(
        joined["file"], joined["row"], joined["task"], joined["tokens"], joined["pages"], files
    )


def _eligible(index: SampleIndex, spec: MixtureSpec, task: Task) -> np.ndarray:
    mask = (index.task == task.value) & (index.tokens <= spec.max_length)
    if task in _LONG_DOC_TASKS:
        mask &= index.tokens >= spec.min_tokens
        if spec.doc_pages is not None:
            mask &= (index.pages >= spec.doc_pages[0]) & (index.pages <= spec.doc_pages[1])
    return np.nonzero(mask)[0]


def _order(
    index: SampleIndex, members: np.ndarray, spec: MixtureSpec, task: Task, rng: np.random.Generator
) -> np.ndarray:
    """A random order of ``members``; weighted by histogram bin for custom distributions."""
    if spec.length_distribution is not LengthDistribution.CUSTOM or task not in _LONG_DOC_TASKS:
        return members[rng.permutation(len(members))]
    assert spec.histogram is not None
    tokens = index.tokens[members]
    weights = np.zeros(len(members))
    for hbin in spec.histogram:
        inside = (tokens >= hbin.low) & (tokens < hbin.high)
        if inside.any():
            weights[inside] = hbin.weight / inside.sum()
    keep = weights > 0
    members, weights = members[keep], weights[keep]
    # Efraimidis-Spirakis: sorting u^(1/w) draws a weighted order without replacement.
    keys = np.log(rng.random(len(members))) / weights
    return members[np.argsort(-keys, kind="stable")]


def _fill(order: np.ndarray, tokens: np.ndarray, budget: int) -> tuple[list[int], int]:
    """Take samples in ``order`` while they fit ``budget``, then any later one that fits."""
    if budget <= 0 or not len(order):
        return [], 0
    sizes = tokens[order]
    total = np.cumsum(sizes)
    prefix = int(np.searchsorted(total, budget, side="right"))
    chosen = order[:prefix].tolist()
    used = int(total[prefix - 1]) if prefix else 0
    smallest = int(sizes[prefix:].min()) if prefix < len(order) else 0
    for position in range(prefix, len(order)):
        gap = budget - used
        if gap < smallest:
            break
        if sizes[position] <= gap:
            chosen.append(int(order[position]))
            used += int(sizes[position])
    return chosen, used


@dataclass
class Mixture:
    rows: np.ndarray
    budgets: dict[Task, int]
    achieved: dict[Task, int]
    scale: float
    repeats: int


def select(index: SampleIndex, spec: MixtureSpec, shortfall: Shortfall = "shrink") -> Mixture:
    """Indices into ``index`` of the mixture's samples, in training order."""
    rng = np.random.default_rng(spec.seed)
    tasks = list(spec.long_tasks) + ([Task.SHORT] if spec.short_share > 0 else [])
    budgets = {task: spec.task_budget(task) for task in tasks}
    orders = {task: _order(index, _eligible(index, spec, task), spec, task, rng) for task in tasks}
    available = {task: int(index.tokens[orders[task]].sum()) for task in tasks}
    scale, repeats = 1.0, 1
    short = {t: (available[t], budgets[t]) for t in tasks if available[t] < budgets[t]}
    if short:
        words = ", ".join(f"{t.value} has {a:,} of {b:,} tokens" for t, (a, b) in short.items())
        if shortfall == "error":
            raise MixtureError(f"the pool is too small for the budget: {words}")
        if any(a == 0 for a, _ in short.values()):
            raise MixtureError(f"the pool has no eligible samples for: {words}")
        if shortfall == "shrink":
            scale = min(a / b for a, b in short.values())
            budgets = {t: int(b * scale) for t, b in budgets.items()}
        else:
            repeats = max(-(-b // a) for a, b in short.values())
    chosen: list[int] = []
    achieved: dict[Task, int] = {}
    for task in tasks:
        order = orders[task]
        if repeats > 1:
            order = np.concatenate([order] + [rng.permutation(order) for _ in range(repeats - 1)])
        rows, used = _fill(order, index.tokens, budgets[task])
        chosen += rows
        achieved[task] = used
    rows_array = np.asarray(chosen, dtype=np.int64)
    rows_array = rows_array[rng.permutation(len(rows_array))]
    return Mixture(rows_array, budgets, achieved, scale, repeats)


def task_statistics(tokens: np.ndarray, pages: np.ndarray) -> dict[str, Any]:
    """Table-10-style figures: samples, average pages and K tokens, total B tokens, ranges."""
    if not len(tokens):
        return {"samples": 0}
    return {
        "samples": int(len(tokens)),
        "avg_pages": round(float(pages.mean()), 1),
        "avg_tokens_k": round(float(tokens.mean()) / K, 1),
        "total_tokens_b": round(float(tokens.sum()) / B, 4),
        "total_tokens": int(tokens.sum()),
        "page_range": [int(pages.min()), int(pages.max())],
        "token_range_k": [round(float(tokens.min()) / K, 1), round(float(tokens.max()) / K, 1)],
        "share_at_least_100k": round(float((tokens >= LONG_THRESHOLD).mean()), 4),
    }


def _plot(path: Path, index: SampleIndex, rows: np.ndarray, max_length: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5), dpi=110)
    # 32 bins over [0, max_length]: 4K-wide at the recipe's 128K, finer for short demo rows.
    edges = np.linspace(0, max_length, 33) / K
    tasks = sorted(set(index.task[rows].tolist()))
    data = [index.tokens[rows][index.task[rows] == t] / K for t in tasks]
    axis.hist(data, bins=edges.tolist(), stacked=True, label=tasks)
    axis.set_xlabel("tokens per sample (K = 1024)")
    axis.set_ylabel("samples")
    axis.set_title("Token-length distribution of the mixture")
    if tasks:
        axis.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)


def _fingerprint(files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def build_mixture(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    spec: MixtureSpec | None = None,
    *,
    shard_size: int = 2000,
    shortfall: Shortfall = "shrink",
    plot: bool = True,
) -> dict[str, Any]:
    """Select, write shards and the report; returns the report. A rerun with the same inputs
    and spec finds the report and returns it without writing anything."""
    spec = spec or MixtureSpec()
    if shard_size < 1:
        raise MixtureError(f"shard_size {shard_size} must be at least 1")
    out = Path(out_dir)
    files = _sample_files(inputs)
    key = {
        "spec": config_hash(spec.model_dump(mode="json")),
        "inputs": _fingerprint(files),
        "shard_size": shard_size,
        "shortfall": shortfall,
    }
    report_path = out / REPORT_FILE
    if report_path.exists():
        previous = json.loads(report_path.read_text(encoding="utf-8"))
        shards = previous.get("shards", [])
        if previous.get("key") == key and all((out / s).exists() for s in shards):
            previous["reused"] = True
            return dict(previous)
    started = time.perf_counter()
    index = load_index(files)
    mixture = select(index, spec, shortfall)
    shards = _write_shards(index, mixture.rows, out, shard_size)
    rows = mixture.rows
    per_task = {}
    for task in sorted(set(index.task[rows].tolist())):
        members = rows[index.task[rows] == task]
        stats = task_statistics(index.tokens[members], index.pages[members])
        budget = mixture.budgets.get(Task(task), 0)
        stats["budget_tokens"] = budget
        stats["budget_error"] = (
            round(abs(stats["total_tokens"] - budget) / budget, 6) if budget else None
        )
        per_task[task] = stats
    total = int(index.tokens[rows].sum())
    report = {
        "key": key,
        "spec": spec.model_dump(mode="json"),
        "shortfall": shortfall,
        "budget_scale": round(mixture.scale, 6),
        "repeats": mixture.repeats,
        "pool_samples": len(index),
        "tasks": per_task,
        "total": task_statistics(index.tokens[rows], index.pages[rows]),
        "token_shares": {
            t: round(s["total_tokens"] / total, 6) if total else 0.0 for t, s in per_task.items()
        },
        "shards": shards,
        "histogram": HISTOGRAM_FILE if plot else None,
        "seconds": 0.0,
    }
    if plot:
        _plot(out / HISTOGRAM_FILE, index, rows, spec.max_length)
    report["seconds"] = round(time.perf_counter() - started, 3)
    with atomic_path(report_path) as tmp:
        tmp.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def _write_shards(index: SampleIndex, rows: np.ndarray, out: Path, shard_size: int) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    tables = {}
    for number in sorted(set(index.file[rows].tolist())):
        tables[number] = pq.read_table(index.files[number])
    reference = next(iter(tables.values()), None)
    names: list[str] = []
    for shard, start in enumerate(range(0, len(rows), shard_size)):
        chunk = rows[start : start + shard_size]
        pieces = [
            tables[int(f)].take(pa.array(index.row[chunk][index.file[chunk] == f]))
            for f in np.unique(index.file[chunk])
        ]
        # Restore the chosen order inside the shard after taking per file.
        order = np.concatenate(
            [np.nonzero(index.file[chunk] == f)[0] for f in np.unique(index.file[chunk])]
        )
        assert reference is not None
        table = pa.concat_tables([p.cast(reference.schema) for p in pieces])
        table = table.take(pa.array(np.argsort(order, kind="stable")))
        name = SHARD_PATTERN.format(shard)
        with atomic_path(out / name) as tmp:
            pq.write_table(
                table.replace_schema_metadata(reference.schema.metadata), tmp, compression="zstd"
            )
        names.append(name)
    for stale in out.glob("samples-*.parquet"):
        if stale.name not in names:
            stale.unlink()
    return names
