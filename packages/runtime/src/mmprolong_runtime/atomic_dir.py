"""Atomic creation of output directories (checkpoints and exported models are directories)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mmprolong_schemas.io import temp_sibling


@contextmanager
def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``path``; it becomes ``path`` only if the
    block finishes, so a killed run never leaves a half-written directory behind."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"output directory {target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target, Path.mkdir)
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
