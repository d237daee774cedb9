"""Documents in any language: the language is the majority over the whole document, CJK
lines join without spaces, captions and page labels are recognised in en, fr, de, es, zh, ja.
Checked on generated Chinese and Japanese manuals whose first pages are English."""

from __future__ import annotations

import pytest

from docpool import Pool, ingest
from docpool.captions import CAPTION, is_figure_caption
from docpool.language import detect_document_language, detect_language
from docpool.layout_fast import PAGE_NUMBER
from docpool.testing import MixedScriptTruth, make_mixed_script_pdf
from mmprolong_schemas import BlockLabel


@pytest.fixture(scope="module")
def manuals(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pool, list[MixedScriptTruth]]:
    folder = tmp_path_factory.mktemp("manuals")
    truths = [
        make_mixed_script_pdf(folder / f"manual-{lang}.pdf", lang, english_pages=3, cjk_pages=5)
        for lang in ("ja", "zh")
    ]
    out = folder / "pool"
    report = ingest([folder], out, workers=1, min_pages=5)
    assert report.added == 2, report.as_dict()
    return Pool(out), truths


def test_cjk_manuals_with_english_first_pages_get_their_majority_language(
    manuals: tuple[Pool, list[MixedScriptTruth]],
) -> None:
    pool, truths = manuals
    for truth in truths:
        doc = pool.get(truth.doc_id)
        assert doc.lang == truth.lang
        # What the first 800 characters of body text say: the defect this guards against.
        first = " ".join(doc.page(n).text() for n in truth.english_pages)[:800]
        assert detect_language(first) == "en"


def test_wrapped_cjk_lines_join_without_spaces(
    manuals: tuple[Pool, list[MixedScriptTruth]],
) -> None:
    pool, truths = manuals
    for truth in truths:
        doc = pool.get(truth.doc_id)
        for paragraph in truth.paragraphs:
            texts = [b.text for b in doc.page(paragraph.page).blocks if b.label is BlockLabel.TEXT]
            assert paragraph.text in texts
        for caption in truth.captions:
            labels = {b.text: b.label for b in doc.page(caption.page).blocks}
            assert labels[caption.text] is BlockLabel.CAPTION
        for number in range(len(truth.english_pages) + 1, truth.num_pages + 1):
            footer = truth.page_label.format(n=number)
            labels = {b.text: b.label for b in doc.page(number).blocks}
            assert labels[footer] is BlockLabel.PAGE_FOOTER


ENGLISH = "The operators processed the samples in the new facility during the spring months. "
FRENCH = "Les équipes ont poursuivi l'harmonisation de leurs procédures dans tout le réseau. "
JAPANESE = "設定を変更する前に、必ず電源を切ってください。定期的な点検により故障を防ぎます。"
CHINESE = "在更改任何设置之前，请务必先关闭电源。定期检查可以预防大多数常见故障。"
KOREAN = "설정을 변경하기 전에 반드시 전원을 끄십시오. 정기적인 점검으로 고장을 막을 수 있습니다."


@pytest.mark.parametrize(
    ("pages", "expected"),
    [
        ([ENGLISH * 3] * 3 + [JAPANESE * 4] * 5, "ja"),
        ([ENGLISH * 3] * 3 + [CHINESE * 4] * 5, "zh"),
        ([ENGLISH * 3] * 2 + [FRENCH * 3] * 7, "fr"),
        ([KOREAN * 3] * 4 + [ENGLISH * 3], "ko"),
        ([JAPANESE * 4] * 2 + [ENGLISH * 3] * 30, "en"),
        # A Japanese page quoting English commands is still a Japanese page.
        ([ENGLISH * 3] + [JAPANESE * 3 + " devctl install --prefix /opt/devctl"] * 3, "ja"),
        (["12", "", "Figure 3"], None),
    ],
)
def test_document_language_is_the_majority_of_its_pages(
    pages: list[str], expected: str | None
) -> None:
    assert detect_document_language(pages) == expected


@pytest.mark.parametrize(
    "caption",
    [
        "Figure 3: Sales by site",
        "Tableau 2 : Effectifs",
        "Abbildung 4: Umsatz",
        "Tabelle 1. Proben",
        "Figura 2. Ventas por sitio",
        "Tabla 5: Empleados",
        "Cuadro 3 - Energía",
        "图 1：销售结构",
        "表 2 样品",
        "図 3: 設置の構成",
        "表３　測定値",
        "第2図 売上",
    ],
)
def test_captions_in_six_languages(caption: str) -> None:
    assert CAPTION.match(caption)


@pytest.mark.parametrize(
    ("caption", "figure"),
    [
        ("Figure 3: Sales by site", True),
        ("Fig. 2 Umsatz", True),
        ("Abbildung 4: Umsatz", True),
        ("Gráfico 1. Ventas", True),
        ("图 1：销售结构", True),
        ("第2図 売上", True),
        ("Tableau 2 : Effectifs", False),
        ("Tabla 5: Empleados", False),
        ("Cuadro 3 - Energía", False),
        ("表３　測定値", False),
        ("第1表 売上", False),
    ],
)
def test_figure_captions_are_told_from_table_captions(caption: str, figure: bool) -> None:
    assert CAPTION.match(caption)
    assert is_figure_caption(caption) is figure


@pytest.mark.parametrize("text", ["第1章 概要", "表示する設定", "Tables of contents", "Figures"])
def test_caption_lookalikes_are_not_captions(text: str) -> None:
    assert not CAPTION.match(text)


@pytest.mark.parametrize(
    "label",
    ["Page 3 of 40", "Seite 3 von 40", "Página 3 de 40", "p. 12", "第 3 页", "第12頁", "3 ページ"],
)
def test_page_labels_in_six_languages(label: str) -> None:
    assert PAGE_NUMBER.match(label)


def test_a_long_documents_first_chunk_does_not_outvote_the_rest() -> None:
    from docpool.parse import _evenly

    # 300 pages: pages 1-128 read whole, then one page in seven of the rest.
    tail = list(range(129, 301, 7))
    chosen = _evenly([*range(1, 129), *tail], 128)
    head = [number for number in chosen if number <= 128]
    assert len(head) == len(range(1, 129, 7)) and head[:3] == [1, 8, 15]
    assert chosen[len(head) :] == tail
    # A document read whole keeps every page.
    assert _evenly(list(range(1, 41)), 40) == list(range(1, 41))
