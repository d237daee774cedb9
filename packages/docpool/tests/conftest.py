from __future__ import annotations

from pathlib import Path

import pytest

from docpool import IngestReport, Pool, ingest
from docpool.testing import CorpusTruth, make_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CorpusTruth]:
    """Eight documents of 20-30 pages: six English, one French, one German, two without an
    outline (indices 2 and 7)."""
    folder = tmp_path_factory.mktemp("corpus")
    return folder, make_corpus(folder, n_docs=8, seed=3, pages=(20, 30))


@pytest.fixture(scope="session")
def ingested(
    corpus: tuple[Path, CorpusTruth], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Pool, IngestReport]:
    folder, _ = corpus
    out = tmp_path_factory.mktemp("pool") / "pool"
    report = ingest([folder], out, workers=2, timeout=120)
    return Pool(out), report
