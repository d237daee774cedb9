"""Turning the user's inputs (files, folders, manifests) into a list of candidate files.

A manifest is a CSV with a ``path`` column or a JSONL file of ``{"path": ...}`` objects, each
optionally with a ``domain``; relative paths are taken from the manifest's folder. A domain
map (CSV ``key,domain`` or a JSON object) assigns domains by file path, file name or SHA-256.
Without either, the domain is the name of the file's parent folder.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mmprolong_runtime.errors import InputError

MANIFEST_SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class SourceFile:
    path: Path
    domain: str | None = None


class SourceError(InputError):
    """An input that cannot be expanded (missing file, malformed manifest)."""


def _manifest_entries(manifest: Path) -> list[SourceFile]:
    base = manifest.parent
    entries: list[SourceFile] = []
    if manifest.suffix.lower() == ".csv":
        with open(manifest, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise SourceError(f"{manifest}: a CSV manifest needs a 'path' column")
            for row in reader:
                if row.get("path"):
                    entries.append(SourceFile(base / row["path"], row.get("domain") or None))
        return entries
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise SourceError(f"{manifest}:{number}: not valid JSON ({error.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise SourceError(f"{manifest}:{number}: expected an object with a 'path' string")
        domain = item.get("domain")
        entries.append(SourceFile(base / item["path"], domain if isinstance(domain, str) else None))
    return entries


def expand_sources(sources: Iterable[str | Path]) -> list[SourceFile]:
    """Every candidate file, in a stable order (sorted within each folder), each path once.
    Folders are walked recursively (links to files are followed, links to folders are not); every
    regular file in them is a candidate (non-PDFs are rejected later, with a reason)."""
    seen: set[Path] = set()
    result: list[SourceFile] = []

    def add(item: SourceFile) -> None:
        key = item.path.absolute()
        if key not in seen:
            seen.add(key)
            result.append(item)

    for source in sources:
        path = Path(source)
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                add(SourceFile(file))
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            for entry in _manifest_entries(path):
                add(entry)
        elif path.exists():
            add(SourceFile(path))
        else:
            raise SourceError(f"{path}: no such file or folder")
    return result


def load_domain_map(path: Path) -> dict[str, str]:
    """A mapping file: CSV with columns ``key,domain`` (or ``path,domain`` / ``doc_id,domain``)
    or a JSON object ``{key: domain}``. Keys are paths, file names or SHA-256 hashes."""
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise SourceError(f"{path}: a JSON domain map must be an object of strings")
        return {str(key): value for key, value in data.items()}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        rows = [row for row in reader if row]
    if rows and rows[0][-1].strip().lower() == "domain":
        rows = rows[1:]
    mapping = {}
    for number, row in enumerate(rows, start=1):
        if len(row) < 2:
            raise SourceError(f"{path}: row {number} needs a key and a domain")
        mapping[row[0].strip()] = row[1].strip()
    return mapping


def resolve_domain(source: SourceFile, doc_id: str, mapping: dict[str, str] | None) -> str | None:
    """The user's mapping first (path as given, absolute path, file name, hash), then the
    manifest's domain, then the parent folder name."""
    if mapping:
        for key in (str(source.path), str(source.path.absolute()), source.path.name, doc_id):
            if key in mapping:
                return mapping[key]
    if source.domain:
        return source.domain
    return source.path.absolute().parent.name or None
