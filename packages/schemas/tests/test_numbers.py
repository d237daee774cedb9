import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmprolong_schemas import AnswerFormat
from mmprolong_schemas.numbers import (
    Reading,
    canonical_number,
    decimal_mark,
    find_numbers,
    parse_number,
)
from mmprolong_schemas.qa import coerce_answer


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


# The two MMLongBench readings restate EdinburghNLP/MMLongBench utils.py: document QA reads a
# whole answer with float(get_docqa_clean_string(...)) and a prediction's numbers with
# extract_number_list (commas deleted, then -?\d+(\.\d*)?|-?\.\d+, finite values only); NIAH
# counting reads extract_cnt_list's last resort (\d+) and turn_int_list's int().
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1,2", 12.0),  # the locale reading says 1.2
        ("1,2,3", 123.0),  # the locale reading says no number
        ("1,234.5", 1234.5),
        ("1.234", 1.234),
        ("1e3", 1000.0),  # Python's float() syntax
        (" -5 ", -5.0),
        ("inf", None),  # float() reads it, but it is no finite number
        ("nan", None),
        ("1" * 400, None),  # too large: inf
        ("3,7 kg", None),
        ("", None),
    ],
)
def test_commas_dropped_reading_of_a_whole_string(text: str, value: float | None) -> None:
    parsed = parse_number(text, "fr", reading=Reading.COMMAS_DROPPED)  # the language is ignored
    assert parsed == value
    if value is not None:
        assert type(parsed) is float


def test_commas_dropped_reading_in_running_text() -> None:
    text = "In 2019-2020, A4 and 1,204 rose 5. or .5 then 1.234.567"
    spans = list(find_numbers(text, "de", reading=Reading.COMMAS_DROPPED))
    assert [s.value for s in spans] == [2019, -2020, 4, 1204, 5, 0.5, 1.234, 0.567]
    assert all(type(s.value) is float for s in spans)
    assert [s.text for s in spans][3:5] == ["1,204", "5."]  # spans index the text as given
    assert all(text[s.start : s.end] == s.text for s in spans)
    huge = find_numbers("1" * 400 + " and 7", reading=Reading.COMMAS_DROPPED)
    assert [s.value for s in huge] == [7]
    # The locale reading of the same text, for contrast.
    assert [s.value for s in find_numbers("In 2019-2020, A4 and 1,204")] == [2019, 2020, 1204]


def test_digit_runs_reading() -> None:
    text = "counts: 1.5, -3 and 1,234 on A4"
    runs = list(find_numbers(text, reading=Reading.DIGIT_RUNS))
    assert [r.value for r in runs] == [1, 5, 3, 1, 234, 4]
    assert all(text[r.start : r.end] == r.text for r in runs)
    assert parse_number(" -3 ", reading=Reading.DIGIT_RUNS) == -3  # Python's int() syntax
    assert parse_number("3.0", reading=Reading.DIGIT_RUNS) is None
    assert parse_number("three", reading=Reading.DIGIT_RUNS) is None


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


@pytest.mark.parametrize("reading", list(Reading))
def test_a_digit_run_no_quantity_has_is_read_without_failing(reading: Reading) -> None:
    # An untrusted text layer can hold a run of thousands of digits; Python's int() refuses
    # strings past 4300 digits and a float overflows past 308.
    for digits in ("9" * 400, "9" * 5000):
        text = f"page 12 then {digits} and 3"
        values = [span.value for span in find_numbers(text, "en", reading=reading)]
        assert 3 in values
        parse_number(digits, "en", reading=reading)  # no exception
    assert parse_number("9" * 5000, "en") is None
