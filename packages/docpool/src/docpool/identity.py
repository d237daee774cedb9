"""What a file is before anything parses it: PDF magic bytes, a truncation check, SHA-256.

Only raw bytes are read here, in the main process; nothing interprets the PDF.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PDF_MAGIC = b"%PDF-"
# Readers accept the header anywhere in the first KiB (some files start with junk).
MAGIC_WINDOW = 1024
# The end-of-file marker must lie in the last KiB of a complete file.
EOF_WINDOW = 1024
_CHUNK = 1 << 20


def has_pdf_magic(path: Path) -> bool:
    with open(path, "rb") as handle:
        return PDF_MAGIC in handle.read(MAGIC_WINDOW)


def looks_truncated(path: Path) -> bool:
    """True when the file lacks a %%EOF marker near its end: a partial download or copy."""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - EOF_WINDOW))
        return b"%%EOF" not in handle.read()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def shard_path(root: Path, doc_id: str) -> Path:
    """Where a content-addressed PDF lives: ``root/ab/<sha256>.pdf``."""
    return root / doc_id[:2] / f"{doc_id}.pdf"
