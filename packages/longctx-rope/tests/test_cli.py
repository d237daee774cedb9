from importlib import metadata

from typer.testing import CliRunner

from longctx_rope import __version__
from longctx_rope.cli import app


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("longctx-rope")
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"longctx-rope {__version__}"
