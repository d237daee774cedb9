"""Short-context samples from LLaVA-OneVision-style data, for the short-data share of a mix.

Accepted inputs: a JSON (or JSONL) list of records ``{"id", "image": path | [paths],
"conversations": [{"from": "human"|"gpt", "value": ...}]}`` with image paths relative to an
image folder, or a Parquet file with the same columns where ``image`` holds ``{"bytes",
"path"}`` (as the Hugging Face release stores it). Parquet images are written once, named by
content hash, into an image folder. Each ``<image>`` placeholder becomes an ImagePart at its
place (images without placeholders go first); the last ``gpt`` turn is the target and earlier
turns stay in the messages. Paths are treated as untrusted: absolute paths and ``..`` are
refused. Bad records are counted by reason and skipped.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.parquet as pq
from PIL import Image

from mmprolong_runtime.errors import InputError
from mmprolong_schemas import (
    ImagePart,
    Message,
    Sample,
    Task,
    TextPart,
    VisionTokenSpec,
    image_tokens,
)
from mmprolong_schemas.io import atomic_path
from mmprolong_schemas.sample import Part
from qasynth.token_estimates import messages_text_tokens

IMAGE_TOKEN = "<image>"
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class ShortDataError(InputError):
    pass


def _safe_relative(path: str) -> str:
    pure = PurePosixPath(path.replace("\\", "/"))
    if not path or pure.is_absolute() or ".." in pure.parts:
        raise ShortDataError(f"image path {path!r} is not a plain relative path")
    return str(pure)


def _image_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise ShortDataError(f"image field {str(value)[:60]!r} is neither a path nor a list of paths")


def record_to_sample(
    record: dict[str, Any], image_root: Path, spec: VisionTokenSpec, source: str
) -> Sample:
    """One LLaVA-style record as a Sample; images are read (header only) for their size."""
    images = [_safe_relative(p) for p in _image_list(record.get("image"))]
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ShortDataError("no conversations")
    roles = [_ROLES.get(str(t.get("from"))) if isinstance(t, dict) else None for t in turns]
    if None in roles or roles[-1] != "assistant":
        raise ShortDataError("conversations must alternate human/gpt turns and end with gpt")
    pending = list(images)
    messages: list[Message] = []
    for turn, role in zip(turns[:-1], roles[:-1], strict=True):
        text = str(turn.get("value", ""))
        content: list[Part] = []
        if role == "user" and pending and messages == [] and IMAGE_TOKEN not in text:
            content += [ImagePart(path=p) for p in pending]
            pending = []
        pieces = text.split(IMAGE_TOKEN) if role == "user" else [text]
        for index, piece in enumerate(pieces):
            if index:
                if not pending:
                    raise ShortDataError("more <image> placeholders than images")
                content.append(ImagePart(path=pending.pop(0)))
            if piece.strip():
                content.append(TextPart(text=piece.strip()))
        if content:
            messages.append(Message(role=role, content=content))
    if pending:
        raise ShortDataError(f"{len(pending)} images have no <image> placeholder")
    target = str(turns[-1].get("value", "")).strip()
    if not messages or not target:
        raise ShortDataError("empty prompt or answer")
    tokens = messages_text_tokens(messages, target)
    for path in images:
        try:
            with Image.open(image_root / path) as image:
                width, height = image.size
        except OSError as error:
            raise ShortDataError(f"image {path!r} cannot be read ({error})") from None
        tokens += image_tokens(height, width, spec) + 2
    digest = hashlib.sha256(f"{source}|{record.get('id')}|{target}".encode()).hexdigest()[:24]
    return Sample(
        sample_id=digest,
        task=Task.SHORT,
        doc_id=None,
        pages=[],
        messages=messages,
        target=target,
        est_tokens=tokens,
        source=source,
    )


def _json_records(path: Path) -> Iterator[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        for line in text.splitlines():
            if line.strip():
                yield json.loads(line)
        return
    data = json.loads(text)
    if not isinstance(data, list):
        raise ShortDataError(f"{path} does not hold a JSON list of records")
    yield from data


def _parquet_records(path: Path, image_dir: Path) -> Iterator[dict[str, Any]]:
    table = pq.read_table(path)
    for row in table.to_pylist():
        image = row.get("image")
        if isinstance(image, dict) and image.get("bytes"):
            data = image["bytes"]
            try:
                with Image.open(io.BytesIO(data)) as decoded:
                    extension = (decoded.format or "png").lower()
            except OSError:
                row["image"] = None
                row["_bad"] = "image bytes are not a readable image"
                yield row
                continue
            name = f"{hashlib.sha256(data).hexdigest()[:32]}.{extension}"
            target = image_dir / name
            if not target.exists():
                with atomic_path(target) as tmp:
                    tmp.write_bytes(data)
            row["image"] = name
        elif isinstance(image, dict):
            row["image"] = image.get("path")
        if isinstance(row.get("conversations"), str):
            row["conversations"] = json.loads(row["conversations"])
        yield row


def short_source(path: str | Path) -> str:
    """The ``source`` of a file's samples: its name and a digest of its absolute path, so two
    files of one name (``a/train.json``, ``b/train.json``) share neither sample ids nor an
    image-root entry."""
    resolved = str(Path(path).resolve())
    return f"llava-onevision:{Path(path).name}#{hashlib.sha256(resolved.encode()).hexdigest()[:8]}"


def load_short_samples(
    path: str | Path,
    image_root: str | Path,
    spec: VisionTokenSpec | None = None,
    skipped: Counter[str] | None = None,
) -> Iterator[Sample]:
    """Samples from a LLaVA-style JSON/JSONL or Parquet file. For Parquet, images are written
    into ``image_root``; for JSON they are read from it. ImagePart paths are relative to it."""
    source_path, root = Path(path), Path(image_root)
    spec = spec or VisionTokenSpec()
    skipped = skipped if skipped is not None else Counter()
    if source_path.suffix == ".parquet":
        root.mkdir(parents=True, exist_ok=True)
        records = _parquet_records(source_path, root)
    else:
        records = _json_records(source_path)
    source = short_source(source_path)
    for record in records:
        if not isinstance(record, dict):
            skipped["not-a-record"] += 1
            continue
        if record.get("_bad"):
            skipped[str(record["_bad"])] += 1
            continue
        try:
            yield record_to_sample(record, root, spec, source)
        except ShortDataError as error:
            skipped[str(error).split(" (")[0][:80]] += 1
