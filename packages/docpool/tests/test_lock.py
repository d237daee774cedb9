"""One ingest at a time per pool: a second one stops with a clear error naming the holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from docpool import Pool, PoolLocked, ingest
from docpool.cli import app
from docpool.pool import LOCK_FILE, IngestLock, PoolWriter
from docpool.testing import CorpusTruth

HOLD = """
import sys, time
from pathlib import Path
from docpool.pool import IngestLock
lock = IngestLock(Path(sys.argv[1]))
lock.acquire()
print("locked", flush=True)
time.sleep(60)
"""


def _small_source(corpus: tuple[Path, CorpusTruth], tmp_path: Path) -> Path:
    folder, truth = corpus
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.pdf").symlink_to(folder / truth.documents[0].file)
    return source


def test_second_ingest_is_refused_while_another_process_holds_the_pool(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path
) -> None:
    source = _small_source(corpus, tmp_path)
    out = tmp_path / "pool"
    PoolWriter(out, "setup")  # an empty pool
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(PoolLocked) as caught:
            ingest([source], out)
        message = str(caught.value)
        assert str(out) in message and f"pid {holder.pid}" in message
        result = CliRunner().invoke(app, ["ingest", str(source), "--out", str(out)])
        output = " ".join(result.output.split())
        assert result.exit_code == 2 and "locked by another docpool ingest" in output
        assert len(Pool(out)) == 0, "the refused runs wrote nothing"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The lock died with its holder: the stale lock file does not block the next run.
    assert (out / LOCK_FILE).exists()
    report = ingest([source], out)
    assert report.added == 1 and len(Pool(out)) == 1


def test_lock_is_released_after_a_run_and_records_the_holder(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path
) -> None:
    source = _small_source(corpus, tmp_path)
    out = tmp_path / "pool"
    ingest([source], out)
    with IngestLock(out):
        assert (out / LOCK_FILE).read_text().strip() == str(os.getpid())
        started = time.monotonic()
        with pytest.raises(PoolLocked, match=f"pid {os.getpid()}"):
            IngestLock(out).acquire()
        assert time.monotonic() - started < 1, "a held lock fails at once, it does not wait"
    assert (out / LOCK_FILE).read_text() == ""
    assert ingest([source], out).already_in_pool == 1
