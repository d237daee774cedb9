"""The `mmprolong-schemas` command line: version, JSON Schema export, file validation."""

from __future__ import annotations

import json
from pathlib import Path

from schemas_strategies import example_qa
from typer.testing import CliRunner

from mmprolong_schemas import QAPair, write_jsonl
from mmprolong_schemas.cli import app


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
    # Ten records: RunManifest moved to mmprolong-runtime with the code that writes it.
    assert len(list(tmp_path.glob("*.schema.json"))) == 10
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
