import json
from importlib import metadata
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from docpool import IngestReport, Pool, __version__
from docpool.cli import app, parse_pages
from mmprolong_schemas import VisionTokenSpec

runner = CliRunner()


def test_version_matches_distribution() -> None:
    assert __version__ == metadata.version("docpool")
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"docpool {__version__}"


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("ingest", "stats", "render", "hash", "make-corpus"):
        assert command in result.output


def test_make_corpus_then_ingest(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "make-corpus",
            str(tmp_path / "c"),
            "--n-docs",
            "2",
            "--min-pages",
            "6",
            "--max-pages",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c" / "ground_truth.json").is_file()
    result = runner.invoke(
        app,
        [
            "ingest",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "p"),
            "--min-pages",
            "5",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "documents added" in result.output
    assert len(Pool(tmp_path / "p")) == 2


def test_stats_writes_json_and_histograms(
    ingested: tuple[Pool, IngestReport], tmp_path: Path
) -> None:
    pool, report = ingested
    result = runner.invoke(app, ["stats", str(pool.root), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "Number of documents" in result.output and "French documents" in result.output
    data = json.loads((tmp_path / "s" / "stats.json").read_text())
    assert data["documents"] == len(pool) == report.added
    assert data["total_pages"] == report.pages_added
    assert data["languages"] == {"en": 6, "fr": 1, "de": 1}
    assert data["rejects"] == {"not_pdf": 1}
    # Six Letter-size English documents and two A4 ones: tokens follow the page sizes.
    letter = sum(d.num_pages for d in pool.documents() if d.lang == "en") * 2510
    assert data["total_tokens"] > letter
    for name in ("pages_hist.png", "tokens_hist.png"):
        with Image.open(tmp_path / "s" / name) as image:
            assert image.format == "PNG" and image.width > 100


def test_stats_of_qwen3_vl_use_its_image_limits(
    ingested: tuple[Pool, IngestReport], tmp_path: Path
) -> None:
    pool, _ = ingested
    result = runner.invoke(
        app, ["stats", str(pool.root), "--out", str(tmp_path / "s"), "--family", "qwen3-vl"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "s" / "stats.json").read_text())
    assert data["token_spec"] == {
        "dpi": 144.0,
        "factor": 32,
        "min_pixels": 65536,
        "max_pixels": 16777216,
    }
    spec = VisionTokenSpec.for_family("qwen3-vl")
    assert data["total_tokens"] == sum(d.tokens(spec) for d in pool.documents())


def test_render_formats(ingested: tuple[Pool, IngestReport], tmp_path: Path) -> None:
    pool, _ = ingested
    doc_id = pool.doc_ids()[0]
    for fmt, suffix in (("jpeg", "jpg"), ("png", "png"), ("webp", "webp")):
        result = runner.invoke(
            app,
            [
                "render",
                str(pool.root),
                doc_id[:12],
                "--pages",
                "1,3-4",
                "--out",
                str(tmp_path / fmt),
                "--format",
                fmt,
                "--dpi",
                "72",
            ],
        )
        assert result.exit_code == 0, result.output
        files = sorted((tmp_path / fmt).glob(f"*.{suffix}"))
        assert [f.name.split("-")[-1] for f in files] == [f"p{n:04d}.{suffix}" for n in (1, 3, 4)]
        with Image.open(files[0]) as image:
            page = pool.get(doc_id).page(1)
            assert image.size == (round(page.width), round(page.height))


def test_parse_pages() -> None:
    assert parse_pages("1,4,9-11") == [1, 4, 9, 10, 11]


def test_ingest_reports_bad_input_without_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["ingest", str(tmp_path / "missing"), "--out", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert "no such file or folder" in " ".join(result.output.split())  # rich wraps lines
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_ingest_names_a_bad_executor_choice(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    out = str(tmp_path / "p")
    result = runner.invoke(app, ["ingest", str(tmp_path / "c"), "--out", out, "--executor", "dask"])
    assert result.exit_code == 2 and "unknown executor 'dask'" in result.output
    result = runner.invoke(
        app, ["ingest", str(tmp_path / "c"), "--out", out, "--ray-address", "auto"]
    )
    assert result.exit_code == 2 and "ray executor" in result.output
