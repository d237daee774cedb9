from importlib import metadata

from typer.testing import CliRunner

from qasynth import __version__
from qasynth.cli import app


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("qasynth")
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"qasynth {__version__}"
