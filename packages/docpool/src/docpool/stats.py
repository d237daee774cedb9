"""Pool statistics: the paper's pool table (scale, page range, languages, domains), estimated
vision tokens, as a rich table, a JSON file and two PNG histograms."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.table import Table

from docpool.pool import Pool
from mmprolong_schemas import VisionTokenSpec
from mmprolong_schemas.io import atomic_path
from mmprolong_schemas.units import K, M

LANGUAGE_NAMES = {
    "en": "English",
    "zh-cn": "Chinese",
    "zh": "Chinese",
    "fr": "French",
    "de": "German",
    "es": "Spanish",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "ru": "Russian",
    "pt": "Portuguese",
    "nl": "Dutch",
}


@dataclass
class PoolStats:
    documents: int = 0
    page_range: tuple[int, int] | None = None
    average_pages: float = 0.0
    total_pages: int = 0
    languages: dict[str, int] = field(default_factory=dict)
    domains: dict[str, int] = field(default_factory=dict)
    total_tokens: int = 0
    average_tokens: float = 0.0
    token_spec: dict[str, float] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)
    # Pages whose text is not the PDF's own (flag -> pages): "ocr" (read by Tesseract),
    # "no-text-layer" (no text, no OCR), "parse-error" (kept empty); and documents with any.
    flagged_pages: dict[str, int] = field(default_factory=dict)
    flagged_documents: dict[str, int] = field(default_factory=dict)
    page_counts: list[int] = field(default_factory=list)
    token_counts: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """Everything but the per-document lists."""
        data = asdict(self)
        data.pop("page_counts")
        data.pop("token_counts")
        return data


def compute_stats(pool: Pool, spec: VisionTokenSpec | None = None) -> PoolStats:
    spec = spec or VisionTokenSpec()
    stats = PoolStats(token_spec=spec.model_dump())
    languages: Counter[str] = Counter()
    domains: Counter[str] = Counter()
    flagged_pages: Counter[str] = Counter()
    flagged_documents: Counter[str] = Counter()
    for doc in pool.documents():
        flags = Counter(flag.split(":")[0] for page in doc.pages for flag in page.flags)
        flagged_pages.update(flags)
        flagged_documents.update(flags.keys())
        stats.page_counts.append(doc.num_pages)
        stats.token_counts.append(doc.tokens(spec))
        languages[doc.lang or "unknown"] += 1
        domains[doc.domain or "unknown"] += 1
    stats.documents = len(stats.page_counts)
    if stats.documents:
        stats.page_range = (min(stats.page_counts), max(stats.page_counts))
        stats.total_pages = sum(stats.page_counts)
        stats.average_pages = stats.total_pages / stats.documents
        stats.total_tokens = sum(stats.token_counts)
        stats.average_tokens = stats.total_tokens / stats.documents
    stats.languages = dict(languages.most_common())
    stats.domains = dict(domains.most_common())
    stats.rejects = dict(Counter(r.reason for r in pool.rejects()).most_common())
    stats.flagged_pages = dict(flagged_pages.most_common())
    stats.flagged_documents = dict(flagged_documents.most_common())
    return stats


def _tokens(count: float) -> str:
    """Exact count with a binary-prefixed approximation (K = 1024, M = 1024^2)."""
    if count >= M:
        return f"{count:,.0f} ({count / M:.2f}M)"
    if count >= K:
        return f"{count:,.0f} ({count / K:.1f}K)"
    return f"{count:,.0f}"


def _share(count: int, total: int) -> str:
    return f"{count:,} ({100 * count / total:.2f}%)" if total else str(count)


def stats_table(stats: PoolStats) -> Table:
    table = Table(title="Document pool")
    for column in ("Category", "Statistic", "Value"):
        table.add_column(column)
    low, high = stats.page_range or (0, 0)
    table.add_row("Corpus scale", "Number of documents", f"{stats.documents:,}")
    table.add_row("", "Page-count range", f"[{low}, {high}]")
    table.add_row("", "Average pages", f"{stats.average_pages:.2f}")
    table.add_row("", "Total pages", f"{stats.total_pages:,}")
    table.add_row("Tokens", "Estimated vision tokens", _tokens(stats.total_tokens))
    table.add_row("", "Average per document", _tokens(stats.average_tokens))
    first = True
    for code, count in stats.languages.items():
        name = LANGUAGE_NAMES.get(code, code)
        table.add_row("Lang." if first else "", f"{name} documents", _share(count, stats.documents))
        first = False
    first = True
    for domain, count in stats.domains.items():
        table.add_row("Domain" if first else "", domain, _share(count, stats.documents))
        first = False
    first = True
    for flag, count in stats.flagged_pages.items():
        documents = stats.flagged_documents.get(flag, 0)
        table.add_row(
            "Flagged pages" if first else "", flag, f"{count:,} (in {documents:,} documents)"
        )
        first = False
    first = True
    for reason, count in stats.rejects.items():
        table.add_row("Rejected" if first else "", reason, f"{count:,}")
        first = False
    return table


def write_stats(stats: PoolStats, out_dir: Path) -> list[Path]:
    """``stats.json``, ``pages_hist.png`` and ``tokens_hist.png`` in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    json_path = out_dir / "stats.json"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(stats.summary(), indent=1), encoding="utf-8")
    written.append(json_path)
    for name, values, label in (
        ("pages_hist.png", stats.page_counts, "pages per document"),
        ("tokens_hist.png", stats.token_counts, "estimated vision tokens per document"),
    ):
        figure, axes = plt.subplots(figsize=(6, 3.5))
        axes.hist(values, bins=min(50, max(5, len(set(values)))), color="#4c72b0")
        axes.set_xlabel(label)
        axes.set_ylabel("documents")
        axes.set_title(f"{label} (n={len(values)})")
        figure.tight_layout()
        path = out_dir / name
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
        plt.close(figure)
        written.append(path)
    return written
