"""The one convention for finished work: a completion record keyed by the config hash."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mmprolong_runtime import config_hash
from mmprolong_runtime.finished import finish, is_finished, read_finished, read_record


def test_a_finished_step_is_found_under_its_key_only(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text("{}\n")
    record = finish(tmp_path / "rows.json", "k1", ["rows.jsonl"], rows=1)
    assert record == {"key": "k1", "outputs": ["rows.jsonl"], "rows": 1}
    assert read_finished(tmp_path / "rows.json", "k1") == record
    assert is_finished(tmp_path / "rows.json", "k1")
    assert not is_finished(tmp_path / "rows.json", "k2")


def test_a_missing_output_makes_the_step_unfinished(tmp_path: Path) -> None:
    (tmp_path / "a.parquet").write_bytes(b"a")
    finish(tmp_path / "done.json", "k", ["a.parquet"])
    (tmp_path / "a.parquet").unlink()
    assert read_finished(tmp_path / "done.json", "k") is None


def test_the_record_is_never_written_for_outputs_that_are_not_there(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"done\.json.*missing: b\.parquet"):
        finish(tmp_path / "done.json", "k", ["b.parquet"])
    assert os.listdir(tmp_path) == []


def test_no_record_or_an_unreadable_one_counts_as_not_finished(tmp_path: Path) -> None:
    assert read_finished(tmp_path / "done.json", "k") is None
    (tmp_path / "done.json").write_text('{"key": "k", "outp')
    assert read_record(tmp_path / "done.json") is None
    assert not is_finished(tmp_path / "done.json", "k")


def test_a_record_from_before_the_convention_covers_the_files_the_caller_names(
    tmp_path: Path,
) -> None:
    # The old form: the stage's summary with "key" and its facts, no "outputs" list
    # (qasynth's segments.json before this convention).
    (tmp_path / "segments.json").write_text(json.dumps({"key": "k", "segments": 3}))
    assert (
        read_finished(tmp_path / "segments.json", "k", old_outputs=lambda _: ["segments.jsonl"])
        is None
    )
    (tmp_path / "segments.jsonl").write_text("{}\n")
    found = read_finished(tmp_path / "segments.json", "k", old_outputs=lambda _: ["segments.jsonl"])
    assert found == {"key": "k", "segments": 3}


def test_an_old_record_that_kept_the_config_itself_matches_its_hash(tmp_path: Path) -> None:
    # The old mixture report kept the key as a dict of its parts.
    parts = {"spec": "abc", "inputs": "def", "shard_size": 4, "shortfall": "scale"}
    (tmp_path / "shard-00000.parquet").write_bytes(b"s")
    (tmp_path / "mixture.json").write_text(
        json.dumps({"key": parts, "shards": ["shard-00000.parquet"]})
    )
    assert is_finished(tmp_path / "mixture.json", config_hash(parts), old_outputs=_old_shards)
    assert not is_finished(tmp_path / "mixture.json", config_hash(parts | {"shard_size": 5}))


def _old_shards(report: dict[str, Any]) -> list[str]:
    return list(report["shards"])


def test_a_parquet_shard_carries_the_key_it_was_written_under(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mmprolong_runtime.finished import keyed_metadata, parquet_key

    field = b"stage.shard_key"
    table = pa.table({"x": [1, 2]}).replace_schema_metadata({b"kept": b"yes"})
    metadata = keyed_metadata(table.schema.metadata, field, "k1")
    pq.write_table(table.replace_schema_metadata(metadata), tmp_path / "s.parquet")
    assert parquet_key(tmp_path / "s.parquet", field) == "k1"
    assert pq.read_schema(tmp_path / "s.parquet").metadata[b"kept"] == b"yes"
    assert parquet_key(tmp_path / "s.parquet", b"other.field") is None
    assert parquet_key(tmp_path / "absent.parquet", field) is None
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "s.parquet").read_bytes()[:20])
    assert parquet_key(tmp_path / "cut.parquet", field) is None


def _write_shard(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_finished_items_come_back_shard_by_shard_in_the_order_given(tmp_path: Path) -> None:
    from mmprolong_runtime.finished import read_finished_items

    # The pool's case: a verdict per path, a later run judging a path again.
    first = _write_shard(
        tmp_path / "part-1.parquet",
        [{"path": "a", "reason": "timeout", "n": 1}, {"path": "b", "reason": "corrupt", "n": 2}],
    )
    second = _write_shard(
        tmp_path / "part-2.parquet", [{"path": "a", "reason": "encrypted", "n": 3}]
    )
    rows = list(read_finished_items([first, second], ["path", "reason"]))
    assert rows == [
        {"path": "a", "reason": "timeout"},
        {"path": "b", "reason": "corrupt"},
        {"path": "a", "reason": "encrypted"},
    ]
    latest = {row["path"]: row["reason"] for row in rows}
    assert latest == {"a": "encrypted", "b": "corrupt"}
    assert [row["n"] for row in read_finished_items([second, first])] == [3, 1, 2]
    assert list(read_finished_items([])) == []


def test_a_damaged_shard_stops_the_reading_and_names_the_shard(tmp_path: Path) -> None:
    from mmprolong_runtime.errors import InputError
    from mmprolong_runtime.finished import DamagedShard, read_finished_items

    good = _write_shard(tmp_path / "part-1.parquet", [{"doc_id": "d1", "source_path": "/x.pdf"}])
    cut = tmp_path / "part-2.parquet"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a copy cut short
    with pytest.raises(DamagedShard, match=r"part-2\.parquet: cannot read") as caught:
        list(read_finished_items([good, cut], ["doc_id"]))
    assert caught.value.shard == cut
    # Bad input the CLIs report in one line, not a bug; the good shard is left as it was.
    assert isinstance(caught.value, InputError)
    assert list(read_finished_items([good], ["doc_id"])) == [{"doc_id": "d1"}]


def test_a_shard_without_a_column_asked_for_is_named_with_the_column(tmp_path: Path) -> None:
    from mmprolong_runtime.finished import DamagedShard, read_finished_items

    shard = _write_shard(tmp_path / "part-1.parquet", [{"doc_id": "d1"}])
    with pytest.raises(DamagedShard, match=r"part-1\.parquet: .*no column source_path"):
        list(read_finished_items([shard], ["doc_id", "source_path"]))
    with pytest.raises(DamagedShard, match=r"absent\.parquet"):
        list(read_finished_items([tmp_path / "absent.parquet"]))
