import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmprolong_schemas import AnswerFormat, coerce_answer
from mmprolong_schemas.numbers import (
    canonical_number,
    decimal_mark,
    find_numbers,
    parse_number,
)


@pytest.mark.parametrize(
    ("text", "lang", "value"),
    [
        ("3,7", "fr", 3.7),
        ("3,7", None, 3.7),  # a comma before one digit can only be a decimal mark
        ("1.234,5", None, 1234.5),
        ("1.234,5", "en", 1234.5),  # unambiguous whatever the language says
        ("1,234.5", "de", 1234.5),
        ("1 234,5", "fr", 1234.5),
        ("1\u202f234,5", "fr", 1234.5),
        ("1,234", "en", 1234),
        ("1,234", None, 1234),
        ("1,234", "fr", 1.234),
        ("1.234", "de", 1234),
        ("1.234", "en", 1.234),
        ("1.234", "de-AT", 1234),
        ("1.234.567", None, 1234567),
        ("12 045", None, 12045),
        ("3'000", None, 3000),
        ("0,125", "en", 0.125),
        ("1234,567", "en", 1234.567),
        ("-12.5", None, -12.5),
        ("\u221212", None, -12),
        ("１２", None, 12),
        ("1,2,3", None, None),
        ("1,2,3", "fr", None),
        ("1.2.3", "de", None),
        ("12,34,567", "en", None),
        ("1.234,5,6", None, None),
        ("", None, None),
        ("abc", "en", None),
        ("12a", "en", None),
        ("$45.20", None, None),
    ],
)
def test_parse_number(text: str, lang: str | None, value: float | None) -> None:
    parsed = parse_number(text, lang)
    assert parsed == value
    if value is not None:
        assert type(parsed) is type(value)


def test_decorations_are_dropped_only_when_asked() -> None:
    assert parse_number("$45.20", decorated=True) == 45.2
    assert parse_number("45,20 €", "fr", decorated=True) == 45.2
    assert parse_number("18.29%", decorated=True) == 18.29
    assert parse_number("18.29%") is None


def test_decimal_mark_by_language() -> None:
    assert decimal_mark("fr") == decimal_mark("de-CH") == ","
    assert decimal_mark("en") == decimal_mark("ja") == decimal_mark(None) == "."


def test_find_numbers_in_running_text() -> None:
    def values(text: str, lang: str | None = None) -> list[float]:
        return [n.value for n in find_numbers(text, lang)]

    assert values("La valeur est 3,7 et 1 234,5 au total.", "fr") == [3.7, 1234.5]
    assert values("page 12 345 items", "en") == [12, 345]  # plain spaces group only in fr...
    assert values("Der Wert 1.234 steigt auf 3,7.", "de") == [1234, 3.7]
    assert values("from 2019-2020 to -3 and A4 or 2x") == [2019, 2020, -3]
    assert values("売上は12億円、前年は1,204件") == [12, 1204]
    assert values("the codes 1,2,3 were used") == [1, 2, 3]
    span = next(find_numbers("It processed 4,512 samples.", "en"))
    assert "It processed 4,512 samples."[span.start : span.end] == span.text == "4,512"


@given(st.integers(min_value=-(10**12), max_value=10**12), st.sampled_from(["en", "fr", "de"]))
def test_grouped_integers_read_back(value: int, lang: str) -> None:
    grouped = f"{value:,}"
    printed = {"en": grouped, "fr": grouped.replace(",", " "), "de": grouped.replace(",", ".")}
    assert parse_number(printed[lang], lang) == value


@given(
    st.integers(min_value=0, max_value=10**9),
    st.integers(min_value=0, max_value=99),
    st.sampled_from(["en", "fr", "de"]),
)
def test_decimals_read_back(whole: int, cents: int, lang: str) -> None:
    text = f"{whole:,}.{cents:02d}"
    if lang != "en":
        group = " " if lang == "fr" else "."
        text = text.replace(",", "\0").replace(".", ",").replace("\0", group)
    assert parse_number(text, lang) == pytest.approx(whole + cents / 100)


def test_canonical_number() -> None:
    assert canonical_number(1234.0) == "1234"
    assert canonical_number(3.7) == "3.7"
    assert canonical_number(-5) == "-5"


def test_coerce_answer_reads_numbers_in_the_documents_language() -> None:
    assert coerce_answer("3,7", AnswerFormat.FLOAT, "fr") == 3.7
    assert coerce_answer("1.234,5", AnswerFormat.FLOAT) == 1234.5
    assert coerce_answer("1.234", AnswerFormat.INTEGER, "de") == 1234
    assert coerce_answer("1,204", AnswerFormat.INTEGER) == 1204
    for bad in ("1,2,3", "1.234", "seven"):
        with pytest.raises(ValueError, match="not an Integer"):
            coerce_answer(bad, AnswerFormat.INTEGER)
    with pytest.raises(ValueError, match="not a Float"):
        coerce_answer("1,2,3", AnswerFormat.FLOAT)
