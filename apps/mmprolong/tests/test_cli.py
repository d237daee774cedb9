from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmprolong import __version__
from mmprolong.cli import PACKAGE_APPS, app
from mmprolong.orchestrator import Stage

runner = CliRunner()

OWN_COMMANDS = ["run", "status", "recipes", "sweep", "doctor", "demo", "launch-train"]


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("mmprolong")
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mmprolong {__version__}"


def test_top_level_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for name in [*OWN_COMMANDS, *PACKAGE_APPS]:
        assert name in result.output


@pytest.mark.parametrize("command", [*OWN_COMMANDS, *PACKAGE_APPS])
def test_every_subcommand_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_help_does_not_import_the_heavy_packages() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from mmprolong.cli import app\n"
        "assert CliRunner().invoke(app, ['--help']).exit_code == 0\n"
        "heavy = sorted({'torch', 'transformers', 'docpool', 'qasynth', 'seqpar_train',"
        " 'lvlm_judge', 'longctx_rope', 'matplotlib'} & set(sys.modules))\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_recipes_lists_and_prints() -> None:
    listed = runner.invoke(app, ["recipes"])
    assert listed.exit_code == 0
    assert "demo-tiny" in listed.output
    shown = runner.invoke(app, ["recipes", "demo-tiny"])
    assert shown.exit_code == 0
    assert 'name = "demo-tiny"' in shown.output
    missing = runner.invoke(app, ["recipes", "nope"])
    assert missing.exit_code == 2


def test_sweep_dry_run_writes_the_grid_and_plans_each_run(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "sweep",
            "ablation-mrope-base",
            "--out",
            str(tmp_path),
            "--base",
            "demo-tiny",
            "--dry-run",
        ],
    )
    assert result.exit_code == 0, result.output
    written = sorted(path.stem for path in tmp_path.glob("*.toml"))
    assert len(written) == 9
    assert "reasoning-8e6" in written
    assert result.output.count("Plan") == 9
    # A dry run changes nothing: no run directory was created.
    assert not any(path.is_dir() for path in tmp_path.iterdir())


def test_sweep_rejects_unknown_names(tmp_path: Path) -> None:
    assert runner.invoke(app, ["sweep", "ablation-nope", "--out", str(tmp_path)]).exit_code == 2
    result = runner.invoke(
        app, ["sweep", "ablation-ratio", "--out", str(tmp_path), "--only", "9-1", "--dry-run"]
    )
    assert result.exit_code == 2
    assert "9-1" in result.output
    listed = runner.invoke(app, ["sweep", "--list"])
    assert "ablation-short-data" in listed.output


def test_run_reports_a_bad_recipe_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[train]\nmax_lenght = 5\n')
    result = runner.invoke(app, ["run", str(bad), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "max_lenght" in result.output


def test_status_of_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run directory" in result.output


def test_dry_run_plan_and_status(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", "demo-tiny", "--run-dir", str(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output
    for stage in ("pool", "synth", "mix", "rope", "train", "eval", "report"):
        assert stage in result.output
    assert not (tmp_path / "pool").exists()


def test_doctor_runs() -> None:
    result = runner.invoke(app, ["doctor", "--recipe", "demo-tiny"])
    assert result.exit_code == 0, result.output
    for item in ("GPUs", "CUDA", "flash-attn", "torch varlen", "vllm", "ray", "tesseract", "disk"):
        assert item in result.output
    assert "Stage choices for demo-tiny" in result.output


class _RecordingStage(Stage):
    """A stand-in for the real stages: records which recipe it ran, fails when told to."""

    def __init__(self, name: str, seen: list[str], fail_for: str | None = None):
        self.name = name
        self.seen = seen
        self.fail_for = fail_for

    def config(self, recipe: object) -> dict[str, object]:
        return {"recipe": recipe.model_dump(mode="json")}  # type: ignore[attr-defined]

    def run(self, ctx: object) -> dict[str, int]:
        name = ctx.recipe.name  # type: ignore[attr-defined]
        if name == self.fail_for:
            raise RuntimeError("boom")
        self.seen.append(f"{self.name}:{name}")
        return {"ran": 1}


def test_sweep_runs_its_grid_in_turn_and_survives_a_failed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmprolong.stages

    seen: list[str] = []
    failing = "ablation-mrope-base-reasoning-2e6"
    monkeypatch.setattr(
        mmprolong.stages,
        "default_stages",
        lambda *_: [_RecordingStage("a", seen), _RecordingStage("b", seen, fail_for=failing)],
    )
    args = ["sweep", "ablation-mrope-base", "--out", str(tmp_path), "--base", "demo-tiny"]
    only = ["--only", "reasoning-2e6", "--only", "reasoning-8e6"]
    result = runner.invoke(app, [*args, *only])
    assert result.exit_code == 1
    assert "1 of 2 runs failed: reasoning-2e6" in result.output
    assert seen == [
        "a:ablation-mrope-base-reasoning-2e6",
        "a:ablation-mrope-base-reasoning-8e6",
        "b:ablation-mrope-base-reasoning-8e6",
    ]
    assert (tmp_path / "reasoning-8e6" / "b" / "manifest.json").exists()


def test_run_says_which_stages_a_change_invalidates_before_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mmprolong.stages

    seen: list[str] = []
    monkeypatch.setattr(
        mmprolong.stages,
        "default_stages",
        lambda *_: [_RecordingStage("first", seen), _RecordingStage("second", seen)],
    )
    recipe = tmp_path / "mine.toml"
    recipe.write_text('name = "mine"\n')
    run_dir = tmp_path / "run"
    assert runner.invoke(app, ["run", str(recipe), "--run-dir", str(run_dir)]).exit_code == 0
    again = runner.invoke(app, ["run", str(recipe), "--run-dir", str(run_dir)])
    assert again.exit_code == 0
    assert "skip" in again.output
    assert seen == ["first:mine", "second:mine"]

    recipe.write_text('name = "mine"\n[rope]\nbase = 8e6\n')
    changed = runner.invoke(app, ["run", str(recipe), "--run-dir", str(run_dir)])
    assert changed.exit_code == 0
    assert "The config of stage 'first' changed" in changed.output
    assert "first, second will be redone" in changed.output
    assert changed.output.index("will be redone") < changed.output.index("Finished")
    status = runner.invoke(app, ["status", str(run_dir)])
    assert status.output.count("done") == 2


def test_pdfs_option_sets_the_pool_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmprolong.stages
    from mmprolong.orchestrator import load_run_recipe

    monkeypatch.setattr(mmprolong.stages, "default_stages", lambda *_: [_RecordingStage("a", [])])
    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    run_dir = tmp_path / "run"
    args = ["run", "mmprolong-qwen2.5-vl-7b", "--run-dir", str(run_dir), "--pdfs", str(pdfs)]
    assert runner.invoke(app, args).exit_code == 0
    assert load_run_recipe(run_dir).pool.inputs == [str(pdfs.resolve())]


def test_run_names_a_bad_executor(tmp_path) -> None:
    result = runner.invoke(
        app, ["run", "demo-tiny", "--run-dir", str(tmp_path / "r"), "--executor", "slurm"]
    )
    assert result.exit_code != 0
    assert "local or ray" in result.output
    assert not (tmp_path / "r").exists()  # refused before anything was written
