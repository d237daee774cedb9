"""A fake OpenAI-compatible chat server for tests, benchmarks and demos (stdlib only).

``ChatServer`` is a real HTTP server on 127.0.0.1 answering POST /v1/chat/completions (the
path of each request is recorded, not checked), so the chat client, the teachers and the
judges that talk to it are tested over a real socket.
Scripted replies are used first, in order; then the reply function answers. Either can be a
plain text (a 200 reply) or a ``Reply`` with a status, headers, a delay and a finish reason,
so tests can serve 429s, 5xxs, refusals, slow and cut-off replies::

    with ChatServer(lambda body, seen: "42", script=[Reply(429)]) as server:
        ...  # point a client at server.url; then read server.count, .requests, .answered
"""

from __future__ import annotations

import hashlib
import json
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One answer: for 200 ``text`` is the message content; for any other status it is the
    error message. ``delay_s`` is waited before answering (a client may time out meanwhile)."""

    status: int = 200
    text: str = ""
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    body: dict[str, Any]
    auth: str | None  # the Authorization header, to check a key was sent


ReplyFunction = Callable[[dict[str, Any], int], "str | Reply"]
"""``reply(body, seen)``: ``seen`` is how many times an identical body came before."""


def completion(text: str, finish_reason: str = "stop") -> dict[str, Any]:
    """A chat-completions reply as OpenAI's API reference defines the chat completion object
    (https://platform.openai.com/docs/api-reference/chat/object): choices[].message.content,
    choices[].finish_reason, usage.prompt_tokens / completion_tokens. The token counts are
    fixed figures, not counts of anything."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "test",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text},
             "finish_reason": finish_reason}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }  # fmt: skip


def body_key(body: dict[str, Any]) -> str:
    """Identical request bodies share a key, whatever their key order."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _client_left(connection: socket.socket) -> bool:
    """True when the client closed the connection before the reply (it timed out)."""
    try:
        readable, _, _ = select.select([connection], [], [], 0)
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class ChatServer:
    """Counts every request (``requests``, ``count``), how often each body was ``seen`` and how
    often it was ``answered`` with a 200 while the client still waited, keyed by ``body_key``."""

    def __init__(self, reply: ReplyFunction | None = None, script: list[Reply] | None = None):
        self.reply: ReplyFunction = reply or (lambda body, seen: "ok")
        self.script: list[Reply] = list(script or [])
        self.requests: list[RecordedRequest] = []
        self.seen: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> ChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _next_reply(self, path: str, body: dict[str, Any], auth: str | None) -> tuple[str, Reply]:
        key = body_key(body)
        with self._lock:
            self.requests.append(RecordedRequest(path, body, auth))
            seen = self.seen[key]
            self.seen[key] += 1
            scripted = self.script.pop(0) if self.script else None
        # The reply function runs outside the lock: tests measure how many calls overlap.
        answer = scripted if scripted is not None else self.reply(body, seen)
        return key, answer if isinstance(answer, Reply) else Reply(text=answer)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                auth = self.headers.get("Authorization")
                key, reply = server._next_reply(self.path, body, auth)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                if reply.status == 200:
                    payload: dict[str, Any] = completion(reply.text, reply.finish_reason)
                else:
                    payload = {"error": {"message": reply.text or f"scripted {reply.status}"}}
                data = json.dumps(payload).encode()
                if _client_left(self.connection):
                    return
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if reply.status == 200:
                    with server._lock:
                        server.answered[key] += 1

        return Handler
