"""What counts as finished: one completion record per step, keyed by its config hash.

A step writes its outputs (in its own format: Parquet shards, JSON Lines, a SQLite cache),
then calls ``finish``, which writes the record last and atomically: a JSON object with
``key`` (the step's ``config_hash``), ``outputs`` (the files it covers, relative to the
record's folder) and the step's own facts (counts, skipped reasons). A kill before the
record leaves no record, so the step runs again; a kill during it leaves the old record or
none, never half of one. ``read_finished`` gives the record back only when its key is the
one asked for and every output it names is still there, so a rerun skips exactly the work
that is complete.

A step made of many items, where a kill should keep the finished ones, keys each item
instead: a row of a ``SqliteCache`` under its request's hash, or a Parquet shard that
carries its key in its schema metadata (``parquet_key``, ``keyed_metadata``). Items are
written atomically, so an item present under its key is finished.

Append-only Parquet shards hold many keyed items each (a docpool pool: a document under the
SHA-256 of its bytes, a file's hash or reject verdict under its path). Each shard is written
whole, atomically, and never rewritten, so every row of a shard that exists is a finished
item, and a kill loses only the rows not yet written. ``read_finished_items`` reads the rows
back shard by shard in the order given (a pool's shards sort in run order), so where a key
comes back, the latest row for it is the latest verdict. A shard that cannot be read is
damage from outside (a bad disk, a copy cut short, a hand edit), not a kill, so it raises
``DamagedShard`` naming it: counting its items as unfinished would redo and append them
again while the damaged shard stays for every reader to trip on. A step's single keyed
shard (``parquet_key``) is the other way round: it is rewritten whole, so an unreadable one
simply counts as not written.

Records written before this convention hold the same ``key`` but no ``outputs`` list, and
some hold the config itself rather than its hash: ``read_finished`` reads both (the caller
says which files such an old record covers).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mmprolong_runtime.errors import InputError
from mmprolong_runtime.manifest import config_hash
from mmprolong_schemas.io import write_json

KEY = "key"
OUTPUTS = "outputs"

OldOutputs = Callable[[dict[str, Any]], Iterable[str]]


def finish(
    record: str | os.PathLike[str],
    key: str,
    outputs: Iterable[str] = (),
    **facts: Any,
) -> dict[str, Any]:
    """Write the completion record for work whose ``outputs`` (paths relative to the record's
    folder) are already written; returns the record. Refuses when an output is missing, so a
    record never claims what is not on disk."""
    path = Path(record)
    names = [str(name) for name in outputs]
    missing = [name for name in names if not (path.parent / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{path}: cannot record the step as finished, its outputs are missing: "
            + ", ".join(missing)
        )
    data = {KEY: key, OUTPUTS: names, **facts}
    write_json(path, data)
    return data


def read_record(record: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The record as written, whatever its key; None when there is none. An unreadable
    record counts as none: ``finish`` never leaves one, and the rerun writes it anew."""
    try:
        data = json.loads(Path(record).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and KEY in data else None


def read_finished(
    record: str | os.PathLike[str],
    key: str,
    *,
    old_outputs: OldOutputs | None = None,
) -> dict[str, Any] | None:
    """The record when the step it describes is finished under ``key``, else None.
    ``old_outputs`` names the files a record from before this convention covers (it has
    no ``outputs`` list); without it such a record covers no file."""
    path = Path(record)
    data = read_record(path)
    if data is None or _stored_key(data[KEY]) != key:
        return None
    if OUTPUTS in data:
        outputs: Iterable[str] = data[OUTPUTS]
    else:
        outputs = old_outputs(data) if old_outputs else ()
    if not all((path.parent / name).exists() for name in outputs):
        return None
    return data


def is_finished(
    record: str | os.PathLike[str], key: str, *, old_outputs: OldOutputs | None = None
) -> bool:
    return read_finished(record, key, old_outputs=old_outputs) is not None


def keyed_metadata(
    metadata: Mapping[bytes, bytes] | None, field: bytes, key: str
) -> dict[bytes, bytes]:
    """Parquet schema metadata that also says the shard was written under ``key``."""
    return dict(metadata or {}) | {field: key.encode()}


def parquet_key(path: str | os.PathLike[str], field: bytes) -> str | None:
    """The key a Parquet shard was written under (``keyed_metadata``); None when the shard
    is absent, unreadable or carries none, so it is written again."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError):
        return None
    value = metadata.get(field)
    return value.decode() if value else None


class DamagedShard(InputError):
    """A shard of finished items that cannot be read, or lacks a column asked for. Restore
    it, or move it out of its folder so that its items are done again."""

    def __init__(self, shard: str | os.PathLike[str], problem: str) -> None:
        self.shard = Path(shard)
        problem = " ".join(problem.split())  # pyarrow's messages may span lines
        super().__init__(
            f"{self.shard}: cannot read this shard of finished work ({problem}); restore it "
            "from a copy, or move it out of its folder so that its items are done again"
        )


def read_shard(shard: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pa.Table:
    """One append-only shard of finished items as a table (``columns`` only, or all of
    them). Raises ``DamagedShard`` when it cannot be read or lacks one of ``columns``."""
    try:
        with pq.ParquetFile(shard) as file:
            present = set(file.schema_arrow.names)
            missing = [name for name in columns or () if name not in present]
            if missing:
                raise DamagedShard(shard, "no column " + ", ".join(missing))
            return file.read(columns=list(columns) if columns is not None else None)
    except (pa.ArrowInvalid, OSError) as error:
        raise DamagedShard(shard, str(error)) from error


def read_finished_items(
    shards: Iterable[str | os.PathLike[str]], columns: Sequence[str] | None = None
) -> Iterator[dict[str, Any]]:
    """The rows of every finished item in append-only ``shards`` (``columns`` only, or all
    of them), shard by shard in the order given and in row order within a shard. Raises
    ``DamagedShard`` at the first shard that cannot be read or lacks one of ``columns``."""
    for shard in shards:
        yield from read_shard(shard, columns).to_pylist()


def _stored_key(stored: Any) -> Any:
    # Old mixture reports kept the config itself under "key"; its hash is what it stands for.
    return stored if isinstance(stored, str) else config_hash(stored)
