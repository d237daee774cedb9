"""Numbers as documents print them: the one parser every package reads numbers with.

A separator is read by what it can mean. "1.234,5" and "1,234.5" name one value in any
language (the last mark is the decimal one); "3,7" and "12.5" can only be decimals; "1,2,3" is
no number (groups after the first have three digits). Only "1,234" and "1.234" are ambiguous:
the document's language decides (1234 in English, 1.234 in French; 1234 in German), and with
no language the English reading is taken. Spaces group digits in a number read on its own
("12 045"); in running text only languages that print them so (French, Russian, ...) or the
no-break spaces do, so "page 12 345" in English stays two numbers.

That is the ``Reading.LOCALE`` reading, the default. Two other readings reproduce, quirk for
quirk, how MMLongBench's scorer reads numbers, so that its scores can be restated exactly:
``Reading.COMMAS_DROPPED`` (document QA) and ``Reading.DIGIT_RUNS`` (NIAH counting).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

Number = int | float

# ISO 639-1 codes of languages whose decimal mark is a comma (CLDR's default locales).
# fmt: off
_DECIMAL_COMMA = frozenset({
    "fr", "de", "es", "it", "pt", "nl", "ru", "pl", "cs", "sk", "sl", "hr", "sr", "bs", "bg",
    "uk", "be", "ro", "hu", "tr", "sv", "da", "nb", "nn", "no", "fi", "et", "lv", "lt", "el",
    "id", "vi", "az", "kk", "ka", "is", "ca", "gl", "eu", "af", "sq", "mk", "mn", "uz",
})
# fmt: on
# Languages whose running text groups thousands with a plain space.
# fmt: off
_SPACE_GROUPING = frozenset({
    "fr", "ru", "pl", "cs", "sk", "uk", "be", "bg", "sv", "nb", "nn", "no", "fi", "et", "lv",
    "lt", "hu", "kk", "uz", "sq", "mk",
})
# fmt: on
_NO_BREAK_SPACES = "\u00a0\u202f\u2009"
_SIGNS = "+-\u2212"
_SEPARATOR = re.compile(rf"[.,' {_NO_BREAK_SPACES}]")
_BODY = re.compile(rf"\d+(?:[.,' {_NO_BREAK_SPACES}]\d+)*")
# MMLongBench's number in comma-free text: a dot is always decimal, "5." and ".5" count.
_COMMA_FREE_NUMBER = re.compile(r"-?\d+(?:\.\d*)?|-?\.\d+")
_DIGIT_RUN = re.compile(r"\d+")


class Reading(StrEnum):
    """How digits and separators are read."""

    LOCALE = "locale"
    """As the document's language prints numbers (the module docstring): the default."""
    COMMAS_DROPPED = "commas-dropped"
    """MMLongBench's document-QA scorer (utils.py, ``extract_number_list`` and the float()
    of ``get_docqa_clean_string``): every comma is deleted first ("1,2" is 12), a dot is
    always the decimal mark, a "-" before digits is always a minus ("2019-2020" gives -2020),
    digits glued to letters count ("A4" gives 4), and a whole string is what Python's
    ``float()`` reads ("1e3" is 1000). Values are floats; non-finite ones are no number."""
    DIGIT_RUNS = "digit-runs"
    """MMLongBench's NIAH counting (utils.py, ``extract_cnt_list`` and ``turn_int_list``):
    every run of digits in text is a whole number ("1.5" gives 1 and 5, "-3" gives 3), and a
    whole string is what Python's ``int()`` reads ("-3" is -3)."""


def language_code(lang: str | None) -> str | None:
    """The primary subtag, lower case: 'fr-CA' -> 'fr', 'zh_Hans' -> 'zh'."""
    if not lang:
        return None
    return re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0] or None


def decimal_mark(lang: str | None) -> str:
    """',' or '.': the decimal mark of ``lang`` (English's when the language is unknown)."""
    return "," if language_code(lang) in _DECIMAL_COMMA else "."


def _kind(separator: str) -> str:
    return " " if separator in " " + _NO_BREAK_SPACES else separator


def _grouped(groups: list[str]) -> bool:
    """Digit groups of a grouped integer: 1-3 digits, then exactly three each."""
    return 1 <= len(groups[0]) <= 3 and all(len(group) == 3 for group in groups[1:])


# Longer digit runs are no printed quantity (a float overflows past 308 digits), and Python's
# int() refuses strings past 4300 digits; an untrusted text layer may hold either.
_MAX_DIGITS = 308


def _value(integer: str, fraction: str | None, negative: bool) -> Number | None:
    if len(integer) > _MAX_DIGITS:
        return None
    value: Number = float(f"{integer}.{fraction}") if fraction is not None else int(integer)
    return -value if negative else value


def parse_number(
    text: str,
    lang: str | None = None,
    *,
    decorated: bool = False,
    reading: Reading = Reading.LOCALE,
) -> Number | None:
    """The value of ``text`` printed as one number in ``lang``'s convention, else None.

    An int when no decimal mark is written, else a float. ``decorated`` also accepts currency
    symbols around it and a trailing percent sign ("$45.20", "45,20 €", "18.29%"), which are
    dropped (the percent is not divided out). ``reading`` other than LOCALE ignores ``lang``
    (see ``Reading``).
    """
    body = text.strip()
    if decorated:
        body = body.removesuffix("%").strip()
        while body and unicodedata.category(body[0]) == "Sc":
            body = body[1:].strip()
        while body and unicodedata.category(body[-1]) == "Sc":
            body = body[:-1].strip()
    if reading is Reading.COMMAS_DROPPED:
        return _python_number(float, body.replace(",", ""))
    if reading is Reading.DIGIT_RUNS:
        return _python_number(int, body)
    negative = False
    if body[:1] in tuple(_SIGNS):
        negative = body[0] != "+"
        body = body[1:]
    if not _BODY.fullmatch(body):
        return None
    groups = _SEPARATOR.split(body)
    kinds = [_kind(s) for s in _SEPARATOR.findall(body)]
    if not kinds:
        return _value(body, None, negative)
    last = kinds[-1]
    earlier = set(kinds[:-1])
    if last in ".," and last not in earlier and len(earlier) <= 1:
        head, tail = groups[:-1], groups[-1]
        if earlier:  # "1.234,5", "1 234,5": the other marks group, the last is decimal
            return _value("".join(head), tail, negative) if _grouped(head) else None
        if len(tail) != 3 or len(head[0]) > 3 or head[0].startswith("0"):
            return _value(head[0], tail, negative)  # "3,7", "12.50", "1234,567", "0,125"
        if last == decimal_mark(lang):  # "1,234" in French, "1.234" in English
            return _value(head[0], tail, negative)
    if len(set(kinds)) == 1 and _grouped(groups):  # "1,234", "1.234.567", "12 045"
        return _value("".join(groups), None, negative)
    return None


def _python_number(kind: type[int] | type[float], body: str) -> Number | None:
    """``body`` as Python's int() or float() reads it; None where it reads no finite number."""
    try:
        value = kind(body)
    except (ValueError, OverflowError):  # ValueError also past int()'s 4300 digits
        return None
    return value if isinstance(value, int) or math.isfinite(value) else None


@dataclass(frozen=True)
class NumberSpan:
    """A number found in running text: where it is, as printed, and its value."""

    start: int
    end: int
    text: str
    value: Number


def _glued(char: str) -> bool:
    """Whether ``char`` beside a number makes it part of a word ("A4", "x2"); CJK text does
    not separate words with spaces, so its characters never glue."""
    return char.isalnum() and not _is_cjk(char)


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF  # kana
        or 0x3400 <= code <= 0x4DBF
        or 0x4E00 <= code <= 0x9FFF
        or 0xAC00 <= code <= 0xD7AF  # hangul
        or 0xF900 <= code <= 0xFAFF
        or 0xFF00 <= code <= 0xFFEF  # full-width forms
    )


def _candidates(lang: str | None) -> re.Pattern[str]:
    spaces = _NO_BREAK_SPACES + (" " if language_code(lang) in _SPACE_GROUPING else "")
    return re.compile(rf"[{_SIGNS}]?\d+(?:[.,'{spaces}]\d+)*")


def find_numbers(
    text: str, lang: str | None = None, *, reading: Reading = Reading.LOCALE
) -> Iterator[NumberSpan]:
    """Every number printed in ``text``, read in ``lang``'s convention.

    A number glued to a letter ("A4", "2x") is not one. A run that is no single number
    ("1,2,3") gives its parts. A sign counts only where it cannot be a hyphen ("2019-2020" is
    two years, not 2019 and -2020). ``reading`` other than LOCALE ignores ``lang`` and these
    rules (see ``Reading``); spans always index ``text`` as given.
    """
    if reading is Reading.COMMAS_DROPPED:
        yield from _comma_free_numbers(text)
        return
    if reading is Reading.DIGIT_RUNS:
        for run in _DIGIT_RUN.finditer(text):
            whole = _python_number(int, run.group(0))
            if whole is not None:
                yield NumberSpan(run.start(), run.end(), run.group(0), whole)
        return
    for match in _candidates(lang).finditer(text):
        start, end = match.span()
        printed = match.group(0)
        before = text[start - 1] if start else ""
        if printed[0] in _SIGNS and before and not before.isspace() and before not in "(=:[":
            start, printed, before = start + 1, printed[1:], printed[0]
        after = text[end] if end < len(text) else ""
        if (before and (_glued(before) or before in ".,")) or (after and _glued(after)):
            continue
        value = parse_number(printed, lang)
        if value is not None:
            yield NumberSpan(start, end, printed, value)
            continue
        offset = start
        for part in re.split(rf"([.,'\s{_NO_BREAK_SPACES}])", printed):
            whole = part.isdigit() or (part[:1] in _SIGNS and part[1:].isdigit())
            if whole and len(part) <= _MAX_DIGITS:
                yield NumberSpan(offset, offset + len(part), part, int(part.replace("\u2212", "-")))
            offset += len(part)


def _comma_free_numbers(text: str) -> Iterator[NumberSpan]:
    # Matched in the text with its commas deleted, as MMLongBench does; each span is mapped
    # back to where its characters stand in ``text`` (so "1,204" spans all five).
    kept = [index for index, char in enumerate(text) if char != ","]
    comma_free = "".join(text[index] for index in kept)
    for match in _COMMA_FREE_NUMBER.finditer(comma_free):
        value = float(match.group(0))
        if math.isfinite(value):  # 400 digits read as inf: no number, as in MMLongBench
            start, end = kept[match.start()], kept[match.end() - 1] + 1
            yield NumberSpan(start, end, text[start:end], value)


def canonical_number(value: Number) -> str:
    """One spelling per value: '1234', '3.7', '-0.5' (whole floats are written as integers)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
