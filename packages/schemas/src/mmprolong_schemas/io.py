"""Reading and writing records as JSONL and Parquet, atomically.

JSONL holds one record per line in pydantic's JSON form. Parquet keeps top-level scalar
fields (strings, numbers, booleans, enums) as typed columns, so pools and mixtures can be
queried with any Arrow tool, and stores every other field as a JSON string column. Both
round-trip every record exactly. A docpool pool's layout (``is_pool``, ``pool_shards``,
``read_pool_documents``) is here too, so its writer and its readers share one description.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import types
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, TypeAdapter

from mmprolong_schemas.base import SchemaError, validate_record
from mmprolong_schemas.document import Document

ModelT = TypeVar("ModelT", bound=BaseModel)

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_MODEL_KEY = b"mmprolong.model"
_JSON_COLUMNS_KEY = b"mmprolong.json_columns"


def temp_sibling(target: Path, create: Callable[[Path], None]) -> Path:
    """A new hidden path next to ``target`` with a random name, never reused: ``create``
    makes it (a file or a folder) and raises FileExistsError when the name is taken. Made as
    open() and mkdir() make them, 0666 / 0777 less the umask (mkstemp and mkdtemp would give
    0600 / 0700), so Ray workers and colleagues can read pools, mixtures and models."""
    while True:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
        try:
            create(tmp)
        except FileExistsError:
            continue
        return tmp


def _create_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o666))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it replaces ``path`` only if the block
    finishes. A reader never sees a half-written file, even after kill -9. ``durable``
    fsyncs the file before the rename, so it also survives a power cut; files that are
    cheap to make again (rendered page images) skip that cost."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target, _create_file)
    try:
        yield tmp
        if durable:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int = 1) -> None:
    """Write ``data`` as one JSON document, atomically (a summary, a report, a config).
    Non-ASCII text is kept as it is; values JSON has no type for (paths, dates) are written
    as their ``str``."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_jsonl(path: str | os.PathLike[str], records: Iterable[BaseModel]) -> int:
    """Write records atomically; returns how many were written."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.model_dump_json())
            handle.write("\n")
            count += 1
    return count


def append_jsonl(path: str | os.PathLike[str], records: Iterable[BaseModel]) -> int:
    """Append whole lines and flush them to disk, for logs that grow as a run goes.

    A torn last line (a kill mid-write) is skipped by ``read_jsonl(tolerate_torn_tail=True)``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = [record.model_dump_json() + "\n" for record in records]
    with open(target, "a", encoding="utf-8") as handle:
        handle.write("".join(lines))
        handle.flush()
        os.fsync(handle.fileno())
    return len(lines)


def read_jsonl(
    path: str | os.PathLike[str],
    model: type[ModelT],
    *,
    tolerate_torn_tail: bool = False,
    on_error: Callable[[SchemaError], None] | None = None,
) -> Iterator[ModelT]:
    """Yield validated records. A bad line raises SchemaError naming the file and line, or,
    with ``on_error``, is handed to it and skipped so the rest of the file is still read."""
    source = Path(path)
    with open(source, encoding="utf-8") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        try:
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                if tolerate_torn_tail and number == len(lines) and not line.endswith("\n"):
                    return
                raise SchemaError(where, [f"not valid JSON ({error.msg})"]) from None
            record = validate_record(model, data, where)
        except SchemaError as error:
            if on_error is None:
                raise
            on_error(error)
            continue
        yield record


def _arrow_scalar_type(annotation: Any) -> pa.DataType | None:
    """The Arrow type of a top-level field kept as a column, or None to store it as JSON."""
    nullable_of = [arg for arg in get_args(annotation) if arg is not type(None)]
    if get_origin(annotation) in (Union, types.UnionType):
        if len(nullable_of) != 1:
            return None
        annotation = nullable_of[0]
    if get_origin(annotation) is not None:
        # Annotated[...] and friends: judge by the underlying type.
        args = get_args(annotation)
        if getattr(annotation, "__metadata__", None) is not None and args:
            return _arrow_scalar_type(args[0])
        return None
    if isinstance(annotation, type):
        if issubclass(annotation, bool):
            return pa.bool_()
        if issubclass(annotation, Enum):
            return pa.string()
        if issubclass(annotation, int):
            return pa.int64()
        if issubclass(annotation, float):
            return pa.float64()
        if issubclass(annotation, str):
            return pa.string()
    return None


def _arrow_schema(model: type[BaseModel]) -> tuple[pa.Schema, list[str]]:
    fields, json_columns = [], []
    for name, info in model.model_fields.items():
        arrow_type = _arrow_scalar_type(info.annotation)
        if arrow_type is None:
            json_columns.append(name)
            arrow_type = pa.string()
        fields.append(pa.field(name, arrow_type))
    metadata = {
        _MODEL_KEY: model.__name__.encode(),
        _JSON_COLUMNS_KEY: json.dumps(json_columns).encode(),
    }
    return pa.schema(fields, metadata=metadata), json_columns


def records_to_table(records: Iterable[BaseModel], model: type[BaseModel]) -> pa.Table:
    schema, json_columns = _arrow_schema(model)
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for record in records:
        if not isinstance(record, model):
            raise TypeError(f"expected {model.__name__} records, got {type(record).__name__}")
        data = record.model_dump(mode="json")
        for name in schema.names:
            value = data[name]
            columns[name].append(
                json.dumps(value, ensure_ascii=False) if name in json_columns else value
            )
    return pa.table(columns, schema=schema)


_JSON_ADAPTERS: dict[tuple[type[BaseModel], str], TypeAdapter[Any]] = {}


def record_to_row(record: BaseModel, model: type[BaseModel]) -> dict[str, Any]:
    """One record as the Parquet row ``write_parquet`` stores (scalar fields as values, the
    others as JSON text), with the JSON written by pydantic's serializer in one pass. Rows are
    small to pickle: a worker process can serialise its records and the parent only collect
    them (``write_parquet_rows``); ``read_parquet`` reads them back as the same records."""
    if not isinstance(record, model):
        raise TypeError(f"expected a {model.__name__} record, got {type(record).__name__}")
    schema, json_columns = _arrow_schema(model)
    scalars = [name for name in schema.names if name not in json_columns]
    row: dict[str, Any] = record.model_dump(mode="json", include=set(scalars))
    for name in json_columns:
        adapter = _JSON_ADAPTERS.get((model, name))
        if adapter is None:
            annotation = model.model_fields[name].annotation
            adapter = TypeAdapter(Any if annotation is None else annotation)
            _JSON_ADAPTERS[(model, name)] = adapter
        row[name] = adapter.dump_json(getattr(record, name)).decode()
    return row


def write_parquet_rows(
    path: str | os.PathLike[str],
    rows: Iterable[dict[str, Any]],
    model: type[BaseModel],
    *,
    row_group_size: int | None = None,
) -> int:
    """Write rows made by ``record_to_row`` to a Parquet file atomically (the same file
    ``write_parquet`` writes for the records); returns the row count. ``row_group_size``
    rows a group (default: one group) bounds what ``read_parquet_row`` reads for one row."""
    schema, _ = _arrow_schema(model)
    columns: dict[str, list[Any]] = {name: [] for name in schema.names}
    for row in rows:
        if row.keys() != columns.keys():
            raise ValueError(f"a {model.__name__} row has columns {sorted(row)}")
        for name, values in columns.items():
            values.append(row[name])
    table = pa.table(columns, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)
    return table.num_rows


def write_parquet(
    path: str | os.PathLike[str], records: Iterable[BaseModel], model: type[BaseModel]
) -> int:
    """Write records of one model to a Parquet file atomically; returns the row count."""
    table = records_to_table(records, model)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return table.num_rows


def _json_columns(source: Path, schema: pa.Schema, model: type[BaseModel]) -> set[str]:
    metadata = schema.metadata or {}
    written_as = metadata.get(_MODEL_KEY, b"").decode()
    if written_as and written_as != model.__name__:
        raise SchemaError(str(source), [f"holds {written_as} records, not {model.__name__}"])
    return set(json.loads(metadata.get(_JSON_COLUMNS_KEY, b"[]")))


def _record(row: dict[str, Any], json_columns: set[str], model: type[ModelT], where: str) -> ModelT:
    data = {
        name: json.loads(value) if name in json_columns and value is not None else value
        for name, value in row.items()
    }
    return validate_record(model, data, where)


def read_parquet(path: str | os.PathLike[str], model: type[ModelT]) -> Iterator[ModelT]:
    """Yield validated records from a Parquet file written by ``write_parquet``."""
    source = Path(path)
    try:
        table = pq.read_table(source)
    except (pa.ArrowInvalid, OSError) as error:
        raise SchemaError(str(source), [f"not a readable Parquet file ({error})"]) from None
    json_columns = _json_columns(source, table.schema, model)
    for row_number, row in enumerate(table.to_pylist()):
        yield _record(row, json_columns, model, f"{source} row {row_number}")


def read_parquet_row(path: str | os.PathLike[str], model: type[ModelT], row: int) -> ModelT:
    """The record in row ``row`` (0-based) of a file written by ``write_parquet``: reads only
    the row group holding it and validates only that record."""
    source = Path(path)
    try:
        handle = pq.ParquetFile(source)
        first = 0
        for group in range(handle.metadata.num_row_groups):
            size = handle.metadata.row_group(group).num_rows
            if row < first + size:
                table = handle.read_row_group(group).slice(row - first, 1)
                break
            first += size
        else:
            raise IndexError(f"{source} has no row {row} ({first} rows)")
    except (pa.ArrowInvalid, OSError) as error:
        raise SchemaError(str(source), [f"not a readable Parquet file ({error})"]) from None
    json_columns = _json_columns(source, handle.schema_arrow, model)
    return _record(table.to_pylist()[0], json_columns, model, f"{source} row {row}")


# A docpool pool on disk, written down once for docpool (which writes and indexes it) and for
# every reader of its documents (longctx-rope's span): POOL/pool.json marks the folder, and
# each table is a folder of append-only shards, POOL/<table>/part-<run>-<n>.parquet.
POOL_MARKER = "pool.json"


def is_pool(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is a docpool pool (it holds the marker file)."""
    return (Path(root) / POOL_MARKER).is_file()


def pool_shards(root: str | os.PathLike[str], table: str = "documents") -> list[Path]:
    """A pool table's shards in run order (run ids start with the time); none if absent."""
    folder = Path(root) / table
    return sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []


def read_pool_documents(root: str | os.PathLike[str]) -> Iterator[Document]:
    """Every Document record of a pool, shard by shard, each doc_id once (the first)."""
    if not is_pool(root):
        raise FileNotFoundError(f"{root} is not a docpool pool (no {POOL_MARKER})")
    seen: set[str] = set()
    for shard in pool_shards(root, "documents"):
        for doc in read_parquet(shard, Document):
            if doc.doc_id not in seen:
                seen.add(doc.doc_id)
                yield doc
