"""The fast path never loads PyMuPDF's layout model (pymupdf 2.x imports it with pymupdf):
neither in the parent nor in a worker. Checked in a fresh interpreter, as the test session
itself may have loaded the model for other tests."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from docpool.testing import CorpusTruth

SCRIPT = """
import json, sys
from docpool import Pool, ingest
from docpool.parse import ParseOptions, probe_document
from mmprolong_runtime.executor import LocalExecutor

def worker_check(path):
    probe_document(path, ParseOptions(min_pages=1))
    return "pymupdf.layout" in sys.modules

pdf, out = sys.argv[1], sys.argv[2]
report = ingest([pdf], out, workers=1)
(outcome,) = LocalExecutor(1).run(worker_check, [("doc", (pdf,))])
print(json.dumps({
    "added": report.added,
    "parent": "pymupdf.layout" in sys.modules,
    "worker": outcome.value,
}))
"""

MODEL_SCRIPT = """
import sys
import pymupdf
from docpool.layout_model import ensure_layout_model
ensure_layout_model("rf")
print("pymupdf.layout" in sys.modules, pymupdf._get_layout is not None)
"""


def test_fast_ingest_never_loads_the_layout_model(
    corpus: tuple[Path, CorpusTruth], tmp_path: Path
) -> None:
    folder, truth = corpus
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder / truth.documents[0].file), str(tmp_path / "p")],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {"added": 1, "parent": False, "worker": False}


def test_model_layout_still_loads_it() -> None:
    if importlib.util.find_spec("pymupdf.layout") is None:  # finds it without loading it
        pytest.skip("pymupdf-layout is not installed")
    run = subprocess.run(
        [sys.executable, "-c", MODEL_SCRIPT], capture_output=True, text=True, check=True
    )
    assert run.stdout.split() == ["True", "True"]
