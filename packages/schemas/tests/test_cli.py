"""The `mmprolong-schemas` command line: version, JSON Schema export, file validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from schemas_strategies import example_qa

from mmprolong_schemas import QAPair, write_jsonl
from mmprolong_schemas.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit code and everything printed (stdout, then stderr) of one command line."""
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cli_answers_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    code, output = run(capsys, "--version")
    assert code == 0
    assert output.strip() == f"mmprolong-schemas {metadata.version('mmprolong-schemas')}"


def test_cli_exports_json_schemas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, output = run(capsys, "json-schema", "QAPair")
    assert code == 0, output
    schema = json.loads(output)
    assert schema["title"] == "QAPair"
    assert "evidence_pages" in schema["properties"]
    code, output = run(capsys, "json-schema", "--out", str(tmp_path))
    assert code == 0
    assert (tmp_path / "Recipe.schema.json").exists()
    # Ten records: RunManifest moved to mmprolong-runtime with the code that writes it.
    assert len(list(tmp_path.glob("*.schema.json"))) == 10
    code, output = run(capsys, "json-schema", "Nope")
    assert code != 0
    assert "unknown record type 'Nope'" in output


def test_cli_validate_lists_every_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "qa.jsonl"
    write_jsonl(path, [example_qa(), example_qa(qa_id="q2")])
    bad = example_qa().model_dump(mode="json") | {"evidence_pages": [41]}
    with open(path, "a") as handle:
        handle.write(json.dumps(bad) + "\n")
    code, output = run(capsys, "validate", str(path), "--model", "QAPair")
    assert code == 1
    assert "qa.jsonl:3: evidence page 41 is outside segment 12-20" in output
    assert "2 valid QAPair record(s), 1 problem(s)" in output
    good = tmp_path / "good.jsonl"
    write_jsonl(good, [example_qa()])
    assert run(capsys, "validate", str(good), "-m", "QAPair")[0] == 0


def test_cli_bad_usage_exits_2_naming_the_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output = run(capsys)
    assert code == 2 and "json-schema" in output and "validate" in output  # help when bare
    code, output = run(capsys, "validate", str(tmp_path / "missing.jsonl"), "-m", "QAPair")
    assert code == 2 and "missing.jsonl' does not exist" in output
    code, output = run(capsys, "validate", str(tmp_path), "-m", "QAPair")
    assert code == 2 and "is a folder, not a file" in output
    good = tmp_path / "good.jsonl"
    write_jsonl(good, [example_qa()])
    code, output = run(capsys, "validate", str(good), "-m", "Nope")
    assert code == 2 and "unknown record type 'Nope'" in output


def test_qapair_is_importable_for_type_checkers() -> None:
    assert QAPair.model_fields["answer_format"].is_required()
