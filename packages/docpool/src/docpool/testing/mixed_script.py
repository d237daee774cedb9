"""Chinese and Japanese manuals whose first pages are English (a command reference): the case
of language detection that reads only the first paragraphs, and of CJK line joining."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Literal

import pymupdf

from docpool.testing.pdf_writer import (
    BODY_LEADING,
    BODY_SIZE,
    BODY_TOP,
    CAPTION_SIZE,
    FOOTER_OFFSET,
    FURNITURE_SIZE,
    H1_SIZE,
    MARGIN_X,
    text_width_points,
)
from docpool.testing.truth import CaptionTruth, MixedScriptTruth, ParagraphTruth
from docpool.testing.vocabulary import FILLER
from mmprolong_schemas.io import atomic_path

_CJK_FONT = {"ja": "japan", "zh": "china-s"}  # MuPDF's built-in CJK font, not embedded
_CJK_SENTENCES = {
    "ja": (
        "本装置は工場の生産ラインで使用することを前提に設計されています。",
        "設定を変更する前に、必ず電源を切ってください。",
        "定期的な点検により、故障の多くは未然に防ぐことができます。",
        "操作パネルの表示が消えた場合は、販売店にお問い合わせください。",
        "この章では、日常の保守作業の手順を順番に説明します。",
        "温度が高い場所では、本体の寿命が短くなることがあります。",
        "部品を交換するときは、指定された工具だけを使用してください。",
        "記録した測定値は、毎月の報告書にまとめて保存します。",
    ),
    "zh": (
        "本设备专为工厂生产线的连续运行而设计。",
        "在更改任何设置之前，请务必先关闭电源。",
        "定期检查可以预防大多数常见故障。",
        "如果操作面板的显示消失，请与经销商联系。",
        "本章按顺序说明日常维护工作的步骤。",
        "在高温环境中使用会缩短设备的使用寿命。",
        "更换零件时，请只使用指定的工具。",
        "记录的测量值每月汇总到报告中保存。",
    ),
}
_CJK_CHAPTERS = {
    "ja": ("概要", "設置", "操作方法", "保守点検", "故障対応", "仕様"),
    "zh": ("概述", "安装", "操作方法", "维护保养", "故障处理", "规格"),
}
_CJK_CAPTION = {"ja": "図 {n}: {topic}の構成", "zh": "图 {n}：{topic}结构"}
_CJK_PAGE_LABEL = {"ja": "{n} ページ", "zh": "第 {n} 页"}
_COMMANDS = (
    "devctl install --prefix /opt/devctl",
    "devctl status --verbose",
    "devctl config set network.port 8080",
    "devctl log export --since yesterday",
    "devctl service restart --all",
    "devctl update --channel stable",
)


def _page_label(page: pymupdf.Page, fontname: str, font: pymupdf.Font, text: str) -> None:
    """``text`` right-aligned in the bottom margin, in ``fontname`` (measured with ``font``)."""
    size = FURNITURE_SIZE
    length = text_width_points(text, font, size)
    at = (page.rect.width - MARGIN_X - length, page.rect.height - FOOTER_OFFSET)
    page.insert_text(at, text, fontname=fontname, fontsize=size)


def make_mixed_script_pdf(
    path: Path,
    lang: Literal["zh", "ja"] = "ja",
    *,
    english_pages: int = 3,
    cjk_pages: int = 6,
    seed: int = 0,
) -> MixedScriptTruth:
    """Write one Chinese or Japanese manual whose first ``english_pages`` pages are an
    English command reference, followed by ``cjk_pages`` pages of CJK chapters (paragraphs
    wrapped over several lines, captions, page labels). Deterministic in ``seed``."""
    if lang not in _CJK_FONT:
        raise ValueError(f"lang {lang!r} is not one of {sorted(_CJK_FONT)}")
    if english_pages < 0 or cjk_pages < 1:
        raise ValueError("a mixed-script manual needs at least one CJK page")
    rng = random.Random(f"mixed-{seed}-{lang}")
    width, height = 595.0, 842.0
    cjk_font = pymupdf.Font(_CJK_FONT[lang])
    doc = pymupdf.open()
    paragraphs: list[ParagraphTruth] = []
    captions: list[CaptionTruth] = []

    for number in range(1, english_pages + 1):
        page = doc.new_page(width=width, height=height)
        y = BODY_TOP + H1_SIZE
        heading = f"Command reference, part {number}"
        page.insert_text((MARGIN_X, y), heading, fontname="hebo", fontsize=H1_SIZE)
        y += 2 * BODY_LEADING
        while y < height - 120:
            sentence = rng.choice(FILLER["en"])
            command = rng.choice(_COMMANDS)
            for line in (f"Run {command} when needed.", sentence):
                page.insert_text((MARGIN_X, y), line, fontname="helv", fontsize=BODY_SIZE)
                y += BODY_LEADING
            y += BODY_LEADING / 2
        _page_label(page, "helv", pymupdf.Font("helv"), f"Page {number}")
    text_width = width - 2 * MARGIN_X
    for offset in range(cjk_pages):
        number = english_pages + offset + 1
        page = doc.new_page(width=width, height=height)
        y = BODY_TOP + H1_SIZE
        chapter = _CJK_CHAPTERS[lang][offset % len(_CJK_CHAPTERS[lang])]
        page.insert_text(
            (MARGIN_X, y), f"第{offset + 1}章 {chapter}", fontname=_CJK_FONT[lang], fontsize=H1_SIZE
        )
        y += 2 * BODY_LEADING
        while y < height - 200:
            text = "".join(rng.sample(_CJK_SENTENCES[lang], rng.randint(3, 5)))
            lines, current, used = [], "", 0.0
            for char in text:  # CJK wraps between any two characters
                advance = text_width_points(char, cjk_font, BODY_SIZE)
                if used + advance > text_width:
                    lines.append(current)
                    current, used = "", 0.0
                current += char
                used += advance
            lines.append(current)
            for line in lines:
                page.insert_text((MARGIN_X, y), line, fontname=_CJK_FONT[lang], fontsize=BODY_SIZE)
                y += BODY_LEADING
            paragraphs.append(ParagraphTruth(page=number, text=text))
            y += BODY_LEADING
        figure = offset + 1  # one figure caption a page
        caption = _CJK_CAPTION[lang].format(n=figure, topic=chapter)
        y += BODY_LEADING
        page.insert_text((MARGIN_X, y), caption, fontname=_CJK_FONT[lang], fontsize=CAPTION_SIZE)
        captions.append(CaptionTruth(page=number, kind="figure", number=figure, text=caption))
        _page_label(page, _CJK_FONT[lang], cjk_font, _CJK_PAGE_LABEL[lang].format(n=number))
    data = doc.tobytes(garbage=3, deflate=True)
    doc.close()
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return MixedScriptTruth(
        file=Path(path).name,
        doc_id=hashlib.sha256(data).hexdigest(),
        lang=lang,
        num_pages=english_pages + cjk_pages,
        english_pages=list(range(1, english_pages + 1)),
        paragraphs=paragraphs,
        captions=captions,
        page_label=_CJK_PAGE_LABEL[lang],
    )
