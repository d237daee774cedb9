"""Test data for docpool and the stages after it: realistic multi-page PDFs written together
with the exact ground truth of what was placed on which page.

from docpool.testing import make_corpus, load_truth
truth = make_corpus(Path("corpus"), n_docs=8, seed=0, pages=(32, 50))

Modules: ``reports`` (make_corpus and the composer that lays a report out), ``planner`` (what
each document will be), ``vocabulary`` (what the reports say), ``pdf_writer`` (page geometry
and the content-stream writer), ``truth`` (the ground-truth records), ``mixed_script``
(CJK manuals that open in English).
"""

from docpool.testing.mixed_script import make_mixed_script_pdf
from docpool.testing.reports import make_corpus
from docpool.testing.truth import (
    GROUND_TRUTH_FILE,
    CaptionTruth,
    CorpusTruth,
    DocTruth,
    Fact,
    MixedScriptTruth,
    ParagraphTruth,
    PictureTruth,
    SectionTruth,
    TableTruth,
    load_truth,
)

__all__ = [
    "GROUND_TRUTH_FILE",
    "CaptionTruth",
    "CorpusTruth",
    "DocTruth",
    "Fact",
    "MixedScriptTruth",
    "ParagraphTruth",
    "PictureTruth",
    "SectionTruth",
    "TableTruth",
    "load_truth",
    "make_corpus",
    "make_mixed_script_pdf",
]
