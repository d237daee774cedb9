"""What produced an output: versions, git SHA, a hash of the config, timings. Never secrets."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import re
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mmprolong_schemas.base import Record

REDACTED = "<redacted>"

_SECRET_KEY = re.compile(
    r"(^|[_\-.])(api[_\-]?key|secret|password|passwd|authorization|auth[_\-]?token|"
    r"access[_\-]?token|bearer|credentials?|hf[_\-]?token|private[_\-]?key)$|^token$",
    re.IGNORECASE,
)
_SECRET_VALUE = re.compile(r"^(sk-|hf_|ghp_|gho_|xox[bp]-|Bearer\s)\S{8,}")

TRACKED_DISTRIBUTIONS = (
    "mmprolong-schemas",
    "mmprolong-runtime",
    "docpool",
    "qasynth",
    "longctx-rope",
    "seqpar-train",
    "lvlm-judge",
    "mmprolong",
    "pydantic",
    "pyarrow",
    "pymupdf",
    "torch",
    "transformers",
    "accelerate",
    "vllm",
    "flash-attn",
    "ray",
)


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-looking keys and token-looking strings replaced."""
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and _SECRET_KEY.search(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str) and _SECRET_VALUE.match(value):
        return REDACTED
    return value


def redact_command(args: list[str]) -> list[str]:
    """Command-line words with the values of secret-looking flags replaced."""
    clean: list[str] = []
    hide_next = False
    for arg in args:
        flag, equals, _ = arg.partition("=")
        name = flag.lstrip("-")
        if hide_next:
            clean.append(REDACTED)
        elif arg.startswith("-") and equals and _SECRET_KEY.search(name):
            clean.append(f"{flag}={REDACTED}")
        else:
            clean.append(str(redact(arg)))
        hide_next = arg.startswith("-") and not equals and bool(_SECRET_KEY.search(name))
    return clean


def config_hash(config: Any) -> str:
    """SHA-256 of the canonical JSON of a (redacted) config: equal configs, equal hashes."""
    canonical = json.dumps(redact(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def installed_versions(names: tuple[str, ...] = TRACKED_DISTRIBUTIONS) -> dict[str, str]:
    return dict(_versions(names))


@functools.lru_cache(maxsize=8)
def _versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    # Once per process: reading every distribution's METADATA cost each run about 20 ms.
    versions = []
    for name in names:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(versions)


def git_sha(directory: Path | None = None) -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", sha) else None


def _now() -> datetime:
    return datetime.now(UTC)


class RunManifest(Record):
    tool: str
    command: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict, description="Redacted config.")
    config_hash: str
    package_versions: dict[str, str] = Field(default_factory=dict)
    python: str = Field(default_factory=platform.python_version)
    git_sha: str | None = None
    started_at: datetime = Field(default_factory=_now)
    finished_at: datetime | None = None
    status: Literal["running", "done", "failed"] = "running"
    counts: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def start(
        cls, tool: str, config: dict[str, Any], command: list[str] | None = None
    ) -> RunManifest:
        clean = redact(config)
        return cls(
            tool=tool,
            command=redact_command(command or []),
            config=clean,
            config_hash=config_hash(clean),
            package_versions=installed_versions(),
            git_sha=git_sha(),
        )

    def finish(self, status: Literal["done", "failed"] = "done", **counts: int) -> RunManifest:
        return self.model_copy(
            update={"finished_at": _now(), "status": status, "counts": {**self.counts, **counts}}
        )
