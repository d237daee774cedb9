"""Run manifests: secrets never recorded, stable config hashes, exact round trips."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmprolong_runtime import RunManifest, config_hash, redact
from mmprolong_runtime.manifest import REDACTED, redact_command
from mmprolong_schemas import read_jsonl, read_parquet, write_jsonl, write_parquet
from mmprolong_schemas.io import record_to_row, write_parquet_rows


def test_secrets_never_reach_the_manifest() -> None:
    config = {
        "teacher": {"api_key": "abc123", "base_url": "http://127.0.0.1:8000", "model": "m"},
        "hf_token": "hf_abcdefghijklmnop",
        "token_budget": 5368709120,
        "max_tokens": 128,
        "headers": ["Bearer abcdefghijkl"],
        "note": "sk-abcdefghijklmnopqrst",
    }
    manifest = RunManifest.start(
        "qasynth", config, ["qasynth", "generate", "--api-key", "abc123", "--token=xyz"]
    )
    dumped = manifest.model_dump_json()
    for secret in ("abc123", "hf_abcdefghijklmnop", "abcdefghijkl", "sk-abc", "xyz"):
        assert secret not in dumped
    assert manifest.config["token_budget"] == 5368709120
    assert manifest.config["max_tokens"] == 128
    assert manifest.config["teacher"]["base_url"] == "http://127.0.0.1:8000"
    assert manifest.command[3] == REDACTED


def test_redact_command_keeps_ordinary_flags() -> None:
    assert redact_command(["--max-tokens", "12", "--auth-token", "s3cr3t", "--password=x"]) == [
        "--max-tokens",
        "12",
        "--auth-token",
        REDACTED,
        f"--password={REDACTED}",
    ]


def test_config_hash_is_order_independent_and_ignores_secret_values() -> None:
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    assert config_hash({"api_key": "one"}) == config_hash({"api_key": "two"})
    assert redact({"nested": [{"password": "p"}]}) == {"nested": [{"password": REDACTED}]}


def test_manifest_finish_records_status_and_counts() -> None:
    done = RunManifest.start("docpool", {"workers": 2}).finish("done", documents=3)
    assert done.status == "done" and done.counts == {"documents": 3}
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert "mmprolong-schemas" in done.package_versions


words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30
)
text = st.text(max_size=40)


@st.composite
def run_manifests(draw: st.DrawFn) -> RunManifest:
    config = draw(st.dictionaries(words, st.integers() | text | st.booleans(), max_size=4))
    manifest = RunManifest.start(draw(words), config, draw(st.lists(text, max_size=3)))
    return manifest.finish(**draw(st.dictionaries(words, st.integers(0, 10**6), max_size=3)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(run_manifests(), min_size=1, max_size=3))
def test_manifests_roundtrip_through_jsonl_parquet_and_rows(records: list[RunManifest]) -> None:
    # The same round trips mmprolong-schemas checks for its own records.
    with tempfile.TemporaryDirectory() as folder:
        jsonl, parquet, rows = (
            Path(folder) / name for name in ("r.jsonl", "r.parquet", "w.parquet")
        )
        write_jsonl(jsonl, records)
        write_parquet(parquet, records, RunManifest)
        row_list = pickle.loads(pickle.dumps([record_to_row(r, RunManifest) for r in records]))
        assert write_parquet_rows(rows, row_list, RunManifest) == len(records)
        assert list(read_jsonl(jsonl, RunManifest)) == records
        assert list(read_parquet(parquet, RunManifest)) == records
        assert list(read_parquet(rows, RunManifest)) == records
