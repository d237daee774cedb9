"""Offline language detection, deterministic: langdetect with a fixed seed.

A document's language is the majority over pages sampled across all of it, not the language
of its first paragraphs: a Japanese manual whose first pages list English commands is
Japanese. Pages sampled across the document vote with their script: Chinese, Japanese and
Korean are told apart by their characters (kana, Han, hangul), cheaply and exactly; when most
pages are in other scripts, langdetect names the language of text drawn from all of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from langdetect import DetectorFactory, LangDetectException, detect

MIN_LETTERS = 40
MAX_CHARS = 4000
PAGE_VOTES = 9  # pages sampled, evenly over the document
PAGE_SAMPLE_CHARS = 100  # of each voting page: a sentence; 900 characters in all at most
# One CJK character carries about as much text as a short word: a page is CJK when its CJK
# characters, counted this many times, outnumber its other letters.
CJK_WEIGHT = 3
KANA_SHARE = 0.05  # Japanese writes particles and endings in kana; Chinese uses none


def script_counts(text: str) -> tuple[int, int, int, int]:
    """(kana, Han, hangul, other letters) characters in ``text``."""
    kana = han = hangul = other = 0
    for char in text:
        code = ord(char)
        if code < 0x2E80:
            if code >= 0x1100 and code <= 0x11FF:
                hangul += 1
            elif char.isalpha():
                other += 1
        elif 0x3040 <= code <= 0x30FF or 0x31F0 <= code <= 0x31FF or 0xFF66 <= code <= 0xFF9D:
            kana += 1
        elif 0xAC00 <= code <= 0xD7AF or 0x3130 <= code <= 0x318F:
            hangul += 1
        elif (
            0x4E00 <= code <= 0x9FFF
            or 0x3400 <= code <= 0x4DBF
            or 0xF900 <= code <= 0xFAFF
            or 0x20000 <= code <= 0x3FFFF
        ):
            han += 1
        elif char.isalpha():
            other += 1
    return kana, han, hangul, other


def is_cjk(char: str) -> bool:
    """Written without spaces between words: Han, kana, CJK punctuation, full-width forms
    (Korean, which spaces its words, is not)."""
    code = ord(char)
    return (
        0x3000 <= code <= 0x30FF
        or 0x31F0 <= code <= 0x31FF
        or 0x3400 <= code <= 0x4DBF
        or 0x4E00 <= code <= 0x9FFF
        or 0xF900 <= code <= 0xFAFF
        or 0xFF00 <= code <= 0xFFEF
        or 0x20000 <= code <= 0x3FFFF
    )


def _detect(sample: str) -> str | None:
    DetectorFactory.seed = 0  # langdetect samples randomly; a fixed seed makes it repeatable
    try:
        code = detect(sample)
    except LangDetectException:
        return None
    return code.split("-")[0]


def detect_language(text: str) -> str | None:
    """ISO 639-1 code of ``text``, or None when there is too little text to tell."""
    kana, han, hangul, other = script_counts(text)
    if kana + han + hangul + other < MIN_LETTERS:
        return None
    cjk = kana + han + hangul
    if cjk * CJK_WEIGHT > other:
        if hangul >= kana + han:
            return "ko"
        return "ja" if kana >= KANA_SHARE * (kana + han) else "zh"
    return _detect(text[:MAX_CHARS])


def _spread(count: int, votes: int) -> list[int]:
    """Up to ``votes`` indices spread evenly over ``range(count)``, middle of each stretch."""
    if count <= votes:
        return list(range(count))
    return sorted({int((i + 0.5) * count / votes) for i in range(votes)})


def _middle(text: str, size: int) -> str:
    """``size`` characters from the middle of ``text``, cut at spaces where there are any."""
    if len(text) <= size:
        return text
    start = (len(text) - size) // 2
    piece = text[start : start + size]
    head, space, tail = piece.partition(" ")
    return tail if space and len(tail) >= size // 2 else piece


def _page_vote(sample: str) -> str | None:
    """A page's script vote: "ja", "zh" or "ko" for CJK text, "" for other letters, None
    for too few letters."""
    kana, han, hangul, other = script_counts(sample)
    cjk = kana + han + hangul
    if cjk + other < MIN_LETTERS // 2:
        return None
    if cjk * CJK_WEIGHT <= other:
        return ""
    if hangul >= kana + han:
        return "ko"
    return "ja" if kana >= KANA_SHARE * (kana + han) else "zh"


def detect_document_language(pages: Sequence[str]) -> str | None:
    """The majority language of a document given the body text of its pages, in order
    (all pages, or a sample spread over the document). ``PAGE_VOTES`` pages spread over it
    vote with their script; when most are not CJK, langdetect names the language of a
    sample drawn from all of those pages (one call, whose cost does not grow with the
    document). Ties go to the earlier page. None when no page has enough text to tell."""
    candidates = [text for text in pages if len(text) >= MIN_LETTERS // 2]
    votes: Counter[str] = Counter()
    samples: list[str] = []
    for index in _spread(len(candidates), PAGE_VOTES):
        sample = _middle(candidates[index], PAGE_SAMPLE_CHARS)
        vote = _page_vote(sample)
        if vote is None:
            continue
        votes[vote] += 1
        if not vote:
            samples.append(sample)
    if not votes:
        return None
    winner = max(votes, key=votes.__getitem__)  # the first of equals: Counter keeps order
    if winner:
        return winner
    return detect_language(" ".join(samples))
