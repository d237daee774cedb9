"""The `mmprolong-runtime` command line: version, and a run folder's manifest in words or JSON."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from typer.testing import CliRunner

from mmprolong_runtime import RunManifest
from mmprolong_runtime.cli import app


def _write_manifest(path: Path) -> RunManifest:
    manifest = RunManifest.start("qasynth generate", {"budget": 3, "api_key": "k"}).finish(
        "done", pairs=12
    )
    path.write_text(manifest.model_dump_json())
    return manifest


def _words(output: str) -> str:
    """The output's words in one line: rich wraps an error inside a box."""
    return " ".join(output.replace("│", " ").split())


def test_cli_answers_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mmprolong-runtime {metadata.version('mmprolong-runtime')}"


def test_manifest_of_a_run_folder_in_words_and_json(tmp_path: Path) -> None:
    written = _write_manifest(tmp_path / "manifest.json")
    runner = CliRunner()
    result = runner.invoke(app, ["manifest", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "tool         qasynth generate" in result.output
    assert "status       done" in result.output
    assert f"config hash  {written.config_hash}" in result.output
    assert "count        pairs = 12" in result.output
    result = runner.invoke(app, ["manifest", str(tmp_path / "manifest.json"), "--json"])
    assert result.exit_code == 0, result.output
    assert RunManifest.model_validate(json.loads(result.output)) == written


def test_lvlm_judge_run_json_is_found_too(tmp_path: Path) -> None:
    _write_manifest(tmp_path / "run.json")
    result = CliRunner().invoke(app, ["manifest", str(tmp_path)])
    assert result.exit_code == 0 and "qasynth generate" in result.output


def test_a_folder_or_file_that_is_no_manifest_is_named(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["manifest", str(tmp_path)])
    assert result.exit_code == 2
    assert "holds no run manifest" in _words(result.output)
    (tmp_path / "manifest.json").write_text('{"tool": 3}')
    result = runner.invoke(app, ["manifest", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a run manifest" in _words(result.output)
    result = runner.invoke(app, ["manifest", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in _words(result.output)


def test_validate_lists_every_problem_of_a_manifest(tmp_path: Path) -> None:
    runner = CliRunner()
    _write_manifest(tmp_path / "manifest.json")
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'manifest.json'}: a valid run manifest" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"tool": 3, "status": "half", "colour": "red"}')
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("invalid ")]
    assert problems == [
        f"invalid {bad}: tool: Input should be a valid string (got 3)",
        f"invalid {bad}: config_hash: is required",
        f"invalid {bad}: status: Input should be 'running', 'done' or 'failed' (got 'half')",
        f"invalid {bad}: colour: is not a known field",
    ]
    assert f"{bad} is not a run manifest: 4 problem(s)" in result.stderr


def test_json_schema_of_the_run_manifest(tmp_path: Path) -> None:
    from mmprolong_schemas.version import SCHEMA_VERSION

    runner = CliRunner()
    result = runner.invoke(app, ["json-schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["title"] == "RunManifest" and "config_hash" in schema["required"]
    assert schema["$comment"] == f"mmprolong-schemas {SCHEMA_VERSION}"
    # Beside mmprolong-schemas' ten, the eleventh record.
    result = runner.invoke(app, ["json-schema", "--out", str(tmp_path / "schemas")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "schemas" / "RunManifest.schema.json").read_text()) == schema
