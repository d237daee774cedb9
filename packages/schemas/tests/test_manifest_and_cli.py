from __future__ import annotations

import json
from pathlib import Path

from schemas_strategies import example_qa
from typer.testing import CliRunner

from mmprolong_schemas import QAPair, RunManifest, config_hash, redact, write_jsonl
from mmprolong_schemas.cli import app
from mmprolong_schemas.manifest import REDACTED, redact_command


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


def test_cli_answers_version() -> None:
    from importlib import metadata

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mmprolong-schemas {metadata.version('mmprolong-schemas')}"


def test_cli_exports_json_schemas(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["json-schema", "QAPair"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["title"] == "QAPair"
    assert "evidence_pages" in schema["properties"]
    result = runner.invoke(app, ["json-schema", "--out", str(tmp_path)])
    assert result.exit_code == 0
    assert (tmp_path / "Recipe.schema.json").exists()
    assert len(list(tmp_path.glob("*.schema.json"))) == 11
    assert runner.invoke(app, ["json-schema", "Nope"]).exit_code != 0


def test_cli_validate_lists_every_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    write_jsonl(path, [example_qa(), example_qa(qa_id="q2")])
    bad = example_qa().model_dump(mode="json") | {"evidence_pages": [41]}
    with open(path, "a") as handle:
        handle.write(json.dumps(bad) + "\n")
    runner = CliRunner()
    result = runner.invoke(app, ["validate", str(path), "--model", "QAPair"])
    assert result.exit_code == 1
    assert "qa.jsonl:3: evidence page 41 is outside segment 12-20" in result.output
    assert "2 valid QAPair record(s), 1 problem(s)" in result.output
    good = tmp_path / "good.jsonl"
    write_jsonl(good, [example_qa()])
    assert runner.invoke(app, ["validate", str(good), "-m", "QAPair"]).exit_code == 0


def test_qapair_is_importable_for_type_checkers() -> None:
    assert QAPair.model_fields["answer_format"].is_required()
