"""Exclusion lists: files of SHA-256 hashes, one per line, for benchmark decontamination."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from mmprolong_schemas.io import atomic_path

_HASH = re.compile(r"^[0-9a-f]{64}$")


def read_hash_file(path: Path) -> set[str]:
    """Hashes from ``path``: one per line; blank lines and ``#`` comments are ignored, and
    anything after the hash on a line (``sha256sum`` output) too."""
    hashes: set[str] = set()
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        candidate = text.split()[0].lower()
        if not _HASH.match(candidate):
            raise ValueError(f"{path}:{number}: {candidate[:80]!r} is not a SHA-256 hex digest")
        hashes.add(candidate)
    return hashes


def write_hash_file(path: Path, entries: Iterable[tuple[str, str]]) -> int:
    """Write ``hash  name`` lines (sha256sum format, sorted by name); returns the count."""
    lines = sorted(entries, key=lambda entry: entry[1])
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{digest}  {name}\n" for digest, name in lines), encoding="utf-8")
        tmp.chmod(0o644)
    return len(lines)
