"""VTCBench-Wild through lvlm-judge: the release's split files, the tiny Qwen2.5-VL answering,
containsAll scoring, resume, and the failures when something is missing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longctx_rope.tiny import save_tiny_checkpoint, tiny_image
from lvlm_judge.suite import vtc_wild
from lvlm_judge.vtcbench import VtcDataError, contains_all, load_vtc_split


def _release(root: Path) -> Path:
    """Split files as the Hugging Face release MLLM-CL/VTCBench holds them: one Parquet file
    per split named <split>-00000-of-00001.parquet (the Hub's layout for a pushed split), with
    the columns VTCBench's examples/run_wild.py reads (problem, answers, images, _context) and
    each image a datasets Image struct {bytes, path} (async_evaluate.py sends img["bytes"])."""
    data = root / "data"
    data.mkdir(parents=True)
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([
        ("problem", pa.string()), ("answers", pa.list_(pa.string())),
        ("images", pa.list_(image)), ("_context", pa.string()),
    ])  # fmt: skip
    for n, split in enumerate(("Retrieval", "Reasoning", "Memory")):
        rows = []
        for i in range(2):
            buffer = io.BytesIO()
            tiny_image(56, 84, seed=10 * n + i).save(buffer, format="JPEG")
            rows.append({
                "problem": f"What is the magic number {i}?", "answers": [str(1000 + i)],
                "images": [{"bytes": buffer.getvalue(), "path": None}], "_context": None,
            })  # fmt: skip
        pq.write_table(pa.Table.from_pylist(rows, schema), data / f"{split}-00000-of-00001.parquet")
    return root


@pytest.mark.slow
def test_vtc_wild_scores_retrieval_and_reasoning_and_resumes(tmp_path: Path) -> None:
    checkpoint = save_tiny_checkpoint("qwen2.5-vl", tmp_path / "ckpt")
    release = _release(tmp_path / "VTCBench")
    instructions = tmp_path / "instructions.json"
    instructions.write_text(json.dumps({"Retrieval": "Find it. ", "Reasoning": "Think. "}))
    evaluate = vtc_wild(checkpoint, release, instructions, max_new_tokens=4, device_map="cpu")
    scores, failures = evaluate(tmp_path / "out")
    assert set(failures) == {"Memory"}
    assert {s.task: s.paper_column for s in scores} == {
        "Retrieval": "VTC.Ret",
        "Reasoning": "VTC.Reas",
    }
    for score in scores:
        lines = (tmp_path / "out" / f"{score.task}.jsonl").read_text().splitlines()
        predictions = [json.loads(line)["prediction"] for line in lines]
        expected = [contains_all(p, [str(1000 + i)]) for i, p in enumerate(predictions)]
        assert score.n == 2 and score.score == pytest.approx(100 * sum(expected) / 2)
    again, _ = evaluate(tmp_path / "out")  # everything is predicted: nothing is generated again
    assert [s.score for s in again] == [s.score for s in scores]
    assert len((tmp_path / "out" / "Retrieval.jsonl").read_text().splitlines()) == 2


def test_vtc_wild_failures_name_what_is_missing(tmp_path: Path) -> None:
    scores, failures = vtc_wild("ckpt", tmp_path, None)(tmp_path / "out")
    assert scores == [] and "examples/run_wild.py" in failures["Retrieval"]
    instructions = tmp_path / "i.json"
    instructions.write_text(json.dumps({"Retrieval": "x", "Reasoning": "y"}))
    scores, failures = vtc_wild("ckpt", tmp_path / "absent", instructions)(tmp_path / "out")
    assert "hf download --repo-type dataset MLLM-CL/VTCBench" in failures["Reasoning"]
    bad = tmp_path / "bad" / "data"
    bad.mkdir(parents=True)
    pq.write_table(pa.table({"question": ["q"]}), bad / "Retrieval-00000-of-00001.parquet")
    with pytest.raises(VtcDataError, match="not VTCBench-Wild"):
        load_vtc_split(tmp_path / "bad", "Retrieval", tmp_path / "images")
