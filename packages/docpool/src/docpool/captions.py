"""Numbered figure and table captions, in en, fr, de, es ("Figura", "Tabla", "Cuadro",
"Gráfico"), zh ("图 1", "表 1") and ja ("図 1", "表 1", "第2図"), with full-width digits and
colons too.

The layout labels a line matching ``CAPTION`` a caption; ``FIGURE_CAPTION`` tells a figure's
from a table's, for readers that need to know a page holds a figure even when it is drawn as
vector paths and so leaves no picture block (qasynth's grounding)."""

from __future__ import annotations

import re

_FIGURE_WORDS = r"fig(ure|ura)?\.?|abbildung|abb\.|gr[aá]fico|chart|exhibit"
_TABLE_WORDS = r"table|tab\.|tableau|tabelle|tabla|cuadro"
_FIGURE_CJK = "图|圖|図"
_TABLE_CJK = "表"


def _numbered(words: str, cjk: str) -> re.Pattern[str]:
    """A caption word then a number ("Figure 3:", "Tabla 5 -"), or a CJK character with a
    number on either side ("図 3", "第2図")."""
    return re.compile(
        rf"^\s*({words})\s*[0-9]+[A-Za-z]?(\.[0-9]+)?\s*[:.\-–—]?(\s|$)"
        rf"|^\s*(({cjk})\s*[0-9０-９]+(\s*[.\-－][0-9０-９]+)?|第\s*[0-9０-９]+\s*({cjk}))"
        r"\s*([:：.．、]|\s|$)",
        re.IGNORECASE,
    )


CAPTION = _numbered(f"{_FIGURE_WORDS}|{_TABLE_WORDS}", f"{_FIGURE_CJK}|{_TABLE_CJK}")
FIGURE_CAPTION = _numbered(_FIGURE_WORDS, _FIGURE_CJK)


def is_figure_caption(text: str) -> bool:
    """Whether ``text`` opens with a numbered figure caption (not a table's)."""
    return FIGURE_CAPTION.match(text) is not None
