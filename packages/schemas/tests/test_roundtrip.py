"""Every record survives JSONL and Parquet exactly, for any valid content."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemas_strategies import ALL_MODELS, example_qa

from mmprolong_schemas import (
    RECORD_MODELS,
    QAPair,
    read_jsonl,
    read_parquet,
    write_jsonl,
    write_parquet,
)

ROUNDTRIP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_every_record_model_has_a_strategy() -> None:
    assert set(ALL_MODELS) == set(RECORD_MODELS)


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_jsonl_and_parquet_roundtrip(name: str) -> None:
    model = RECORD_MODELS[name]

    @ROUNDTRIP
    @given(st.lists(ALL_MODELS[name], min_size=1, max_size=3))
    def check(records: list) -> None:  # type: ignore[type-arg]
        with tempfile.TemporaryDirectory() as folder:
            jsonl, parquet = Path(folder) / "r.jsonl", Path(folder) / "r.parquet"
            write_jsonl(jsonl, records)
            write_parquet(parquet, records, model)
            assert list(read_jsonl(jsonl, model)) == records
            assert list(read_parquet(parquet, model)) == records

    check()


def test_parquet_keeps_scalar_fields_as_typed_columns(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_parquet(tmp_path / "qa.parquet", [example_qa()], QAPair)
    schema = pq.read_schema(tmp_path / "qa.parquet")
    assert schema.field("question").type == pa.string()
    assert schema.field("task").type == pa.string()
    assert schema.field("evidence_pages").type == pa.string()  # JSON-encoded list
