from importlib import metadata

from typer.testing import CliRunner

from lvlm_judge import __version__
from lvlm_judge.cli import app


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("lvlm-judge")
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"lvlm-judge {__version__}"


def test_run_names_a_bad_executor_choice(tmp_path) -> None:
    from lvlm_judge.testing import make_doc_benchmark

    root = make_doc_benchmark(tmp_path / "data", datasets=("mmlongdoc",), docs=1, pages=1)
    args = ["run", "--model", "m", "--runner", "openai", "--data", str(root), "--lengths", "8K",
            "--datasets", "mmlongdoc"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--executor", "dask"])
    assert result.exit_code == 2 and "local or ray" in result.output
    result = CliRunner().invoke(app, [*args, "--ray-address", "auto"])
    assert result.exit_code == 2 and "needs --executor ray" in result.output


def test_a_bad_length_names_its_option(tmp_path) -> None:
    from lvlm_judge.testing import make_doc_benchmark

    root = str(make_doc_benchmark(tmp_path / "data", datasets=("mmlongdoc",), docs=1, pages=1))
    for args, option in (
        (["run", "--model", "m", "--runner", "openai", "--data", root, "--lengths", "8K,5Q"],
         "--lengths"),
        (["extend", root, "--tokenizer", root, "--source-lengths", "5Q"], "--source-lengths"),
        (["extend", root, "--tokenizer", root, "--to", "5Q"], "--to"),
    ):  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2
        assert f"Invalid value for {option}: '5Q' is not a token count" in result.output
