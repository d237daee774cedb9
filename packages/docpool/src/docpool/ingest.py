"""Ingest: files in, a pool out. Resumable, append-only, robust to hostile input.

1. Expand the sources into candidate files (sorted, each path once).
2. In this process, read only bytes: size limit, PDF magic, SHA-256, exclusion list, truncation,
   duplicates (same bytes: one document, other paths become aliases), what the pool holds.
3. Parse each new document through the executor (separate processes, timeout, memory cap):
   one probe task per document, which parses its first ``chunk_pages`` pages (all of most
   documents) and, when that is all of it, builds and serialises its record in the worker;
   the other chunks of longer documents are then parsed with the probe's style profile.
4. Append Documents, aliases and rejects as new shards every ``batch_size`` records.

A rerun skips every path and every hash the pool already holds (accepted, aliased or
rejected), so killing a run at any point and running it again gives the same pool.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from docpool.hashes import read_hash_file
from docpool.identity import has_pdf_magic, looks_truncated, sha256_file
from docpool.ocr import check_ocr_language
from docpool.parse import (
    PAGE_LIMIT_REASONS,
    TRANSIENT_REASONS,
    DocumentRejected,
    DocumentRejectReason,
    ParsedPages,
    ParseOptions,
    Probe,
    chunk_ranges,
    collector_paused,
    parse_page_range,
    probe_document,
    warm_up,
)
from docpool.pool import Alias, HashRecord, IngestLock, PoolWriter, Reject, latest_rejects
from docpool.sections import sections_from_headings, sections_from_outline
from docpool.sources import SourceFile, expand_sources, load_domain_map, resolve_domain
from mmprolong_runtime import RunManifest
from mmprolong_runtime.executor import (
    Executor,
    LocalExecutor,
    TaskCrashed,
    TaskMemoryExceeded,
    TaskOutcome,
    TaskTimeout,
)
from mmprolong_runtime.finished import read_finished_items
from mmprolong_schemas import Document
from mmprolong_schemas.io import pool_shards, record_to_row

DEFAULT_MAX_FILE_BYTES = 1 << 30


@dataclass
class IngestReport:
    """What a run did. ``rejected`` counts new rejects by reason."""

    pool: Path
    candidates: int = 0
    added: int = 0
    pages_added: int = 0
    aliases_added: int = 0
    already_in_pool: int = 0
    retried: int = 0  # files rejected before and judged again by this run
    rejected: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def pages_per_second(self) -> float:
        return self.pages_added / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "pool": str(self.pool),
            "candidates": self.candidates,
            "added": self.added,
            "pages_added": self.pages_added,
            "aliases_added": self.aliases_added,
            "already_in_pool": self.already_in_pool,
            "retried": self.retried,
            "rejected": dict(self.rejected),
            "seconds": round(self.seconds, 3),
            "pages_per_second": round(self.pages_per_second, 1),
        }


@dataclass
class _PoolState:
    source_of: dict[str, str] = field(default_factory=dict)  # doc_id -> source path
    aliases: set[tuple[str, str]] = field(default_factory=set)
    rejected_paths: set[str] = field(default_factory=set)  # settled: not judged again
    rejected_ids: dict[str, Reject] = field(default_factory=dict)
    hashes: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # path -> stat, id
    retry_paths: set[str] = field(default_factory=set)  # rejected before, judged again


_PAGES_DETAIL = re.compile(r"^(\d+) pages\b")


def _settled(reject: Reject, retry_rejects: bool, min_pages: int, max_pages: int) -> bool:
    """Whether an earlier verdict stands for this run: not with ``retry_rejects``, not for
    a transient failure (timeout, memory, crash), not for a page-limit verdict the run's
    limits would not give (the file is judged again)."""
    if retry_rejects:
        return False
    try:
        reason = DocumentRejectReason(reject.reason)
    except ValueError:
        return True
    if reason in TRANSIENT_REASONS:
        return False
    if reason in PAGE_LIMIT_REASONS:
        pages = reject.num_pages
        if pages is None:  # written before rejects kept their page count
            match = _PAGES_DETAIL.match(reject.detail)
            pages = int(match.group(1)) if match else None
        return pages is not None and not min_pages <= pages <= max_pages
    return True


def _load_state(
    root: Path, retry_rejects: bool = False, min_pages: int = 1, max_pages: int = 1 << 30
) -> _PoolState:
    """What the pool already holds, from its shards: every row of a shard is a finished item
    (``read_finished_items``), and the shards come in run order, so a path's latest reject
    verdict is the one that counts."""
    state = _PoolState()
    for row in read_finished_items(pool_shards(root, "documents"), ["doc_id", "source_path"]):
        state.source_of.setdefault(row["doc_id"], row["source_path"])
    for row in read_finished_items(pool_shards(root, "aliases"), ["doc_id", "path"]):
        state.aliases.add((row["doc_id"], row["path"]))
    for row in read_finished_items(
        pool_shards(root, "hashes"), ["path", "size", "mtime_ns", "doc_id"]
    ):
        state.hashes[row["path"]] = (row["size"], row["mtime_ns"], row["doc_id"])
    pooled = set(state.source_of.values()) | {path for _, path in state.aliases}
    for reject in latest_rejects(root).values():
        if reject.path in pooled or (reject.doc_id and reject.doc_id in state.source_of):
            continue
        if not _settled(reject, retry_rejects, min_pages, max_pages):
            state.retry_paths.add(reject.path)
            continue
        state.rejected_paths.add(reject.path)
        if reject.doc_id:
            state.rejected_ids.setdefault(reject.doc_id, reject)
    return state


@dataclass
class _Candidate:
    doc_id: str
    source: SourceFile
    path: str
    file_size: int
    domain: str | None
    duplicates: list[str] = field(default_factory=list)


_ERROR_REASONS: list[tuple[type[BaseException], DocumentRejectReason]] = [
    (TaskTimeout, DocumentRejectReason.TIMEOUT),
    (TaskMemoryExceeded, DocumentRejectReason.MEMORY),
    (MemoryError, DocumentRejectReason.MEMORY),
    (TaskCrashed, DocumentRejectReason.CRASHED),
]


def _verdict(error: BaseException) -> tuple[DocumentRejectReason, str]:
    if isinstance(error, DocumentRejected):
        return error.reason, error.detail
    for kind, reason in _ERROR_REASONS:
        if isinstance(error, kind):
            return reason, str(error)
    return DocumentRejectReason.PARSE_ERROR, f"{type(error).__name__}: {error}"[:500]


def _progress(enabled: bool) -> Progress:
    # No auto-refresh: its thread would be running while workers fork.
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
        auto_refresh=False,
    )


def ingest(
    sources: Iterable[str | Path],
    out: str | Path,
    *,
    layout: str = "fast",
    layout_features: str = "rf",
    workers: int = 1,
    min_pages: int = 20,
    max_pages: int = 200,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    exclude_hashes: str | Path | Iterable[str] | None = None,
    domain_map: str | Path | None = None,
    timeout: float = 300.0,
    memory_bytes: int | None = 4 << 30,
    chunk_pages: int = 128,
    tables: str = "grid",
    ocr: bool = True,
    ocr_language: str | None = None,
    batch_size: int = 64,
    executor: Executor | None = None,
    progress: bool = False,
    command: Sequence[str] | None = None,
    retry_rejects: bool = False,
) -> IngestReport:
    """Add the PDFs found in ``sources`` (files, folders, CSV/JSONL manifests) to the pool at
    ``out`` and return what happened. Safe to rerun and to interrupt at any point.

    Files rejected by an earlier run are skipped, except transient failures (timeout,
    memory, crash) and page-limit verdicts these ``min_pages``/``max_pages`` would not give,
    which are judged again; ``retry_rejects`` judges every rejected file again."""
    if layout not in ("fast", "model"):
        raise ValueError(f"layout must be 'fast' or 'model', not {layout!r}")
    if tables not in ("grid", "finder", "off"):
        raise ValueError(f"tables must be 'grid', 'finder' or 'off', not {tables!r}")
    if not 1 <= min_pages <= max_pages:
        raise ValueError(f"page limits [{min_pages}, {max_pages}] are not a range")
    started = time.monotonic()
    root = Path(out)
    options = ParseOptions(
        layout=layout,
        layout_features=layout_features,
        tables=tables,
        min_pages=min_pages,
        max_pages=max_pages,
        chunk_pages=chunk_pages,
        ocr=ocr,
        ocr_language=None if ocr_language is None else check_ocr_language(ocr_language),
    )
    # Fails now (with the install hint) when the layout model is missing, and loads shared
    # state once, before workers fork.
    warm_up(options)
    warm = functools.partial(warm_up, options)
    if exclude_hashes is None:
        excluded: set[str] = set()
    elif isinstance(exclude_hashes, str | Path):
        excluded = read_hash_file(Path(exclude_hashes))
    else:
        excluded = {h.lower() for h in exclude_hashes}
    mapping = load_domain_map(Path(domain_map)) if domain_map else None
    source_list = [str(source) for source in sources]
    files = expand_sources(source_list)
    # Sortable in run order (microseconds: two runs in one second stay in order), as the
    # latest verdict on a file is the one that counts.
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + secrets.token_hex(3)
    writer = PoolWriter(root, run_id)
    executor = executor or LocalExecutor(workers, timeout=timeout, memory_bytes=memory_bytes)
    config = {
        "sources": source_list,
        "executor": type(executor).__name__,
        "layout": layout,
        "layout_features": layout_features,
        "workers": workers,
        "min_pages": min_pages,
        "max_pages": max_pages,
        "max_file_bytes": max_file_bytes,
        "excluded_hashes": len(excluded),
        "timeout": timeout,
        "memory_bytes": memory_bytes,
        "chunk_pages": chunk_pages,
        "tables": tables,
        "ocr": ocr,
        "ocr_language": ocr_language,
        "retry_rejects": retry_rejects,
    }
    # One ingest at a time per pool: two would both parse, store and append the same files.
    with IngestLock(root):
        # Read first: a damaged shard stops the run before it records or appends anything.
        state = _load_state(root, retry_rejects, min_pages, max_pages)
        manifest = RunManifest.start("docpool ingest", config, list(command or sys.argv))
        writer.write_run(manifest)
        report = IngestReport(pool=root, candidates=len(files))

        def reject(
            path: str,
            reason: DocumentRejectReason,
            detail: str = "",
            doc_id: str | None = None,
            size: int | None = None,
            num_pages: int | None = None,
        ) -> None:
            writer.rejects.append(
                Reject(
                    path=path,
                    reason=reason.value,
                    detail=detail,
                    doc_id=doc_id,
                    file_size=size,
                    num_pages=num_pages,
                )
            )
            state.rejected_paths.add(path)
            report.rejected[reason.value] += 1

        def maybe_flush(force: bool = False) -> None:
            if writer.buffered and (force or writer.buffered >= batch_size):
                writer.flush()

        with _progress(progress) as bar:
            last_refresh = [0.0]

            def advance(task: TaskID, note: str | None = None) -> None:
                if note is None:
                    bar.update(task, advance=1)
                else:
                    bar.update(task, advance=1, note=note)
                now = time.monotonic()
                if now - last_refresh[0] >= 0.1:
                    bar.refresh()
                    last_refresh[0] = now

            # Step 2: identity, in this process, from bytes only.
            hashing = bar.add_task("hashing", total=len(files), note="")
            candidates: dict[str, _Candidate] = {}
            for source in files:
                advance(hashing)
                maybe_flush()
                path = str(source.path.absolute())
                if path in state.rejected_paths:
                    report.already_in_pool += 1
                    continue
                if path in state.retry_paths:
                    report.retried += 1
                try:
                    stat = source.path.stat()
                    size = stat.st_size
                    if size > max_file_bytes:
                        reject(
                            path,
                            DocumentRejectReason.TOO_LARGE,
                            f"{size} bytes, above {max_file_bytes}",
                            size=size,
                        )
                        continue
                    if not has_pdf_magic(source.path):
                        reject(
                            path,
                            DocumentRejectReason.NOT_PDF,
                            "no %PDF- header in the first KiB",
                            size=size,
                        )
                        continue
                    cached = state.hashes.get(path)
                    if cached is not None and cached[:2] == (size, stat.st_mtime_ns):
                        doc_id = cached[2]
                    else:
                        doc_id = sha256_file(source.path)
                        writer.hashes.append(
                            HashRecord(
                                path=path, size=size, mtime_ns=stat.st_mtime_ns, doc_id=doc_id
                            )
                        )
                        state.hashes[path] = (size, stat.st_mtime_ns, doc_id)
                    truncated = looks_truncated(source.path)
                except OSError as error:
                    reject(path, DocumentRejectReason.UNREADABLE, str(error))
                    continue
                if doc_id in state.source_of:
                    report.already_in_pool += 1
                    if path != state.source_of[doc_id] and (doc_id, path) not in state.aliases:
                        writer.aliases.append(Alias(doc_id=doc_id, path=path))
                        state.aliases.add((doc_id, path))
                        report.aliases_added += 1
                    continue
                if doc_id in excluded:
                    reject(
                        path,
                        DocumentRejectReason.EXCLUDED,
                        "hash is on the exclusion list",
                        doc_id,
                        size,
                    )
                    continue
                if doc_id in state.rejected_ids:
                    earlier = state.rejected_ids[doc_id]
                    reject(
                        path,
                        DocumentRejectReason(earlier.reason),
                        f"same bytes as {earlier.path}",
                        doc_id,
                        size,
                    )
                    continue
                if doc_id in candidates:
                    candidates[doc_id].duplicates.append(path)
                    continue
                if truncated:
                    reject(
                        path,
                        DocumentRejectReason.TRUNCATED,
                        "no %%EOF marker at the end",
                        doc_id,
                        size,
                    )
                    state.rejected_ids[doc_id] = writer.rejects[-1]
                    continue
                candidates[doc_id] = _Candidate(
                    doc_id, source, path, size, resolve_domain(source, doc_id, mapping)
                )
            maybe_flush(force=True)

            # Step 3: parse in workers. Probes first; long documents then go in chunks.
            parsing = bar.add_task("parsing", total=len(candidates), note="")
            long_docs: dict[str, Probe] = {}

            def reject_candidate(candidate: _Candidate, error: BaseException) -> None:
                reason, detail = _verdict(error)
                pages = error.num_pages if isinstance(error, DocumentRejected) else None
                for path in (candidate.path, *candidate.duplicates):
                    reject(path, reason, detail, candidate.doc_id, candidate.file_size, pages)

            def accept(candidate: _Candidate, row: dict[str, object], num_pages: int) -> None:
                writer.store_pdf(candidate.source.path, candidate.doc_id)
                writer.document_rows.append(row)
                for path in candidate.duplicates:
                    writer.aliases.append(Alias(doc_id=candidate.doc_id, path=path))
                    report.aliases_added += 1
                report.added += 1
                report.pages_added += num_pages
                elapsed = time.monotonic() - started
                advance(parsing, note=f"{report.pages_added / max(elapsed, 1e-9):.0f} pages/s")
                maybe_flush()

            def identity(candidate: _Candidate) -> _Identity:
                return _Identity(
                    candidate.doc_id, candidate.path, candidate.file_size, candidate.domain, layout
                )

            probe_tasks = (
                (doc_id, (identity(candidate), options)) for doc_id, candidate in candidates.items()
            )
            outcome: TaskOutcome[str]
            for outcome in executor.run(_probe_task, probe_tasks, setup=warm):
                candidate = candidates[outcome.key]
                if not outcome.ok:
                    assert outcome.error is not None
                    reject_candidate(candidate, outcome.error)
                    advance(parsing)
                    maybe_flush()
                    continue
                probed: _Probed = outcome.value
                if probed.row is not None:
                    accept(candidate, probed.row, probed.probe.num_pages)
                else:
                    long_docs[outcome.key] = probed.probe

            chunk_results: dict[str, dict[int, ParsedPages]] = {key: {} for key in long_docs}
            failed: set[str] = set()
            # The probe parsed each document's first chunk; the other chunks go to workers.
            for doc_id, probe in long_docs.items():
                assert probe.parsed is not None
                chunk_results[doc_id][1] = probe.parsed
            chunk_tasks = (
                (
                    (doc_id, first),
                    (
                        candidates[doc_id].path,
                        first,
                        last,
                        probe.profile,
                        dataclasses.replace(
                            options, ocr_language=options.ocr_language or probe.ocr_language
                        ),
                    ),
                )
                for doc_id, probe in long_docs.items()
                for first, last in chunk_ranges(probe.num_pages, chunk_pages)[1:]
            )
            chunk_outcome: TaskOutcome[tuple[str, int]]
            for chunk_outcome in executor.run(parse_page_range, chunk_tasks, setup=warm):
                doc_id, first = chunk_outcome.key
                if doc_id in failed:
                    continue
                if not chunk_outcome.ok:
                    assert chunk_outcome.error is not None
                    failed.add(doc_id)
                    reject_candidate(candidates[doc_id], chunk_outcome.error)
                    advance(parsing)
                    continue
                chunk_results[doc_id][first] = chunk_outcome.value
                probe = long_docs[doc_id]
                if len(chunk_results[doc_id]) == len(chunk_ranges(probe.num_pages, chunk_pages)):
                    parts = [
                        chunk_results[doc_id][start] for start in sorted(chunk_results[doc_id])
                    ]
                    merged = ParsedPages(
                        pages=[page for part in parts for page in part.pages],
                        headings=[hit for part in parts for hit in part.headings],
                    )
                    del chunk_results[doc_id]
                    document = _build(identity(candidates[doc_id]), probe, merged)
                    accept(candidates[doc_id], record_to_row(document, Document), probe.num_pages)
            maybe_flush(force=True)

        report.seconds = time.monotonic() - started
        writer.write_run(
            manifest.finish(
                "done",
                candidates=report.candidates,
                added=report.added,
                pages=report.pages_added,
                aliases=report.aliases_added,
                rejected=sum(report.rejected.values()),
                already_in_pool=report.already_in_pool,
            )
        )
        return report


@dataclass(frozen=True)
class _Identity:
    """What the parent knows of a document before parsing it: enough to build its record."""

    doc_id: str
    path: str
    file_size: int
    domain: str | None
    layout: str


@dataclass
class _Probed:
    probe: Probe  # with its first chunk, unless ``row`` holds the whole document
    row: dict[str, object] | None  # the Document's Parquet row, when parsed whole


@collector_paused()
def _probe_task(identity: _Identity, options: ParseOptions) -> _Probed:
    """Worker step: probe the document and, when that parsed it whole, build its record and
    serialise it here, so the parent receives a few strings instead of thousands of objects."""
    probe = probe_document(identity.path, options)
    if probe.parsed is None or len(probe.parsed.pages) < probe.num_pages:
        return _Probed(probe, None)
    parsed, probe.parsed = probe.parsed, None
    return _Probed(probe, record_to_row(_build(identity, probe, parsed), Document))


def _build(identity: _Identity, probe: Probe, parsed: ParsedPages) -> Document:
    sections = sections_from_outline(probe.toc, parsed.pages) if probe.toc else []
    if not sections:
        sections = sections_from_headings(parsed.headings, parsed.pages)
    return Document(
        doc_id=identity.doc_id,
        source_path=identity.path,
        file_size=identity.file_size,
        num_pages=probe.num_pages,
        pages=parsed.pages,
        sections=sections,
        metadata=probe.metadata,
        lang=probe.lang,
        domain=identity.domain,
        layout=identity.layout,
    )
