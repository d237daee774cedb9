from importlib import metadata

from typer.testing import CliRunner

from docpool import __version__
from docpool.cli import app


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("docpool")
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"docpool {__version__}"
