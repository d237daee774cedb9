"""Tesseract language codes: what ``--ocr-language`` takes, and the default a document's
detected language gives.

Tesseract names its languages by ISO 639-2/T-like codes with script variants (``eng``,
``deu``, ``chi_sim``, ``jpn``) and reads several at once joined by ``+`` (``jpn+eng``).
PyMuPDF's ``get_textpage_ocr(language=...)`` passes the string to Tesseract unchanged, which
needs ``<code>.traineddata`` in its tessdata folder for each.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pymupdf

from mmprolong_runtime.errors import InputError

DEFAULT_LANGUAGE = "eng"

# ISO 639-1 (what docpool detects) -> Tesseract's traineddata name.
TESSERACT_CODES = {
    "ar": "ara",
    "cs": "ces",
    "da": "dan",
    "de": "deu",
    "el": "ell",
    "en": "eng",
    "es": "spa",
    "fi": "fin",
    "fr": "fra",
    "hu": "hun",
    "it": "ita",
    "ja": "jpn",
    "ko": "kor",
    "nl": "nld",
    "no": "nor",
    "pl": "pol",
    "pt": "por",
    "ru": "rus",
    "sv": "swe",
    "tr": "tur",
    "uk": "ukr",
    "zh": "chi_sim",
}

_CODES = re.compile(r"^[a-z]{3}(_[a-z]+)*(\+[a-z]{3}(_[a-z]+)*)*$")


class OcrLanguageError(InputError):
    """An ``--ocr-language`` value Tesseract cannot use."""


@functools.lru_cache(maxsize=1)
def installed_languages() -> frozenset[str] | None:
    """Languages with traineddata in Tesseract's tessdata folder; None when Tesseract's data
    cannot be found (OCR then does not run). Looked up once per process (PyMuPDF asks the
    tesseract program)."""
    try:
        folder = pymupdf.get_tessdata()
    except (RuntimeError, OSError):
        return None
    if not folder or not Path(folder).is_dir():
        return None
    return frozenset(path.stem for path in Path(folder).glob("*.traineddata"))


def check_ocr_language(value: str) -> str:
    """``value`` when it is Tesseract codes joined by '+' (each installed, where Tesseract's
    data is found); otherwise OcrLanguageError naming the value."""
    if not _CODES.match(value):
        raise OcrLanguageError(
            f"--ocr-language {value!r} is not Tesseract language codes such as 'eng', "
            "'deu', 'chi_sim' or 'jpn+eng' (ISO 639-1 codes like 'en' are not Tesseract's)"
        )
    installed = installed_languages()
    if installed is not None:
        missing = [code for code in value.split("+") if code not in installed]
        if missing:
            raise OcrLanguageError(
                f"--ocr-language {value!r}: Tesseract has no data for {', '.join(missing)} "
                f"(installed: {', '.join(sorted(installed)) or 'none'})"
            )
    return value


def ocr_language_for(lang: str | None) -> str:
    """The Tesseract language for a document detected as ``lang`` (ISO 639-1): its code when
    Tesseract has that language's data, with English for pages quoting English text; else
    English."""
    installed = installed_languages()
    code = TESSERACT_CODES.get(lang or "")
    if code is None or code == DEFAULT_LANGUAGE:
        return DEFAULT_LANGUAGE
    if installed is not None and code not in installed:
        return DEFAULT_LANGUAGE
    if installed is None or DEFAULT_LANGUAGE in installed:
        return f"{code}+{DEFAULT_LANGUAGE}"
    return code
