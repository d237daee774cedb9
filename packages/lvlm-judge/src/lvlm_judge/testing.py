"""Test helpers for lvlm-judge and the packages that use it (tests, benchmarks, demos).

- ChatServer: a real OpenAI-compatible chat server on 127.0.0.1 answering scripted replies; it
  serves POST /v1/chat/completions, counts requests, and can answer 429s, 500s or slow replies.
- make_doc_benchmark: a small MMLongBench-layout data tree with generated page images.
- make_document / InMemoryPool: pool documents without PDFs, with docpool's get/render.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from mmprolong_schemas import Document, Page, pixels_at_dpi


@dataclass
class Scripted:
    """One scripted answer: an HTTP status, a reply text (for 200), and a delay before it."""

    status: int = 200
    text: str = ""
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def completion(text: str, prompt_tokens: int = 11, completion_tokens: int = 7) -> dict[str, Any]:
    return {
        "id": "cmpl-test",
        "object": "chat.completion",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text},
             "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }  # fmt: skip


class ChatServer:
    """Scripted replies are used first, in order; then ``responder(body)`` answers."""

    def __init__(self) -> None:
        self.script: list[Scripted] = []
        self.requests: list[dict[str, Any]] = []
        self.responder: Callable[[dict[str, Any]], str] = lambda body: "ok"
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    server.requests.append(
                        {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                    )
                    step = server.script.pop(0) if server.script else None
                if step is None:
                    step = Scripted(text=server.responder(body))
                if step.delay_s:
                    time.sleep(step.delay_s)
                payload = (
                    json.dumps(completion(step.text))
                    if step.status == 200
                    else json.dumps({"error": {"message": f"scripted {step.status}"}})
                ).encode()
                try:
                    self.send_response(step.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in step.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> ChatServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def make_document(
    name: str, num_pages: int, width_pt: float = 612.0, height_pt: float = 792.0
) -> Document:
    """A Document record with blank pages of the given size; doc_id is the sha256 of name."""

    doc_id = hashlib.sha256(name.encode()).hexdigest()
    pages = [Page(number=n, width=width_pt, height=height_pt) for n in range(1, num_pages + 1)]
    return Document(
        doc_id=doc_id, source_path=f"{name}.pdf", file_size=1, num_pages=num_pages, pages=pages
    )


class InMemoryPool:
    """The part of a docpool pool lvlm-judge uses, over Documents held in memory; pages render
    as white images of the right pixel size with the document and page written on them."""

    def __init__(self, documents: list[Document]):
        self.documents = {document.doc_id: document for document in documents}

    def get(self, doc_id: str) -> Document:
        if doc_id not in self.documents:
            raise KeyError(f"document {doc_id[:12]} is not in the pool")
        return self.documents[doc_id]

    def render(self, doc_id: str, pages: list[int], dpi: float = 144) -> list[Image.Image]:
        document = self.get(doc_id)
        images = []
        for number in pages:
            page = document.page(number)
            size = (pixels_at_dpi(page.width, dpi), pixels_at_dpi(page.height, dpi))
            image = Image.new("RGB", size, "white")
            ImageDraw.Draw(image).text((10, 10), f"{doc_id[:8]} p{number}", fill="black")
            images.append(image)
        return images


DOC_QUESTIONS = [
    ("What is the title word on page 1?", "apple", "String"),
    ("How many rows does the table have?", "12", "Integer"),
    ("What share grew?", "0.25", "Float"),
    ("Which colours appear?", '["red", "blue"]', "List"),
    ("Who signed the letter?", "Not answerable", "None"),
]


def make_doc_benchmark(
    root: str | Path,
    *,
    datasets: tuple[str, ...] = ("mmlongdoc", "longdocurl", "slidevqa"),
    lengths: tuple[int, ...] = (8,),
    docs: int = 2,
    pages: int = 3,
    image_size: tuple[int, int] = (224, 280),
) -> Path:
    """A small MMLongBench-layout tree: documentQA/<dataset>_K<n>.jsonl and page images under
    images/<doc>/page<n>.png, five questions (one per answer format) per document."""
    root = Path(root)
    (root / "documentQA").mkdir(parents=True, exist_ok=True)
    for dataset in datasets:
        for doc in range(docs):
            folder = root / "images" / f"{dataset}-doc{doc}"
            folder.mkdir(parents=True, exist_ok=True)
            for page in range(1, pages + 1):
                image = Image.new("RGB", image_size, "white")
                ImageDraw.Draw(image).text((8, 8), f"{dataset} {doc} p{page}", fill="black")
                image.save(folder / f"page{page}.png")
        for length in lengths:
            records = []
            for doc in range(docs):
                for number, (question, answer, answer_format) in enumerate(DOC_QUESTIONS):
                    records.append({
                        "id": f"{doc}-{number}",
                        "doc_name": f"{dataset}-doc{doc}",
                        "question": question,
                        "answer": answer,
                        "answer_format": answer_format,
                        "page_list": [
                            f"images/{dataset}-doc{doc}/page{p}.png" for p in range(1, pages + 1)
                        ],
                        "ans_page_list": [1],
                        "answer_sources": ["Pure-text (Plain-text)"],
                        "length": length * 1024,
                    })  # fmt: skip
            path = root / "documentQA" / f"{dataset}_K{length}.jsonl"
            path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return root
