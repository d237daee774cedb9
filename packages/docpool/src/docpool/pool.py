"""A pool directory, read and appended to.

    POOL/pool.json                       marks the folder as a pool (format version)
    POOL/pdfs/ab/<sha256>.pdf            content-addressed copies of accepted PDFs
    POOL/documents/part-<run>-<n>.parquet  Document records (mmprolong_schemas.write_parquet)
    POOL/aliases/part-<run>-<n>.parquet    other paths of already-pooled bytes
    POOL/rejects/part-<run>-<n>.parquet    files that did not get in, with a reason
    POOL/hashes/part-<run>-<n>.parquet     (path, size, mtime) -> SHA-256, to skip rehashing
    POOL/runs/<run>.json                 one RunManifest per ingest run
    POOL/ingest.lock                     held (flock) by the ingest writing to the pool

Every file is written once, atomically, and never rewritten: a shard either exists whole or
not at all, so a killed run leaves only complete shards and a rerun adds the missing records.
Aliases live in their own shards (a later run can find new paths of old bytes without
rewriting a Document shard); ``Pool.get`` merges them into ``Document.aliases``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image
from pydantic import Field

from docpool.identity import shard_path
from docpool.render import ColorMode, render_pages
from mmprolong_runtime import RunManifest
from mmprolong_runtime.finished import read_finished_items, read_shard
from mmprolong_schemas import Document, write_parquet
from mmprolong_schemas.base import Model
from mmprolong_schemas.io import POOL_MARKER as MARKER
from mmprolong_schemas.io import (
    atomic_path,
    is_pool,
    pool_shards,
    read_parquet_row,
    read_pool_documents,
    write_parquet_rows,
)

POOL_FORMAT = 1
DOCUMENT_ROW_GROUP = 4  # documents a Parquet row group: what reading one document reads
DOCUMENT_CACHE = 16  # documents Pool.get keeps


class Reject(Model):
    """A file that did not enter the pool."""

    path: str
    reason: str
    detail: str = ""
    doc_id: str | None = Field(default=None, description="SHA-256 when the bytes were read.")
    file_size: int | None = None
    num_pages: int | None = Field(
        default=None, description="Page count, for rejects by the page limits."
    )


class Alias(Model):
    doc_id: str
    path: str


class HashRecord(Model):
    """The SHA-256 of a file as it was (size, modification time), so a rerun over a large
    tree does not read every file again."""

    path: str
    size: int
    mtime_ns: int
    doc_id: str


def latest_rejects(root: Path) -> dict[str, Reject]:
    """Each rejected path's latest verdict (a rerun may retry a file and judge it again): the
    shards come in run order, as run ids start with the time."""
    rows = read_finished_items(pool_shards(root, "rejects"))
    return {row["path"]: Reject.model_validate(row) for row in rows}


class NotAPool(FileNotFoundError):
    """The folder is not a docpool pool."""


class PoolLocked(RuntimeError):
    """Another ingest is writing to the pool."""


LOCK_FILE = "ingest.lock"


class IngestLock:
    """An exclusive lock on a pool for one ingest run: ``fcntl.flock`` on ``POOL/ingest.lock``,
    which holds the owner's pid. The kernel drops the lock when its process dies (kill -9
    included), so a stale lock file never blocks the next run; worker processes close the
    inherited descriptor and do not keep it alive."""

    def __init__(self, root: Path):
        self.path = Path(root) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise PoolLocked(
                f"the pool {self.path.parent} is locked by another docpool ingest "
                f"(pid {holder}); wait for it to finish or stop it, then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> IngestLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Pool:
    """Read access to a pool directory. Cheap to open: it reads only the doc_id column of
    each shard to build its index (shard and row of every document); ``get`` then reads one
    document's row group and validates that document alone, so random access costs one
    document, not one shard."""

    def __init__(self, path: str | Path):
        self.root = Path(path)
        if not is_pool(self.root):
            raise NotAPool(f"{self.root} is not a docpool pool (no {MARKER}); run `docpool ingest`")
        self._index: dict[str, tuple[Path, int]] = {}
        for shard in pool_shards(self.root, "documents"):
            ids = read_shard(shard, ["doc_id"]).column("doc_id").to_pylist()
            for row, doc_id in enumerate(ids):
                self._index.setdefault(doc_id, (shard, row))
        self._aliases: dict[str, list[str]] | None = None
        # The few documents asked for last (a teacher or assemble asks for one several times).
        self._load = lru_cache(maxsize=DOCUMENT_CACHE)(self._read_document)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._index

    def doc_ids(self) -> list[str]:
        return sorted(self._index)

    def _read_document(self, doc_id: str) -> Document:
        shard, row = self._index[doc_id]
        return read_parquet_row(shard, Document, row)

    def _with_aliases(self, doc: Document) -> Document:
        aliases = sorted(set(doc.aliases) | set(self.aliases().get(doc.doc_id, [])))
        aliases = [a for a in aliases if a != doc.source_path]
        return doc.model_copy(update={"aliases": aliases}) if aliases != doc.aliases else doc

    def documents(self) -> Iterator[Document]:
        """Every document, shard by shard, each once."""
        for doc in read_pool_documents(self.root):
            yield self._with_aliases(doc)

    def get(self, doc_id: str) -> Document:
        """One document by id, read alone (its shard's row group, not the whole shard)."""
        if doc_id not in self._index:
            raise KeyError(f"document {doc_id[:16]} is not in the pool {self.root}")
        return self._with_aliases(self._load(doc_id))

    def pdf_path(self, doc_id: str) -> Path:
        if doc_id not in self._index:
            raise KeyError(f"document {doc_id[:16]} is not in the pool {self.root}")
        return shard_path(self.root / "pdfs", doc_id)

    def render(
        self, doc_id: str, pages: Sequence[int], dpi: float = 144.0, color: ColorMode = "rgb"
    ) -> list[Image.Image]:
        """Pages (1-based) as images, rendered now from the stored PDF: RGB, or with
        ``color="auto"``/``"gray"`` mode ``L`` for gray pages (see ``render_pages``)."""
        return render_pages(self.pdf_path(doc_id), pages, dpi, color)

    def aliases(self) -> dict[str, list[str]]:
        if self._aliases is None:
            merged: dict[str, set[str]] = {}
            for row in read_finished_items(pool_shards(self.root, "aliases"), ["doc_id", "path"]):
                merged.setdefault(row["doc_id"], set()).add(row["path"])
            self._aliases = {key: sorted(paths) for key, paths in merged.items()}
        return self._aliases

    def rejects(self) -> list[Reject]:
        """Every file rejected and not pooled since, once per path: its latest verdict (a
        rerun may retry a file and judge it again)."""
        latest = latest_rejects(self.root)
        pooled_ids = set(self._index)
        pooled_paths = {path for paths in self.aliases().values() for path in paths}
        pooled_paths.update(
            row["source_path"]
            for row in read_finished_items(pool_shards(self.root, "documents"), ["source_path"])
        )
        return sorted(
            (
                r
                for r in latest.values()
                if r.path not in pooled_paths and (r.doc_id is None or r.doc_id not in pooled_ids)
            ),
            key=lambda r: r.path,
        )

    def runs(self) -> list[RunManifest]:
        folder = self.root / "runs"
        if not folder.is_dir():
            return []
        return sorted(
            (RunManifest.model_validate_json(p.read_bytes()) for p in folder.glob("*.json")),
            key=lambda run: run.started_at,
        )


class PoolWriter:
    """Appends to a pool: buffers records and writes them as new shards."""

    def __init__(self, root: Path, run_id: str):
        self.root = Path(root)
        self.run_id = run_id
        self._sequence = 0
        self.document_rows: list[dict[str, object]] = []  # Documents as record_to_row rows
        self.aliases: list[Alias] = []
        self.rejects: list[Reject] = []
        self.hashes: list[HashRecord] = []
        marker = self.root / MARKER
        if not marker.exists():
            if self.root.exists() and any(self.root.iterdir()):
                raise NotAPool(f"{self.root} exists, is not empty and is not a docpool pool")
            with atomic_path(marker) as tmp:
                tmp.write_text(json.dumps({"format": "docpool", "version": POOL_FORMAT}) + "\n")

    def store_pdf(self, source: Path, doc_id: str) -> Path:
        target = shard_path(self.root / "pdfs", doc_id)
        if not target.exists():
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)  # keeps the umask-given mode atomic_path set
        return target

    @property
    def buffered(self) -> int:
        return len(self.document_rows) + len(self.aliases) + len(self.rejects) + len(self.hashes)

    def flush(self) -> None:
        """Write what is buffered as new shards. Rejects and aliases go first: should a kill
        land between files, the documents they refer to are redone by the next run."""
        self._sequence += 1
        name = f"part-{self.run_id}-{self._sequence:05d}.parquet"
        for folder, records, model in (
            ("hashes", self.hashes, HashRecord),
            ("rejects", self.rejects, Reject),
            ("aliases", self.aliases, Alias),
        ):
            if records:
                write_parquet(self.root / folder / name, records, model)
                records.clear()
        if self.document_rows:
            write_parquet_rows(
                self.root / "documents" / name,
                self.document_rows,
                Document,
                row_group_size=DOCUMENT_ROW_GROUP,
            )
            self.document_rows.clear()

    def write_run(self, manifest: RunManifest) -> None:
        with atomic_path(self.root / "runs" / f"{self.run_id}.json") as tmp:
            tmp.write_text(manifest.model_dump_json(indent=1), encoding="utf-8")
