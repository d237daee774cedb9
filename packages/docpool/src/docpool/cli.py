"""`docpool` command line: ingest, stats, render, hash, make-corpus."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer
from rich.console import Console
from rich.table import Table

from docpool import __version__
from mmprolong_runtime.cli_app import package_app
from mmprolong_runtime.errors import InputError
from mmprolong_schemas import ModelFamily, PageRange

if TYPE_CHECKING:
    from docpool.ingest import IngestReport
    from docpool.render import ColorMode

app = package_app(
    "docpool",
    __version__,
    help="Turn folders of PDFs into a deduplicated, layout-parsed document pool.",
)
console = Console(stderr=True)


@app.command("ingest")
def ingest_command(
    sources: list[Path] = typer.Argument(
        ..., help="PDF files, folders (searched recursively) or CSV/JSONL manifests of paths."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Pool directory (created if missing)."),
    layout: str = typer.Option(
        "fast", help="Layout parser: 'fast' (rules) or 'model' (needs the layout extra)."
    ),
    layout_features: str = typer.Option(
        "rf",
        help="Inputs of the layout model: 'rf' (text and geometry, faster) or 'imf+rf' "
        "(adds page-image features).",
    ),
    workers: int = typer.Option(
        0,
        help="Worker processes (local) or tasks in flight (ray); 0 = one per available core "
        "(local) or per cluster CPU (ray).",
    ),
    executor: str = typer.Option(
        "local",
        help="Where documents are parsed: 'local' (processes on this machine) or 'ray' (a Ray "
        "cluster; needs the ray extra and a pool folder every node can see).",
    ),
    ray_address: str | None = typer.Option(
        None,
        help="Ray cluster to join with --executor ray ('auto', 'host:6379', "
        "'ray://host:10001'); default: start a local Ray instance.",
    ),
    min_pages: int = typer.Option(20, help="Reject documents with fewer pages."),
    max_pages: int = typer.Option(200, help="Reject documents with more pages."),
    max_file_mb: float = typer.Option(1024.0, help="Reject files larger than this (MiB)."),
    exclude_hashes: Path | None = typer.Option(
        None, help="File of SHA-256 hashes to drop (see `docpool hash`)."
    ),
    domain_map: Path | None = typer.Option(
        None,
        help="CSV (key,domain) or JSON mapping of path, file name or hash to a domain. "
        "Default domain: the parent folder name.",
    ),
    timeout: float = typer.Option(300.0, help="Seconds one document (or chunk) may take."),
    memory_mb: int = typer.Option(
        4096,
        help="Address space (MiB) a worker may add to what it inherits; over it, the "
        "document is rejected as memory.",
    ),
    chunk_pages: int = typer.Option(
        128,
        help="Parse longer documents in chunks of this many pages, in parallel (the first "
        "chunk with the style profile, the others after it).",
    ),
    tables: str = typer.Option(
        "grid",
        help="Table detection: 'grid' (ruled tables, fast), "
        "'finder' (PyMuPDF find_tables, slow), 'off'.",
    ),
    ocr: bool = typer.Option(True, help="OCR pages without text when tesseract is installed."),
    ocr_language: str | None = typer.Option(
        None,
        help="Tesseract language codes for OCR, e.g. 'eng', 'deu', 'chi_sim', 'jpn+eng' "
        "(installed traineddata). Default: each document's detected language where "
        "Tesseract has it (with eng), else eng.",
    ),
    batch_size: int = typer.Option(
        64, min=1, help="Records per appended shard; what an interrupted run keeps."
    ),
    retry_rejects: bool = typer.Option(
        False,
        "--retry-rejects",
        help="Judge every file rejected by earlier runs again. Without it, only transient "
        "failures (timeout, memory, crash) and files whose page count these "
        "--min/--max-pages would accept are retried.",
    ),
) -> None:
    """Add PDFs to a pool: hash, dedup, parse in isolated workers, append shards.

    Safe to interrupt and rerun: files already pooled, aliased or rejected are skipped."""
    from docpool.layout_model import LayoutModelUnavailable
    from docpool.pool import NotAPool, PoolLocked
    from docpool.sources import SourceError

    try:
        report = _run_ingest(
            sources,
            out,
            layout,
            layout_features,
            workers,
            executor,
            ray_address,
            min_pages,
            max_pages,
            max_file_mb,
            exclude_hashes,
            domain_map,
            timeout,
            memory_mb,
            chunk_pages,
            tables,
            ocr,
            ocr_language,
            batch_size,
            retry_rejects,
        )
    except (
        SourceError,
        NotAPool,
        PoolLocked,
        LayoutModelUnavailable,
        ValueError,
        ImportError,
    ) as error:
        # Bad arguments or inputs, or a missing extra: one line (the CLI scaffolding's).
        raise InputError(str(error)) from error
    _print_report(report, out)


def _run_ingest(
    sources: list[Path],
    out: Path,
    layout: str,
    layout_features: str,
    workers: int,
    executor: str,
    ray_address: str | None,
    min_pages: int,
    max_pages: int,
    max_file_mb: float,
    exclude_hashes: Path | None,
    domain_map: Path | None,
    timeout: float,
    memory_mb: int,
    chunk_pages: int,
    tables: str,
    ocr: bool,
    ocr_language: str | None,
    batch_size: int,
    retry_rejects: bool = False,
) -> IngestReport:
    from docpool.ingest import ingest
    from mmprolong_runtime.executor import make_executor

    runner = make_executor(
        executor,
        workers or None,
        ray_address=ray_address,
        timeout=timeout,
        memory_bytes=memory_mb << 20,
    )
    return ingest(
        sources,
        out,
        layout=layout,
        layout_features=layout_features,
        workers=runner.workers,
        executor=runner,
        min_pages=min_pages,
        max_pages=max_pages,
        max_file_bytes=int(max_file_mb * (1 << 20)),
        exclude_hashes=exclude_hashes,
        domain_map=domain_map,
        timeout=timeout,
        memory_bytes=memory_mb << 20,
        chunk_pages=chunk_pages,
        tables=tables,
        ocr=ocr,
        ocr_language=ocr_language,
        batch_size=batch_size,
        retry_rejects=retry_rejects,
        progress=True,
        command=sys.argv,
    )


def _print_report(report: IngestReport, out: Path) -> None:
    table = Table(title=f"ingest into {out}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("candidate files", str(report.candidates))
    table.add_row("documents added", str(report.added))
    table.add_row("pages added", str(report.pages_added))
    table.add_row("aliases added", str(report.aliases_added))
    table.add_row("already in pool", str(report.already_in_pool))
    table.add_row("rejected before, judged again", str(report.retried))
    for reason, count in sorted(report.rejected.items()):
        table.add_row(f"rejected: {reason}", str(count))
    table.add_row("seconds", f"{report.seconds:.1f}")
    table.add_row("pages/s", f"{report.pages_per_second:.1f}")
    console.print(table)


@app.command("stats")
def stats_command(
    pool: Path = typer.Argument(..., help="Pool directory."),
    out: Path | None = typer.Option(
        None, help="Folder for stats.json and the two histograms (default POOL/stats)."
    ),
    family: ModelFamily = typer.Option(ModelFamily.QWEN2_5_VL, help="Token counting model."),
    dpi: float = typer.Option(144.0, help="Render resolution the token estimate assumes."),
    min_pixels: int | None = typer.Option(
        None, help="Preprocessor min_pixels [default: the family's, 3136 or 65536]."
    ),
    max_pixels: int | None = typer.Option(
        None, help="Preprocessor max_pixels [default: the family's, 12845056 or 16777216]."
    ),
) -> None:
    """Print the pool table (documents, pages, languages, domains, tokens) and write
    stats.json, pages_hist.png and tokens_hist.png."""
    from docpool.pool import Pool
    from docpool.stats import compute_stats, stats_table, write_stats
    from docpool.tokens import spec_for

    opened = Pool(pool)
    stats = compute_stats(opened, spec_for(family, dpi, min_pixels, max_pixels))
    Console().print(stats_table(stats))
    for path in write_stats(stats, out or pool / "stats"):
        console.print(f"wrote {path}")


@app.command("render")
def render_command(
    pool: Path = typer.Argument(..., help="Pool directory."),
    doc_id: str = typer.Argument(..., help="Document SHA-256 (a unique prefix is enough)."),
    pages: str = typer.Option("1", help="Pages, 1-based: '3', '1-5' or '1,4,9-12'."),
    out: Path = typer.Option(Path("pages"), help="Output folder."),
    fmt: str = typer.Option("jpeg", "--format", help="jpeg, png or webp."),
    dpi: float = typer.Option(144.0, help="Resolution."),
    quality: int = typer.Option(90, help="JPEG/WebP quality."),
    color: str = typer.Option(
        "auto",
        help="auto: pages drawn without colour as gray (one-channel) images, cheaper to render "
        "and encode, the others as RGB; rgb: every page RGB; gray: every page gray.",
    ),
) -> None:
    """Write pages of a pooled document as image files (JPEG by simplejpeg, PNG/WebP by Pillow)."""
    from docpool.pool import Pool
    from docpool.render import COLOR_MODES, FORMATS, write_pages

    opened = Pool(pool)
    matches = [d for d in opened.doc_ids() if d.startswith(doc_id.lower())]
    if len(matches) != 1:
        raise typer.BadParameter(
            f"{doc_id!r} matches {len(matches)} documents", param_hint="DOC_ID"
        )
    if fmt.lower() not in FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not jpeg, png or webp", param_hint="--format")
    if color not in COLOR_MODES:
        raise typer.BadParameter(f"{color!r} is not auto, rgb or gray", param_hint="--color")
    written = write_pages(
        opened.pdf_path(matches[0]),
        parse_pages(pages),
        out,
        dpi=dpi,
        fmt=fmt,
        quality=quality,
        stem=matches[0][:16],
        color=cast("ColorMode", color),  # checked against COLOR_MODES above
    )
    for path in written:
        console.print(f"wrote {path}")


def parse_pages(text: str) -> list[int]:
    """Pages and ranges separated by commas ("1,4,9-11"), in the order written."""
    numbers: list[int] = []
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        try:
            numbers.extend(PageRange.parse(part).pages)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--pages") from None
    return numbers


@app.command("hash")
def hash_command(
    folder: Path = typer.Argument(
        ..., help="Folder of benchmark documents (searched recursively)."
    ),
    out: Path = typer.Option(Path("exclude-hashes.txt"), help="Hash file to write."),
) -> None:
    """Write the SHA-256 of every PDF under FOLDER, for `ingest --exclude-hashes`."""
    from docpool.hashes import write_hash_file
    from docpool.identity import has_pdf_magic, sha256_file
    from docpool.sources import expand_sources

    if out.is_dir():
        raise typer.BadParameter(f"{out} is a folder, not a file to write", param_hint="--out")
    entries = [
        (sha256_file(source.path), str(source.path))
        for source in expand_sources([folder])
        if has_pdf_magic(source.path)
    ]
    count = write_hash_file(out, entries)
    console.print(f"wrote {count} hashes to {out}")


@app.command("make-corpus")
def make_corpus_command(
    out: Path = typer.Argument(..., help="Folder for the PDFs and ground_truth.json."),
    n_docs: int = typer.Option(8, help="Number of documents."),
    seed: int = typer.Option(0, help="Random seed (same seed, same bytes)."),
    min_pages: int = typer.Option(20, help="Fewest pages per document."),
    max_pages: int = typer.Option(60, help="Most pages per document."),
    langs: str = typer.Option("en,fr,de", help="Languages; every fourth document is non-English."),
) -> None:
    """Write realistic test PDFs with exact ground truth (sections, headers, facts, tables)."""
    from docpool.testing import make_corpus

    try:
        truth = make_corpus(
            out,
            n_docs=n_docs,
            seed=seed,
            pages=(min_pages, max_pages),
            langs=tuple(x.strip() for x in langs.split(",") if x.strip()),
        )
    except ValueError as error:  # its message names the bad option value
        raise InputError(str(error)) from error
    summary = {
        "documents": len(truth.documents),
        "pages": sum(d.num_pages for d in truth.documents),
        "facts": sum(len(d.facts) for d in truth.documents),
        "tables": sum(len(d.tables) for d in truth.documents),
    }
    console.print(f"wrote {out} {json.dumps(summary)}")


if __name__ == "__main__":
    app()
