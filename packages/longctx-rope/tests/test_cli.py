from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

from typer.testing import CliRunner

from longctx_rope import __version__
from longctx_rope.cli import app

runner = CliRunner()


def _words(output: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(output.split())


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("longctx-rope")
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"longctx-rope {__version__}"


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("extend", "inspect", "span", "wavelengths"):
        assert command in result.output


def test_extend_then_inspect(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "extended"
    args = ["extend", str(checkpoints["qwen2.5-vl"]), "--out", str(out), "--method", "set-base"]
    result = runner.invoke(app, [*args, "--base", "4e6", "--target", "128K"])
    assert result.exit_code == 0, result.output
    assert "written and verified" in _words(result.output)
    again = runner.invoke(app, [*args, "--base", "4e6", "--target", "128K"])
    assert "already up to date" in _words(again.output)
    inspected = runner.invoke(app, ["inspect", str(out), "--json", str(tmp_path / "views.json")])
    assert inspected.exit_code == 0, inspected.output
    views = json.loads((tmp_path / "views.json").read_text())["views"]
    assert [v["theta"] for v in views] == [4e6, 4e6, 4e6]
    assert "disagree" not in inspected.output


def test_inspect_flags_a_transformers5_only_checkpoint(checkpoints: dict[str, Path]) -> None:
    result = runner.invoke(app, ["inspect", str(checkpoints["qwen3-vl"])])
    assert result.exit_code == 0
    assert "loaders disagree on the base" in _words(result.output)


def test_extend_linear_warns_about_vllm(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "extend",
            str(checkpoints["qwen3-vl"]),
            "--out",
            str(tmp_path / "o"),
            "--method",
            "linear",
            "--original",
            "32K",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "falls back to plain RoPE" in _words(result.output)


def test_extend_errors_exit_nonzero(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    missing = runner.invoke(app, ["extend", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert missing.exit_code == 2 and "config.json" in _words(missing.output)
    wrong = runner.invoke(
        app,
        ["extend", str(checkpoints["qwen2.5-vl"]), "--out", str(tmp_path / "o"), "--base", "9e6"],
    )
    assert wrong.exit_code == 2 and "set-base" in _words(wrong.output)
    assert not (tmp_path / "o").exists()


def test_span_writes_table_json_png(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    pool, samples = corpus
    out = tmp_path / "report"
    result = runner.invoke(app, ["span", str(samples), "--pool", str(pool), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "max T" in _words(result.output)
    data = json.loads((out / "span.json").read_text())
    assert data["summary"]["count"] == 3 and len(data["spans"]) == 3
    assert (out / "span.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wavelengths_from_span_and_model(
    corpus: tuple[Path, Path], checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    pool, _ = corpus
    runner.invoke(app, ["span", str(pool), "--out", str(tmp_path / "span")])
    out = tmp_path / "wl"
    result = runner.invoke(
        app,
        [
            "wavelengths",
            "--base",
            "4e6",
            "--model",
            str(checkpoints["qwen2.5-vl"]),
            "--trained-span",
            str(tmp_path / "span/span.json"),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "wavelengths.json").read_text())
    assert data["head_dim"] == 32 and len(data["frequencies"]) == 16
    assert {s["row"] for s in data["sections"]} == {"T", "H", "W"}
    assert all(s["trained_max"] < 3100 for s in data["sections"])
    assert (out / "wavelengths.png").read_bytes()[:4] == b"\x89PNG"


def test_span_of_a_missing_path_fails_cleanly(tmp_path: Path) -> None:
    result = runner.invoke(app, ["span", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "does not exist" in _words(result.output)


def test_extend_refuses_a_shorter_target(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    """Qwen3-VL's default original context is its 256K max_position_embeddings."""
    out = str(tmp_path / "o")
    result = runner.invoke(app, ["extend", str(checkpoints["qwen3-vl"]), "--out", out])
    assert result.exit_code == 2 and "nothing to extend" in _words(result.output)


def test_a_bad_token_count_names_its_option(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    model = str(checkpoints["qwen2.5-vl"])
    for args, option in (
        (["extend", model, "--out", str(tmp_path / "o"), "--target", "5Q"], "--target"),
        (["extend", model, "--out", str(tmp_path / "o"), "--original", "5Q"], "--original"),
        (["wavelengths", "--base", "1e6", "--trained-max", "5Q"], "--trained-max"),
        (["wavelengths", "--base", "1e6", "--target-max", "5Q"], "--target-max"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2
        assert f"Invalid value for {option}: '5Q' is not a token count" in _words(result.output)
    assert not (tmp_path / "o").exists()
