"""kill -9 in the middle of an ingest, then a rerun, gives the pool of an uninterrupted run;
a damaged shard stops the rerun instead of being taken for unfinished work."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from docpool import IngestReport, Pool, ingest
from docpool.cli import app
from docpool.pool import Alias, Reject
from docpool.testing import CorpusTruth
from mmprolong_runtime.finished import DamagedShard
from mmprolong_schemas.io import write_parquet

SCRIPT = """
import sys
from docpool import ingest
ingest([sys.argv[1]], sys.argv[2], workers=1, min_pages=5, batch_size=1)
"""


def _snapshot(root: Path) -> dict[str, object]:
    pool = Pool(root)
    shard_ids = [
        doc_id
        for shard in sorted((root / "documents").glob("*.parquet"))
        for doc_id in pq.read_table(shard, columns=["doc_id"]).column("doc_id").to_pylist()
    ]
    assert len(shard_ids) == len(set(shard_ids)), "a document was written twice"
    return {
        "documents": {doc.doc_id: doc.model_dump() for doc in pool.documents()},
        "rejects": [(r.path, r.reason, r.doc_id) for r in pool.rejects()],
        "aliases": pool.aliases(),
        "pdfs": sorted(p.name for p in (root / "pdfs").rglob("*.pdf")),
    }


@pytest.mark.slow
def test_kill_then_rerun_equals_uninterrupted(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path
) -> None:
    folder, truth = corpus
    src = tmp_path / "src"
    shutil.copytree(folder, src)
    shutil.copy(folder / truth.documents[0].file, src / "duplicate.pdf")

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(src), str(killed)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            written = list((killed / "documents").glob("*.parquet")) if killed.exists() else []
            if len(written) >= 2:
                break
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            time.sleep(0.05)
        else:
            pytest.fail("the ingest wrote no shard in time")
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the ingest, its fork server and its workers
        process.wait()
    partial = len(Pool(killed))
    assert 2 <= partial < len(truth.documents), "the kill must land mid-run"

    ingest([src], killed, workers=2, min_pages=5)
    clean = tmp_path / "clean"
    ingest([src], clean, workers=2, min_pages=5)
    assert _snapshot(killed) == _snapshot(clean)
    assert len(Pool(clean)) == len(truth.documents)


def test_a_damaged_shard_stops_the_rerun_before_it_adds_anything(
    corpus: tuple[Path, CorpusTruth], ingested: tuple[Pool, IngestReport], tmp_path: Path
) -> None:
    # Skipping the shard would count its documents as not pooled and add them a second time.
    folder, _ = corpus
    pool = tmp_path / "pool"
    shutil.copytree(ingested[0].root, pool)
    shard = sorted((pool / "documents").glob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # a copy cut short
    before = sorted(str(path.relative_to(pool)) for path in pool.rglob("*"))

    result = CliRunner().invoke(app, ["ingest", str(folder), "--out", str(pool)])
    assert result.exit_code == 2
    message = " ".join(result.output.split())  # rich wraps lines
    assert f"{shard}: cannot read this shard" in message
    assert "Traceback" not in result.output
    assert sorted(str(path.relative_to(pool)) for path in pool.rglob("*")) == before


@pytest.mark.parametrize("table", ["documents", "aliases", "rejects"])
def test_a_damaged_shard_is_named_when_the_pool_is_read(
    ingested: tuple[Pool, IngestReport], tmp_path: Path, table: str
) -> None:
    # Opening the pool reads every documents shard's ids, get() the aliases shards, rejects()
    # the rejects shards: each names the shard it cannot read, as the ingest does.
    pool = tmp_path / "pool"
    shutil.copytree(ingested[0].root, pool)
    doc_id = ingested[0].doc_ids()[0]
    shard = pool / table / "part-zz-0.parquet"  # a later run's
    if table == "documents":
        shard = sorted((pool / "documents").glob("*.parquet"))[0]
    elif table == "aliases":
        write_parquet(shard, [Alias(doc_id=doc_id, path="elsewhere.pdf")], Alias)
    else:
        write_parquet(shard, [Reject(path="broken.pdf", reason="not-a-pdf")], Reject)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # a copy cut short

    read = {
        "documents": lambda: Pool(pool),
        "aliases": lambda: Pool(pool).get(doc_id),
        "rejects": lambda: Pool(pool).rejects(),
    }[table]
    with pytest.raises(DamagedShard, match="cannot read this shard") as caught:
        read()
    assert caught.value.shard == shard
