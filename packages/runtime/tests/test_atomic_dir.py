"""atomic_dir: the one helper that writes an output directory all at once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mmprolong_runtime.atomic_dir import atomic_dir


def test_the_directory_appears_only_when_the_block_finishes(tmp_path: Path) -> None:
    target = tmp_path / "out" / "model"
    with atomic_dir(target) as scratch:
        (scratch / "weights.bin").write_bytes(b"w")
        assert not target.exists()
    assert (target / "weights.bin").read_bytes() == b"w"
    assert os.listdir(target.parent) == ["model"]


def _write_half_then_fail(target: Path) -> None:
    with atomic_dir(target) as scratch:
        (scratch / "half.bin").write_bytes(b"h")
        raise RuntimeError("killed mid-write")


def test_a_failure_inside_the_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        _write_half_then_fail(tmp_path / "model")
    assert os.listdir(tmp_path) == []


def test_an_existing_directory_is_kept_unless_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.bin").write_bytes(b"o")
    with pytest.raises(FileExistsError, match="already exists"), atomic_dir(target):
        pass
    assert (target / "old.bin").exists()
    with atomic_dir(target, overwrite=True) as scratch:
        (scratch / "new.bin").write_bytes(b"n")
    assert sorted(os.listdir(target)) == ["new.bin"]


def test_the_directory_is_readable_by_others_as_mkdir_makes_it(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "model"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
