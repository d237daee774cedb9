"""Offline language detection, deterministic: langdetect with a fixed seed."""

from __future__ import annotations

from langdetect import DetectorFactory, LangDetectException, detect

MIN_LETTERS = 40
MAX_CHARS = 4000


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text``, or None when there is too little text to tell."""
    sample = text[:MAX_CHARS]
    if sum(ch.isalpha() for ch in sample) < MIN_LETTERS:
        return None
    DetectorFactory.seed = 0  # langdetect samples randomly; a fixed seed makes it repeatable
    try:
        code = detect(sample)
    except LangDetectException:
        return None
    return code.split("-")[0]
