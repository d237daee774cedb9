"""The validator's answer checks: grounding on the evidence pages' text, empty and repeated
list items, anchors and duplicates in any language."""

import hashlib
import json

import pytest

from mmprolong_schemas import BBox, Block, BlockLabel, Document, Page, PageRange, Segment, Task
from qasynth.cache import RequestCache
from qasynth.generate import GenerateConfig, generate
from qasynth.grounding import EvidenceText, contains, grounding_rates, normalize_text
from qasynth.parsing import QARejectReason, QAValidator, Rejected, anchored_pages
from qasynth.segments import sample_segments
from qasynth.teachers.rules import RulesTeacher


def doc_id_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _page(number: int, *texts: str, rows: list[list[str]] | None = None, **kw) -> Page:
    blocks = [
        Block(
            label=BlockLabel.TEXT,
            bbox=BBox(x0=72, y0=80 + 60 * i, x1=540, y1=120 + 60 * i),
            text=text,
            order=i,
        )
        for i, text in enumerate(texts)
    ]
    if rows:
        blocks.append(
            Block(
                label=BlockLabel.TABLE,
                bbox=BBox(x0=72, y0=400, x1=540, y1=500),
                order=len(blocks),
                rows=rows,
            )
        )
    return Page(number=number, width=595, height=842, blocks=blocks, **kw)


def _document(pages: list[Page], lang: str = "fr") -> Document:
    return Document(
        doc_id=doc_id_of(f"grounding-{lang}"),
        source_path="/d.pdf",
        file_size=1,
        num_pages=len(pages),
        pages=pages,
        lang=lang,
    )


FRENCH = _document(
    [
        _page(1, "Le site de Lyon a traité 4 512 échantillons en 2019."),
        _page(
            2, "La consommation a atteint 3,7 MWh.", rows=[["Site", "Coût"], ["Porto", "1 234,5"]]
        ),
        _page(3, has_text_layer=False, flags=["no-text-layer"]),
        _page(4, "Гданьск: 12 станций. Рост составил 15 %."),
    ]
)
SEGMENT = Segment(
    segment_id="s", doc_id=FRENCH.doc_id, pages=PageRange(first=1, last=4), doc_pages=4
)
EVIDENCE = EvidenceText.of(FRENCH)


def _reply(question: str, answer, answer_format: str, pages: list[int], sources=("Text",)) -> str:
    data = {
        "question": question,
        "answer": answer,
        "answer_format": answer_format,
        "evidence_pages": pages,
        "evidence_sources": list(sources),
    }
    return f"Evidence: see the pages.\nJSON: {json.dumps(data, ensure_ascii=False)}"


def _check(text: str, task: Task = Task.EXTRACT_SINGLE, validator: QAValidator | None = None):
    return (validator or QAValidator()).validate(text, SEGMENT, task, "t", "v", EVIDENCE)


def _reason(text: str, task: Task = Task.EXTRACT_SINGLE) -> QARejectReason:
    with pytest.raises(Rejected) as caught:
        _check(text, task)
    return caught.value.reason


def test_normalisation_folds_case_width_and_number_formats() -> None:
    assert normalize_text("Le COÛT: 1 234,5 €", "fr") == normalize_text("le coût 1,234.5", "en")
    assert normalize_text("ＡＢＣ　１２", None) == "abc 12"
    assert normalize_text("東京 都", "ja") == "東京都"
    assert contains(normalize_text("in the year 2012"), normalize_text("2012"))
    assert not contains(normalize_text("in the year 2012"), normalize_text("12"))
    assert contains(normalize_text("東京都の人口"), normalize_text("東京"))


def test_words_broken_at_a_line_end_are_joined() -> None:
    assert (
        normalize_text("infor-\nmation") == normalize_text("infor\u00ad\nmation") == "information"
    )
    assert normalize_text("Paris-\nLyon") == "paris lyon"  # a capital: no broken word
    assert normalize_text("2019-\n2020") == "2019 2020"
    doc = _document(
        [
            _page(
                1,
                "The archive keeps infor-\nmation on state-of-the-\nart sites and docu\u00adments.",
            )
        ],
        lang="en",
    )
    segment = Segment(
        segment_id="h", doc_id=doc.doc_id, pages=PageRange(first=1, last=1), doc_pages=1
    )

    def validate(answer: str):  # type: ignore[no-untyped-def]
        text = _reply("On Page 1, what is kept?", answer, "String", [1])
        return QAValidator().validate(
            text, segment, Task.EXTRACT_SINGLE, "t", "v", EvidenceText.of(doc)
        )

    for answer in ("information", "state-of-the-art", "documents"):
        assert validate(answer).grounding == "grounded"
    with pytest.raises(Rejected) as caught:
        validate("informatics")
    assert caught.value.reason is QARejectReason.NOT_GROUNDED


@pytest.mark.parametrize(
    ("answer", "answer_format", "page"),
    [
        (4512, "Integer", 1),
        ("4512", "Integer", 1),
        ("3,7", "Float", 2),  # read in the document's language: 3.7
        (3.7, "Float", 2),
        ("1 234,5", "Float", 2),
        (1234.5, "Float", 2),
        ("porto", "String", 2),
        ("LYON", "String", 1),
        ("Гданьск", "String", 4),
        ("15 %", "String", 4),
    ],
)
def test_answers_printed_on_their_page_are_grounded(answer, answer_format, page) -> None:
    pair = _check(_reply(f"On Page {page}, what value?", answer, answer_format, [page]))
    assert pair.grounding == "grounded"


def test_lists_are_grounded_item_by_item() -> None:
    text = _reply("Which values are on Pages 1 and 2?", [4512, "Porto"], "List", [1, 2])
    assert _check(text, Task.EXTRACT_MULTI).grounding == "grounded"
    text = _reply("Which values are on Pages 1 and 2?", [4512, "Lisbon"], "List", [1, 2])
    assert _reason(text, Task.EXTRACT_MULTI) is QARejectReason.NOT_GROUNDED


@pytest.mark.parametrize(
    ("answer", "answer_format", "page"),
    [
        (4513, "Integer", 1),
        (37, "Integer", 2),  # "3,7" is not 37
        ("Lisbon", "String", 1),
        (2019, "Integer", 2),  # printed, but on another page
        ("12", "String", 1),  # not a whole word of "4 512"
    ],
)
def test_answers_not_on_their_pages_are_rejected(answer, answer_format, page) -> None:
    text = _reply(f"On Page {page}, what value?", answer, answer_format, [page])
    assert _reason(text) is QARejectReason.NOT_GROUNDED


def test_pages_without_text_make_a_pair_unverified_never_grounded() -> None:
    assert _check(_reply("On Page 3, what value?", 99, "Integer", [3])).grounding == "unverified"
    ocr = _document([_page(1, "Scanned 4 512", flags=["ocr"], has_text_layer=False)])
    validator = QAValidator()
    pair = validator.validate(
        _reply("On Page 1, what value?", 4512, "Integer", [1]),
        SEGMENT.model_copy(update={"doc_id": ocr.doc_id, "pages": PageRange(first=1, last=1)}),
        Task.EXTRACT_SINGLE,
        "t",
        "v",
        EvidenceText.of(ocr),
    )
    assert pair.grounding == "grounded"  # found on an OCR page: grounded all the same


def test_a_figure_source_excuses_a_missing_answer_only_on_a_page_with_a_picture() -> None:
    """A value read off a picture is not in the text layer: unverified. Naming a Figure for
    pages that hold none excuses nothing: the answer is checked like any other."""
    chart = Block(label=BlockLabel.PICTURE, bbox=BBox(x0=72, y0=300, x1=540, y1=500), order=1)
    with_chart = _page(1, "Figure 1 : consommation par site.")
    with_chart = with_chart.model_copy(update={"blocks": [*with_chart.blocks, chart]})
    doc = _document([with_chart, _page(2, "Le site de Lyon a traité 4 512 échantillons.")])
    segment = SEGMENT.model_copy(
        update={"doc_id": doc.doc_id, "pages": PageRange(first=1, last=2), "doc_pages": 2}
    )
    evidence = EvidenceText.of(doc)
    assert evidence.pictured == {1} and evidence.checkable == {1, 2}

    def validate(pages: list[int], sources: list[str]):  # type: ignore[no-untyped-def]
        where = " and ".join(f"Page {p}" for p in pages)
        task = Task.EXTRACT_MULTI if len(pages) > 1 else Task.EXTRACT_SINGLE
        text = _reply(f"On {where}, what value?", 99, "Integer", pages, sources)
        return QAValidator().validate(text, segment, task, "t", "v", evidence)

    assert validate([1], ["Figure"]).grounding == "unverified"
    assert validate([1, 2], ["Text", "Figure"]).grounding == "unverified"
    for pages, sources, detail in (
        ([2], ["Figure"], "a Figure source, but no picture on them"),
        ([1], ["Text"], "not found on pages [1]"),  # a picture excuses only a Figure source
    ):
        with pytest.raises(Rejected) as caught:
            validate(pages, sources)
        assert caught.value.reason is QARejectReason.NOT_GROUNDED
        assert detail in caught.value.detail


def test_a_figure_caption_stands_for_a_chart_drawn_as_vector_paths() -> None:
    """A chart drawn as vector paths leaves no picture block, only its caption: a Figure
    source is excused on a page with a figure caption (in any of docpool's caption languages),
    not on one whose caption is a table's, whose values are printed."""

    def caption(text: str) -> Page:
        page = _page(1, "Le site de Lyon a traité 4 512 échantillons.")
        block = Block(label=BlockLabel.CAPTION, bbox=BBox(x0=72, y0=520, x1=540, y1=540),
                      text=text, order=1)  # fmt: skip
        return page.model_copy(update={"blocks": [*page.blocks, block]})

    for text, pictured in (("Figure 2 : consommation", True), ("図 3: 構成", True),
                           ("Tableau 2 : effectifs", False), ("表 2 样品", False)):  # fmt: skip
        doc = _document([caption(text)])
        evidence = EvidenceText.of(doc)
        assert evidence.pictured == ({1} if pictured else set()), text
        segment = SEGMENT.model_copy(
            update={"doc_id": doc.doc_id, "pages": PageRange(first=1, last=1), "doc_pages": 1}
        )
        reply = _reply("On Page 1, what value?", 99, "Integer", [1], ["Figure"])
        if pictured:
            pair = QAValidator().validate(reply, segment, Task.EXTRACT_SINGLE, "t", "v", evidence)
            assert pair.grounding == "unverified"
        else:
            with pytest.raises(Rejected) as caught:
                QAValidator().validate(reply, segment, Task.EXTRACT_SINGLE, "t", "v", evidence)
            assert caught.value.reason is QARejectReason.NOT_GROUNDED


def test_reasoning_answers_must_not_be_copied() -> None:
    copied = _reply("Why, per Pages 1 and 2?", "Le site de Lyon a traité", "String", [1, 2])
    assert _reason(copied, Task.REASONING) is QARejectReason.REASONING_VERBATIM
    derived = _reply("What is the sum of the values on Pages 1 and 2?", 4515.7, "Float", [1, 2])
    pair = _check(derived, Task.REASONING)
    assert pair.grounding is None  # derived, not printed: not checked
    short = _reply("Which site is larger, per Pages 1 and 2?", "Lyon", "String", [1, 2])
    assert _check(short, Task.REASONING).answer == "Lyon"  # one word is no copy


def test_empty_answers_and_items_are_rejected_and_items_deduplicated() -> None:
    assert _reason(_reply("On Page 1, what?", "  ", "String", [1])) is QARejectReason.EMPTY_ANSWER
    text = _reply("Which on Pages 1 and 2?", ["", "Porto"], "List", [1, 2])
    assert _reason(text, Task.EXTRACT_MULTI) is QARejectReason.EMPTY_ANSWER
    text = _reply("Which on Pages 1 and 2?", ["Porto", " porto ", 4512, "Lyon"], "List", [1, 2])
    assert _check(text, Task.EXTRACT_MULTI).answer == ["Porto", 4512, "Lyon"]


@pytest.mark.parametrize(
    ("question", "pages"),
    [
        ("Quelle valeur figure à la page 2 ?", [2]),
        ("Welcher Wert steht auf Seite 2?", [2]),
        ("Welche Werte stehen auf den Seiten 1 und 2?", [1, 2]),
        ("¿Qué valor aparece en la página 2?", [2]),
        ("第2页的数值是多少？", [2]),
        ("2ページの値は何ですか？", [2]),
        ("What was reported on Page 2, 2019 edition?", [2]),
    ],
)
def test_page_anchors_in_any_language(question: str, pages: list[int]) -> None:
    assert anchored_pages(question) == pages
    assert _check(_reply(question, 3.7, "Float", [2])).evidence_pages == [2]


@pytest.mark.parametrize(
    ("question", "without_page_count"),
    [
        ("Which values are on Pages 1 and 2, 2019 edition?", [1, 2]),
        ("Which values are on Pages 1, 2, 2019 edition?", [1, 2]),
        ("Quelles valeurs figurent aux pages 1 et 2, 2019 ?", [1, 2]),
        ("Welche Werte nennen die Seiten 1 und 2, 2019?", [1, 2]),
        ("¿Qué valores dan las páginas 1 y 2, 2019?", [1, 2]),
        ("第1、2页，2019年的数值是多少？", [1, 2]),
        ("1ページと2ページ、2019年版の値は？", [1, 2]),
        # Beyond the document's 4 pages: known only with the page count.
        ("Which values do Pages 1 and 2, 150 sites, report?", [1, 2, 150]),
        ("第1、2、150页的数值是多少？", [1, 2, 150]),
    ],
)
def test_a_page_list_stops_at_a_number_that_is_no_page(
    question: str, without_page_count: list[int]
) -> None:
    assert anchored_pages(question) == without_page_count
    assert anchored_pages(question, doc_pages=4) == [1, 2]
    pair = _check(_reply(question, [4512, "Porto"], "List", [1, 2]), Task.EXTRACT_MULTI)
    assert pair.grounding == "grounded"


def test_page_lists_keep_their_pages() -> None:
    assert anchored_pages("Pages 1, 2 and 4", doc_pages=4) == [1, 2, 4]
    assert anchored_pages("Pages 1200, 1300", doc_pages=2000) == [1200, 1300]  # in thousands
    assert anchored_pages("Page 9 of Pages 1, 2", doc_pages=4) == [9, 1, 2]  # first one kept
    assert anchored_pages("第3、5页", doc_pages=4) == [3]


@pytest.mark.parametrize(
    "question",
    ["Quel coût indique le chapitre Résultats ?", "Was nennt Abschnitt 2?", "第2章の費用は？"],
)
def test_section_anchors_in_any_language(question: str) -> None:
    assert _check(_reply(question, 3.7, "Float", [2])).answer == 3.7


def test_duplicates_keep_non_ascii_text() -> None:
    validator = QAValidator()
    segment = SEGMENT.model_copy(update={"pages": PageRange(first=1, last=20), "doc_pages": 20})
    for question in ("Сколько станций на странице 12 (Page 12)?", "Какой рост на Page 12?"):
        validator.validate(
            _reply(question, 1, "Integer", [12]), segment, Task.EXTRACT_SINGLE, "t", "v"
        )
    with pytest.raises(Rejected) as caught:
        validator.validate(
            _reply("какой РОСТ на page 12 ?", 1, "Integer", [12]),
            segment,
            Task.EXTRACT_SINGLE,
            "t",
            "v",
        )
    assert caught.value.reason is QARejectReason.DUPLICATE


def _french_report(english: Document) -> Document:
    """make_document's report, printed the French way (4 512 ; 3,5 ; 1 234,5)."""
    pages = []
    for page in english.pages:
        blocks = []
        for block in page.blocks:
            text = block.text.replace(",", " ").replace(".5 MWh", ",5 MWh")
            rows = [list(r) for r in block.rows or []]
            for row in rows[1:]:
                row[1:] = [f"1 {c.zfill(3)},5" for c in row[1:]]
            blocks.append(block.model_copy(update={"text": text, "rows": rows or None}))
        pages.append(page.model_copy(update={"blocks": blocks}))
    return english.model_copy(
        update={"pages": pages, "lang": "fr", "doc_id": doc_id_of("rapport-fr")}
    )


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_rules_teacher_extract_pairs_are_all_grounded(lang, doc_factory, tmp_path) -> None:
    document = doc_factory("rapport")
    if lang == "fr":
        document = _french_report(document)
    teacher = RulesTeacher(lambda doc_id: document)
    segments = sample_segments(document, 3, seed=1)
    with RequestCache(tmp_path / "cache.sqlite") as cache:
        result = generate(
            segments, teacher, cache, GenerateConfig(seed=1), documents=lambda doc_id: document
        )
    extract = [p for p in result.pairs if p.task is not Task.REASONING]
    assert len(extract) >= 4 and all(p.grounding == "grounded" for p in extract)
    assert "not-grounded" not in result.stats.rejected
    table = result.stats.as_dict()["grounding"]
    assert table["extract-single"]["grounding_rate"] == 1.0
    if "reasoning" in table:
        assert table["reasoning"]["grounding_rate"] is None


def test_grounding_rates_per_teacher_and_task() -> None:
    text = _reply("On Page 1, what value?", 4512, "Integer", [1])
    grounded = _check(text)
    unverified = _check(_reply("On Page 3, what value?", 99, "Integer", [3]))
    other = grounded.model_copy(
        update={"teacher": "openai:m", "task": Task.REASONING, "grounding": None}
    )
    rates = grounding_rates([grounded, unverified, other])
    assert rates["t"]["extract-single"] == {"grounded": 1, "unverified": 1, "grounding_rate": 0.5}
    assert rates["openai:m"]["reasoning"] == {"not-checked": 1, "grounding_rate": None}


def test_qasynth_stats_prints_the_grounding_rate_per_teacher_and_task(tmp_path) -> None:
    from typer.testing import CliRunner

    from mmprolong_schemas.io import write_jsonl
    from qasynth.cli import app
    from qasynth.pipeline import PAIRS_FILE

    grounded = _check(_reply("On Page 1, what value?", 4512, "Integer", [1]))
    unverified = _check(_reply("On Page 3, what value?", 99, "Integer", [3]))
    other = grounded.model_copy(
        update={"teacher": "openai:m", "task": Task.REASONING, "grounding": None}
    )
    (tmp_path / PAIRS_FILE).parent.mkdir(parents=True)
    write_jsonl(tmp_path / PAIRS_FILE, [grounded, unverified, other])
    result = CliRunner().invoke(app, ["stats", str(tmp_path)])
    assert result.exit_code == 0, result.output
    # The "QA pairs" table's grounding row, its JSON wrapped over several lines at spaces.
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in result.output.splitlines()]
    rows = [c for c in cells if len(c) == 2]
    start = next(i for i, (key, _) in enumerate(rows) if key == "grounding")
    end = next((i for i in range(start + 1, len(rows)) if rows[i][0]), len(rows))
    shown = json.loads(" ".join(value for _, value in rows[start:end]))
    assert shown == {
        "t": {"extract-single": {"grounded": 1, "unverified": 1, "grounding_rate": 0.5}},
        "openai:m": {"reasoning": {"not-checked": 1, "grounding_rate": None}},
    }


@pytest.mark.parametrize(
    "question",
    [
        "Quel total figure dans tout le document ?",
        "Wie oft steht das im gesamten Dokument?",
        "¿Cuántas veces aparece en todo el documento?",
        "整个文档中出现了几次？",
        "文書全体で何回出てきますか？",
    ],
)
def test_whole_document_questions_are_broad_in_any_language(question: str) -> None:
    assert _reason(_reply(question + " (Page 2)", 3.7, "Float", [2])) is QARejectReason.BROAD_SCOPE


def test_numbered_captions_in_any_language() -> None:
    from qasynth.facts import extract_facts

    captions = ["表3：各站点能耗", "図2：拠点別の消費量", "Tabla 1: Consumo por sede"]
    pages = [
        Page(
            number=n,
            width=595,
            height=842,
            blocks=[
                Block(
                    label=BlockLabel.CAPTION,
                    bbox=BBox(x0=72, y0=80, x1=540, y1=100),
                    text=text,
                    order=0,
                )
            ],
        )
        for n, text in enumerate(captions, start=1)
    ]
    found = extract_facts(_document(pages, "zh")).captions
    assert [(c.label, c.title) for c in found] == [
        ("表3", "各站点能耗"),
        ("図2", "拠点別の消費量"),
        ("Tabla 1", "Consumo por sede"),
    ]
