"""Sections with page ranges, from the outline where there is one, else from headings.

A section ends on the page before the next section of the same or a higher level when that
section's heading opens its page, and on that same page when body text precedes the heading.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from docpool.layout_fast import HeadingHit
from mmprolong_schemas import BlockLabel, Page, Section
from mmprolong_schemas.document import SectionSource

_BODY = {
    BlockLabel.TEXT,
    BlockLabel.LIST_ITEM,
    BlockLabel.TABLE,
    BlockLabel.CAPTION,
    BlockLabel.FOOTNOTE,
    BlockLabel.FORMULA,
    BlockLabel.PICTURE,
    BlockLabel.SECTION_HEADER,
    BlockLabel.TITLE,
}


@dataclass(frozen=True)
class _Start:
    title: str
    level: int
    page: int
    order: int | None  # the heading block's reading order on its page, when known


def _key(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def _opens_page(start: _Start, pages: Sequence[Page]) -> bool:
    """True when nothing but page furniture precedes the heading on its page."""
    if start.order is None:
        return False
    page = pages[start.page - 1]
    return not any(b.label in _BODY and b.order < start.order for b in page.blocks)


def _ranges(starts: list[_Start], pages: Sequence[Page], source: SectionSource) -> list[Section]:
    sections = []
    num_pages = len(pages)
    for index, start in enumerate(starts):
        end = num_pages
        for following in starts[index + 1 :]:
            if following.level <= start.level:
                end = following.page - 1 if _opens_page(following, pages) else following.page
                break
        sections.append(
            Section(
                title=start.title,
                level=start.level,
                start_page=start.page,
                end_page=max(start.page, min(end, num_pages)),
                source=source,
            )
        )
    return sections


def _find_heading(title: str, page: Page) -> int | None:
    wanted = _key(title)
    if not wanted:
        return None
    for block in sorted(page.blocks, key=lambda b: b.order):
        if block.label in (BlockLabel.PAGE_HEADER, BlockLabel.PAGE_FOOTER):
            continue
        # A key is never longer than its lowercased text: most blocks are ruled out cheaply.
        if len(block.text.lower()) < len(wanted):
            continue
        if _key(block.text) == wanted or (
            block.label in (BlockLabel.SECTION_HEADER, BlockLabel.TITLE)
            and _key(block.text).endswith(wanted)
        ):
            return block.order
    return None


def sections_from_outline(toc: Sequence[Sequence[object]], pages: Sequence[Page]) -> list[Section]:
    """Sections from ``get_toc()`` entries ``[level, title, page]``; entries pointing nowhere
    (page < 1 or past the end) are dropped."""
    starts = []
    for entry in toc:
        level, title, page = entry[0], entry[1], entry[2]
        if not isinstance(level, int) or not isinstance(page, int) or not isinstance(title, str):
            continue
        title = " ".join(title.split())
        if not title or not 1 <= page <= len(pages) or level < 1:
            continue
        starts.append(_Start(title, level, page, _find_heading(title, pages[page - 1])))
    starts.sort(key=lambda s: (s.page, s.order if s.order is not None else -1))
    return _ranges(starts, pages, SectionSource.OUTLINE)


def sections_from_headings(headings: Sequence[HeadingHit], pages: Sequence[Page]) -> list[Section]:
    starts = [_Start(h.text, h.level, h.page, h.order) for h in headings]
    starts.sort(key=lambda s: (s.page, s.order if s.order is not None else -1))
    return _ranges(starts, pages, SectionSource.HEADINGS)
