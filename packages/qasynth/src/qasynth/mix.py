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

The work is map steps around one driver-side reduce, so an executor (local processes, Ray)
can spread it: ``index_file`` reads one input file's light columns; the driver joins them in
file order and selects (the selection never depends on how the steps ran); ``write_shard``
writes one output shard atomically, tagged with a key of its content (the inputs and its
rows), and skips a shard already written with that key, so a killed mix resumes.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmprolong_runtime import config_hash
from mmprolong_runtime.errors import InputError
from mmprolong_runtime.executor import Executor
from mmprolong_runtime.finished import finish, keyed_metadata, parquet_key, read_finished
from mmprolong_schemas import MixtureSpec, Task
from mmprolong_schemas.io import atomic_path
from mmprolong_schemas.sample import LengthDistribution
from mmprolong_schemas.units import B, K
from qasynth.bounded_cache import ByteBoundedLRU
from qasynth.steps import run_steps

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

SHARD_KEY = b"qasynth.mix_shard_key"
TABLE_CACHE_BYTES = 1 << 30

Shortfall = Literal["shrink", "repeat", "error"]


class MixtureError(InputError):
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


@dataclass
class FileIndex:
    """What one input file adds to the index: its samples' ids and selection columns."""

    ids: list[str]
    task: np.ndarray
    tokens: np.ndarray
    pages: np.ndarray


def index_file(path: str) -> FileIndex:
    """Map step: the light columns of one Parquet file of samples."""
    try:
        written_as = (pq.read_schema(path).metadata or {}).get(b"mmprolong.model", b"")
        if written_as != b"Sample":
            raise MixtureError(f"{path} holds {written_as.decode() or 'no'} records, not Sample")
        table = pq.read_table(path, columns=_INDEX_COLUMNS)
    except (pa.ArrowInvalid, OSError, KeyError) as error:
        raise MixtureError(f"{path} is not a Parquet file of samples ({error})") from None
    return FileIndex(
        table.column("sample_id").to_pylist(),
        np.asarray(table.column("task").to_pylist(), dtype=object),
        table.column("est_tokens").to_numpy().astype(np.int64),
        _page_counts(table.column("pages")),
    )


def load_index(inputs: Sequence[str | Path], executor: Executor | None = None) -> SampleIndex:
    """Index every sample of the Parquet files (or folders of them) in ``inputs``, one
    ``index_file`` step per file; a sample id seen twice is kept once (the first, in file
    order)."""
    files = _sample_files(inputs)
    steps = ((number, (str(path),)) for number, path in enumerate(files))
    read = dict(run_steps(executor, index_file, steps, passthrough=(MixtureError,)))
    parts: dict[str, list[np.ndarray]] = {
        "file": [],
        "row": [],
        "task": [],
        "tokens": [],
        "pages": [],
    }
    seen: set[str] = set()
    for number in range(len(files)):
        part = read[number]
        keep = np.zeros(len(part.ids), dtype=bool)
        for position, sample_id in enumerate(part.ids):
            if sample_id not in seen:
                seen.add(sample_id)
                keep[position] = True
        parts["file"].append(np.full(keep.sum(), number, dtype=np.int32))
        parts["row"].append(np.nonzero(keep)[0].astype(np.int64))
        parts["task"].append(part.task[keep])
        parts["tokens"].append(part.tokens[keep])
        parts["pages"].append(part.pages[keep])
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


def _check_apart(inputs: Sequence[str | Path], out: Path) -> None:
    """The output folder may not sit inside an input folder (its shards would be read as
    inputs by the next run) nor hold an input (stale shards there are deleted)."""
    target = out.resolve()
    for item in inputs:
        source = Path(item).resolve()
        if source.is_dir() and target.is_relative_to(source):
            raise MixtureError(
                f"output folder {out} is inside input folder {item}: its shards would become "
                "inputs of the next mix; choose an output folder outside the inputs"
            )
        if source.is_relative_to(target):
            raise MixtureError(
                f"input {item} is inside output folder {out}, whose old shards are replaced; "
                "choose another output folder"
            )


def build_mixture(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    spec: MixtureSpec | None = None,
    *,
    shard_size: int = 2000,
    shortfall: Shortfall = "shrink",
    plot: bool = True,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Select, write shards and the report; returns the report. A rerun with the same inputs
    and spec finds the report and returns it without writing anything; a rerun after a kill
    rewrites only the shards that were not finished. With an ``executor`` the input files are
    indexed and the shards written as its tasks (the mixture is the same)."""
    spec = spec or MixtureSpec()
    if shard_size < 1:
        raise MixtureError(f"shard_size {shard_size} must be at least 1")
    out = Path(out_dir)
    _check_apart(inputs, out)
    files = _sample_files(inputs)
    inputs_key = _fingerprint(files)
    key = config_hash(
        {
            "spec": config_hash(spec.model_dump(mode="json")),
            "inputs": inputs_key,
            "shard_size": shard_size,
            "shortfall": shortfall,
        }
    )
    report_path = out / REPORT_FILE
    previous = read_finished(report_path, key, old_outputs=lambda old: old.get("shards", []))
    if previous:
        return previous | {"reused": True}
    started = time.perf_counter()
    index = load_index(files, executor)
    mixture = select(index, spec, shortfall)
    shards, reused = _write_shards(index, mixture.rows, out, shard_size, inputs_key, executor)
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
    return finish(report_path, key, shards, **report) | {"shards_reused": reused}


def _write_shards(
    index: SampleIndex,
    rows: np.ndarray,
    out: Path,
    shard_size: int,
    inputs_key: str,
    executor: Executor | None,
) -> tuple[list[str], int]:
    """One ``write_shard`` step per shard of ``shard_size`` rows; the shard names, and how
    many were found already written."""
    out.mkdir(parents=True, exist_ok=True)
    used = sorted(set(index.file[rows].tolist()))
    # Every shard is cast to one schema: the first input file the mixture uses.
    reference = str(index.files[used[0]]) if used else ""
    steps = []
    for shard, start in enumerate(range(0, len(rows), shard_size)):
        chunk = rows[start : start + shard_size]
        files = index.file[chunk]
        picked = index.row[chunk]
        digest = hashlib.sha256(inputs_key.encode())
        digest.update(files.astype(np.int64).tobytes())
        digest.update(picked.astype(np.int64).tobytes())
        numbers = sorted(set(files.tolist()))
        local = np.searchsorted(np.asarray(numbers), files)
        paths = [str(index.files[n]) for n in numbers]
        name = SHARD_PATTERN.format(shard)
        steps.append(
            (name, (str(out / name), digest.hexdigest()[:32], reference, paths, local, picked))
        )
    written = dict(run_steps(executor, write_shard, steps))
    names = [name for name, _ in steps]
    for stale in out.glob("samples-*.parquet"):
        if stale.name not in names:
            stale.unlink()
    return names, sum(1 for name in names if written[name] == "reused")


def write_shard(
    target: str,
    key: str,
    reference: str,
    files: list[str],
    file_of: np.ndarray,
    row_of: np.ndarray,
) -> str:
    """Map step: write rows ``row_of`` of ``files[file_of]``, in that order, to ``target``
    atomically, in the schema of ``reference``, tagged with ``key``. A shard already written
    with ``key`` is kept ("reused"); else "written"."""
    if parquet_key(target, SHARD_KEY) == key:
        return "reused"
    schema = pq.read_schema(reference)
    pieces, order = [], []
    for number, path in enumerate(files):
        members = np.nonzero(file_of == number)[0]
        table = _input_table(path)
        pieces.append(table.take(pa.array(row_of[members])).cast(schema))
        order.append(members)
    table = pa.concat_tables(pieces)
    # Restore the chosen order after taking per file.
    table = table.take(pa.array(np.argsort(np.concatenate(order), kind="stable")))
    metadata = keyed_metadata(schema.metadata, SHARD_KEY, key)
    with atomic_path(target) as tmp:
        pq.write_table(table.replace_schema_metadata(metadata), tmp, compression="zstd")
    return "written"


# The newest table stays even when it alone passes the bound: the next shard reads it again.
_TABLES: ByteBoundedLRU[tuple[str, int, int], pa.Table] = ByteBoundedLRU(
    TABLE_CACHE_BYTES, keep_newest=True
)
_TABLES_LOCK = threading.Lock()


def _input_table(path: str) -> pa.Table:
    """An input file's rows. Consecutive shards draw from the same files, and a process (this
    one, or an executor's worker, which runs many shard steps) keeps the most recently read
    ones up to ``TABLE_CACHE_BYTES`` instead of reading them again for every shard."""
    stat = Path(path).stat()
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _TABLES_LOCK:
        table = _TABLES.get(key)
        if table is not None:
            return table
    table = pq.read_table(path)
    with _TABLES_LOCK:
        _TABLES.put(key, table, table.nbytes)
    return table
