from importlib import metadata

from typer.testing import CliRunner

from seqpar_train import __version__
from seqpar_train.cli import app


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("seqpar-train")
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"seqpar-train {__version__}"
