from importlib import metadata

from typer.testing import CliRunner

from mmprolong import __version__
from mmprolong.cli import app


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("mmprolong")
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mmprolong {__version__}"
