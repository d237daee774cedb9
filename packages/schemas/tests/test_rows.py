"""Rows serialised apart from writing (``record_to_row``) read back as the same records."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemas_strategies import ALL_MODELS, example_qa

from mmprolong_schemas import RECORD_MODELS, QAPair, read_parquet, write_parquet
from mmprolong_schemas.io import record_to_row, write_parquet_rows

ROUNDTRIP = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_rows_roundtrip_through_pickle_and_parquet(name: str) -> None:
    model = RECORD_MODELS[name]

    @ROUNDTRIP
    @given(st.lists(ALL_MODELS[name], min_size=1, max_size=3))
    def check(records: list) -> None:  # type: ignore[type-arg]
        rows = pickle.loads(pickle.dumps([record_to_row(r, model) for r in records]))
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "r.parquet"
            assert write_parquet_rows(path, rows, model) == len(records)
            assert list(read_parquet(path, model)) == records

    check()


def test_rows_file_has_the_schema_write_parquet_gives(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    record = example_qa()
    write_parquet(tmp_path / "a.parquet", [record], QAPair)
    write_parquet_rows(tmp_path / "b.parquet", [record_to_row(record, QAPair)], QAPair)
    assert pq.read_schema(tmp_path / "a.parquet") == pq.read_schema(tmp_path / "b.parquet")


def test_rows_of_the_wrong_model_or_shape_are_refused(tmp_path: Path) -> None:
    record = example_qa()
    with pytest.raises(TypeError, match="QAPair"):
        record_to_row(record, RECORD_MODELS["Document"])
    row = record_to_row(record, QAPair)
    del row["question"]
    with pytest.raises(ValueError, match="columns"):
        write_parquet_rows(tmp_path / "bad.parquet", [row], QAPair)
    assert not (tmp_path / "bad.parquet").exists()
