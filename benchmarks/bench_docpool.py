"""docpool benchmarks: ingest speed, page materialisation, layout model, scaling, headings.

Measured on the generated corpus and, when Debian's r-doc-pdf is installed, on the real R
manuals under /usr/share/R/doc/manual (read in place, never copied into the repository).
Every baseline is measured in the same run, on the same pages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pymupdf
from benchlib import Result, best_of

from docpool import ingest, make_corpus, write_pages
from docpool.parse import ParseOptions, parse_page_range, probe_document

R_MANUALS = Path("/usr/share/R/doc/manual")
R_NAMES = ("R-FAQ.pdf", "R-admin.pdf", "R-data.pdf", "R-intro.pdf", "R-ints.pdf", "R-lang.pdf")


def _real_pdfs() -> list[Path]:
    return [R_MANUALS / name for name in R_NAMES if (R_MANUALS / name).is_file()]


def _bare_dict_seconds(files: list[Path]) -> tuple[float, int]:
    pages = sum(pymupdf.open(f).page_count for f in files)

    def run() -> None:
        for file in files:
            with pymupdf.open(file) as doc:
                for page in doc:
                    page.get_text("dict")

    return best_of(run, 2), pages


def _ingest_seconds(files: list[Path], work: Path, workers: int, **options: object) -> float:
    folder = work / f"src-{workers}-{time.monotonic_ns()}"
    folder.mkdir()
    for file in files:
        (folder / file.name).symlink_to(file)

    def run() -> None:
        out = work / f"pool-{time.monotonic_ns()}"
        report = ingest([folder], out, workers=workers, min_pages=5, **options)  # type: ignore[arg-type]
        assert report.added == len(files), report.as_dict()
        shutil.rmtree(out)

    return best_of(run, 2)


def _parser_seconds(files: list[Path]) -> float:
    """The fast parser alone, in this process: no workers, hashing or shards."""
    options = ParseOptions(min_pages=1, max_pages=10_000, chunk_pages=10_000)
    return best_of(lambda: [probe_document(str(file), options) for file in files], 2)


def _ingest_results(label: str, files: list[Path], work: Path) -> list[Result]:
    bare, pages = _bare_dict_seconds(files)
    one = _ingest_seconds(files, work, 1)
    parser = _parser_seconds(files)
    return [
        Result(
            name=f"fast parser alone, in-process ({label}, {pages} pages)",
            value=pages / parser,
            unit="pages/s",
            baseline=pages / bare,
            baseline_name="bare get_text('dict')",
            target="report",
            details={"parser_s": parser, "bare_s": bare},
        ),
        Result(
            name=f"fast ingest, 1 worker ({label}, {pages} pages)",
            value=pages / one,
            unit="pages/s",
            baseline=pages / bare,
            baseline_name="bare get_text('dict')",
            target=">= 0.7x",
            passed=bare / one >= 0.7,
            details={"pages": pages, "ingest_s": one, "bare_s": bare},
        ),
    ]


def _scaling(files: list[Path], work: Path) -> Result:
    pages = sum(pymupdf.open(f).page_count for f in files)
    one = _ingest_seconds(files, work, 1)
    two = _ingest_seconds(files, work, 2)
    return Result(
        name=f"fast ingest, 2 workers vs 1 ({pages} pages)",
        value=pages / two,
        unit="pages/s",
        baseline=pages / one,
        baseline_name="1 worker",
        target=">= 1.8x",
        passed=one / two >= 1.8,
        details={"one_s": one, "two_s": two},
    )


def _materialisation(file: Path, pages: list[int], work: Path) -> list[Result]:
    out = work / "render"
    out.mkdir(exist_ok=True)

    def ours() -> None:
        write_pages(file, pages, out, dpi=144, fmt="jpeg", quality=90)

    def pixmap_only() -> None:
        with pymupdf.open(file) as doc:
            for number in pages:
                doc[number - 1].get_pixmap(dpi=144)

    seconds = best_of(ours, 2)
    bare = best_of(pixmap_only, 2)
    results = [
        Result(
            name=f"materialise 144 DPI + JPEG q90 ({len(pages)} pages)",
            value=len(pages) / seconds,
            unit="pages/s",
            baseline=len(pages) / bare,
            baseline_name="bare get_pixmap(dpi=144), no encoding",
            target="report",
            details={"ours_s": seconds, "pixmap_s": bare},
        )
    ]
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        results.append(
            Result(
                name="materialise vs pdftoppm",
                value=len(pages) / seconds,
                unit="pages/s",
                target=">= 3x",
                details={"skipped": "pdftoppm (poppler-utils) is not installed"},
            )
        )
        return results
    first, last = min(pages), max(pages)
    assert pages == list(range(first, last + 1))

    def poppler() -> None:
        subprocess.run(
            [
                pdftoppm,
                "-r",
                "144",
                "-jpeg",
                "-jpegopt",
                "quality=90",
                "-f",
                str(first),
                "-l",
                str(last),
                str(file),
                str(out / "poppler"),
            ],
            check=True,
        )

    theirs = best_of(poppler, 2)
    results.append(
        Result(
            name=f"materialise vs pdftoppm -r 144 -jpeg ({len(pages)} pages)",
            value=len(pages) / seconds,
            unit="pages/s",
            baseline=len(pages) / theirs,
            baseline_name="pdftoppm",
            target=">= 3x",
            passed=theirs / seconds >= 3,
            details={"ours_s": seconds, "pdftoppm_s": theirs},
        )
    )
    return results


def _model_layout(file: Path, pages: tuple[int, int], features: str = "rf") -> Result:
    options = ParseOptions(layout="model", layout_features=features, min_pages=1)
    probe = probe_document(str(file), ParseOptions(min_pages=1, chunk_pages=1))
    parse_page_range(str(file), pages[0], pages[0], probe.profile, options)  # load the model
    count = pages[1] - pages[0] + 1
    seconds = best_of(
        lambda: parse_page_range(str(file), pages[0], pages[1], probe.profile, options), 1
    )
    return Result(
        name=f"model layout ({features} features), 1 core ({count} pages)",
        value=count / seconds,
        unit="pages/s",
        target=">= 3 pages/s",
        passed=count / seconds >= 3,
        details={"seconds": seconds},
    )


def _key(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def _headings(label: str, files: list[Path]) -> Result:
    """Headings found by the fast parser (outline ignored) against the outline's titles."""
    found = matched = outline_total = recalled = 0
    for file in files:
        with pymupdf.open(file) as doc:
            toc = doc.get_toc()
        if not toc:
            continue
        probe = probe_document(
            str(file), ParseOptions(min_pages=1, max_pages=10_000, chunk_pages=10_000)
        )
        assert probe.parsed is not None
        detected = {(h.page, _key(h.text)) for h in probe.parsed.headings}
        wanted = {(page, _key(title)) for _, title, page in toc if page >= 1}

        def hit(a: tuple[int, str], pool: set[tuple[int, str]]) -> bool:
            page, text = a
            return any(
                p == page and text and (t == text or t.endswith(text) or text.endswith(t))
                for p, t in pool
            )

        found += len(detected)
        matched += sum(hit(h, wanted) for h in detected)
        outline_total += len(wanted)
        recalled += sum(hit(w, detected) for w in wanted)
    precision = matched / found if found else 0.0
    recall = recalled / outline_total if outline_total else 0.0
    return Result(
        name=f"fast headings vs hidden outline ({label})",
        value=recall,
        unit="recall",
        target="recall >= 0.8; precision reported",
        passed=recall >= 0.8,
        details={
            "precision": round(precision, 3),
            "recall": round(recall, 3),
            "detected": found,
            "outline_entries": outline_total,
        },
    )


def run(work: Path) -> list[Result]:
    load_before = os.getloadavg()[0]
    corpus = work / "corpus"
    make_corpus(corpus, n_docs=12, seed=11, pages=(32, 50))
    generated = sorted(corpus.glob("*.pdf"))
    real = _real_pdfs()
    results = _ingest_results("generated", generated, work)
    if real:
        results += _ingest_results("R manuals", real, work)
    scaling = work / "scaling"
    make_corpus(scaling, n_docs=24, seed=12, pages=(32, 50))
    results.append(_scaling(sorted(scaling.glob("*.pdf")), work))
    with tempfile.TemporaryDirectory(dir=work) as render_work:
        results += _materialisation(generated[0], list(range(1, 31)), Path(render_work))
        if real:
            results += _materialisation(real[3], list(range(1, 31)), Path(render_work))
    results.append(_model_layout(generated[0], (2, 9)))
    results.append(_model_layout(generated[0], (2, 5), "imf+rf"))
    results.append(_headings("generated", generated))
    if real:
        results.append(_headings("R manuals", real))
    # Other processes on the machine distort every ratio above: record how busy it was.
    for result in results:
        result.details["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return results
