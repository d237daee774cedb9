from __future__ import annotations

import io
import json
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from mmprolong_schemas import ImagePart, Task, TextPart
from qasynth.short import load_short_samples, short_source


def _png(size=(56, 56)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


def test_json_records_become_samples(tmp_path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(_png())
    records = [
        {
            "id": "1",
            "image": "imgs/a.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat colour?"},
                {"from": "gpt", "value": "Red."},
                {"from": "human", "value": "Sure?"},
                {"from": "gpt", "value": "Yes."},
            ],
        },
        {
            "id": "2",
            "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
        },
        {
            "id": "3",
            "image": "../etc/passwd",
            "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}],
        },
        {
            "id": "4",
            "image": "imgs/missing.png",
            "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "x"}],
        },
        {"id": "5", "conversations": [{"from": "human", "value": "no answer"}]},
    ]
    (tmp_path / "data.json").write_text(json.dumps(records))
    skipped: Counter[str] = Counter()
    samples = list(load_short_samples(tmp_path / "data.json", tmp_path, skipped=skipped))
    assert len(samples) == 2 and sum(skipped.values()) == 3
    first = samples[0]
    assert first.task is Task.SHORT and first.doc_id is None and first.target == "Yes."
    assert [m.role for m in first.messages] == ["user", "assistant", "user"]
    assert isinstance(first.messages[0].content[0], ImagePart)
    assert first.messages[0].content[0].path == "imgs/a.png"
    assert isinstance(first.messages[0].content[1], TextPart)
    # 56x56 -> 2x2 = 4 image tokens + 2 wrappers, plus text.
    assert first.est_tokens > 6


def test_parquet_images_are_extracted_once(tmp_path) -> None:
    conversations = [
        {"from": "human", "value": "<image>\nDescribe."},
        {"from": "gpt", "value": "A square."},
    ]
    table = pa.table(
        {
            "id": ["a", "b"],
            "image": [{"bytes": _png(), "path": "x.png"}, {"bytes": _png(), "path": "y.png"}],
            "conversations": [conversations, conversations],
        }
    )
    pq.write_table(table, tmp_path / "data.parquet")
    samples = list(load_short_samples(tmp_path / "data.parquet", tmp_path / "images"))
    assert len(samples) == 2
    files = list((tmp_path / "images").iterdir())
    assert len(files) == 1 and files[0].suffix == ".png"
    assert samples[0].messages[0].content[0].path == files[0].name


def test_files_of_one_name_share_neither_ids_nor_image_roots(tmp_path) -> None:
    record = {
        "id": "1",
        "image": "a.png",
        "conversations": [{"from": "human", "value": "<image>?"}, {"from": "gpt", "value": "Red."}],
    }
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.png").write_bytes(_png())
        (tmp_path / folder / "train.json").write_text(json.dumps([record]))
    first, second = (
        list(load_short_samples(tmp_path / f / "train.json", tmp_path / f))[0] for f in ("a", "b")
    )
    assert first.sample_id != second.sample_id
    assert first.source != second.source and first.source.startswith("llava-onevision:train.json")
    assert short_source(tmp_path / "a" / "train.json") == first.source
