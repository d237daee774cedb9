from importlib import metadata

from typer.testing import CliRunner

from lvlm_judge import __version__
from lvlm_judge.cli import app


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("lvlm-judge")
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"lvlm-judge {__version__}"
