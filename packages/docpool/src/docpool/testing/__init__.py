"""Test data for docpool and the stages after it: realistic multi-page PDFs written together
with the exact ground truth of what was placed on which page.

from docpool.testing import make_corpus, load_truth
truth = make_corpus(Path("corpus"), n_docs=8, seed=0, pages=(32, 50))
"""

from docpool.testing.reports import (
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
    make_corpus,
    make_mixed_script_pdf,
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
