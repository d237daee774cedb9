"""Operations reports of fictional organisations, with exact ground truth.

Every document has a title page, numbered sections (level 1 starts a new page, level 2 starts
mid-page) spanning several pages each, paragraphs carrying machine-checkable numeric facts,
ruled tables with captions, raster figures with captions, a running header, a running footer
and page numbers. Most documents have bookmarks (an outline); every fifth one (index 2, 7,
12, ...) has none, and every fourth one (index 3, 7, 11, ...) is written in the next
non-English language of ``langs`` (see the planner).

Generation is deterministic: the same arguments give byte-identical files, hence identical
doc_ids.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from pathlib import Path

import pymupdf

from docpool.testing.pdf_writer import (
    BODY_LEADING,
    BODY_SIZE,
    CAPTION_SIZE,
    FOOTER_OFFSET,
    FURNITURE_SIZE,
    H1_SIZE,
    H2_SIZE,
    HEADER_BASELINE,
    MARGIN_X,
    TABLE_SIZE,
    TITLE_SIZE,
    PageWriter,
    figure_png,
    text_width_points,
)
from docpool.testing.planner import DocPlan, plan_document, split_pages
from docpool.testing.truth import (
    GROUND_TRUTH_FILE,
    CaptionTruth,
    CorpusTruth,
    DocTruth,
    Fact,
    PictureTruth,
    SectionTruth,
    TableTruth,
)
from docpool.testing.vocabulary import (
    FIGURE_TOPICS,
    FILLER,
    H1,
    H2,
    METRICS,
    ORGS,
    PEOPLE,
    SITES,
    SUBJECT,
    TABLE_METRICS,
    TABLE_TOPICS,
    WORDS,
    YEARS,
    Metric,
    format_number,
)
from mmprolong_schemas.io import atomic_path

# A fact still to state: (site, metric, year or 0 for metrics without a year).
PendingFact = tuple[str, Metric, int]


class ReportComposer:
    """Writes one planned report block by block. Each block is placed whole inside its
    section's page budget; the truth lists grow as blocks land. The draws from ``rng`` keep
    a fixed order, which is what makes the output byte-identical for a seed."""

    def __init__(self, plan: DocPlan, seed: int) -> None:
        self.plan = plan
        self.rng = random.Random(f"doc-{seed}-{plan.index}")
        self.lang = plan.lang
        self.words = WORDS[self.lang]
        org = self.rng.choice(ORGS)
        self.org = org
        self.author = self.rng.choice(PEOPLE)
        year = self.rng.choice(YEARS)
        self.title = f"{org}: {self.words['report']} {year}"
        self.running_header = f"{org} - {self.words['report']} {year}"
        self.running_footer = self.words["footer"].format(org=org)
        self.doc = pymupdf.open()
        self.writer = PageWriter(
            self.doc,
            plan.size[0],
            plan.size[1],
            pymupdf.Font("helv"),
            pymupdf.Font("hebo"),
            pymupdf.Font("heit"),
            furniture=self.furniture,
        )
        self.facts: list[Fact] = []
        self.tables: list[TableTruth] = []
        self.captions: list[CaptionTruth] = []
        self.pictures: list[PictureTruth] = []
        self.sections: list[SectionTruth] = []
        self.toc: list[list[object]] = []
        self.sites: list[str] = []
        self.fact_queue: list[PendingFact] = []
        self.figure_xref = 0  # the figure image, written once and then reused by reference
        # Indices of the sections still open, by level; every placed block extends them.
        self.open_sections: dict[int, int] = {}
        self.page_limit = 1  # last page of the current section's budget

    def compose(self) -> tuple[bytes, DocTruth]:
        """The PDF's bytes and its truth (``file`` left empty for the caller to name)."""
        self.title_page()
        # Facts to state, unique per (subject, attribute), in a shuffled order.
        self.sites = self.rng.sample(SITES, 6)
        self.fact_queue = [
            (site, metric, fact_year)
            for site in self.sites
            for metric in METRICS
            for fact_year in (YEARS if "{year}" in metric.attribute else (0,))
        ]
        self.rng.shuffle(self.fact_queue)
        self.body()
        self.writer.finish()
        return self.save()

    def furniture(self, page_number: int) -> None:
        """Running header (with a rule under it), footer and page number."""
        writer, width = self.writer, self.plan.size[0]
        writer.line(MARGIN_X, HEADER_BASELINE, self.running_header, writer.regular, FURNITURE_SIZE)
        writer.rule(MARGIN_X, HEADER_BASELINE + 5, width - MARGIN_X, HEADER_BASELINE + 5, 0.5, 0.4)
        baseline = self.plan.size[1] - FOOTER_OFFSET
        writer.line(MARGIN_X, baseline, self.running_footer, writer.regular, FURNITURE_SIZE)
        label = self.words["page"].format(n=page_number)
        label_width = text_width_points(label, writer.regular, FURNITURE_SIZE)
        writer.line(width - MARGIN_X - label_width, baseline, label, writer.regular, FURNITURE_SIZE)

    def title_page(self) -> None:
        writer = self.writer
        writer.new_page()
        y = 220.0
        for line in writer.wrap(self.title, writer.bold, TITLE_SIZE):
            writer.line(MARGIN_X, y, line, writer.bold, TITLE_SIZE)
            y += TITLE_SIZE * 1.25
        y += 20
        for line in writer.wrap(self.words["summary"].format(org=self.org), writer.regular, 13):
            writer.line(MARGIN_X, y, line, writer.regular, 13)
            y += 17
        prepared = self.words["prepared"].format(author=self.author)
        writer.line(MARGIN_X, y + 30, prepared, writer.italic, 12)

    def body(self) -> None:
        """Numbered sections, each filling its page budget with a random mix of blocks."""
        rng, writer, lang = self.rng, self.writer, self.lang
        body_pages = self.plan.num_pages - 1
        n_sections = max(2, min(len(H1[lang]), round(body_pages / rng.uniform(3.5, 6.0))))
        budgets = split_pages(body_pages, n_sections, rng)
        h1_titles = rng.sample(H1[lang], n_sections)
        for number, (budget, h1) in enumerate(zip(budgets, h1_titles, strict=True), start=1):
            writer.new_page()
            self.page_limit = writer.page_number + budget - 1
            self.heading(f"{number} {h1}", 1)
            sub_titles = rng.sample(H2[lang], len(H2[lang]))
            sub_number = 0
            filling = True
            blocks_since_heading = 0
            while filling:
                choice = rng.random()
                if blocks_since_heading >= 7 and sub_titles and choice < 0.15:
                    sub_number += 1
                    if self.heading(f"{number}.{sub_number} {sub_titles.pop()}", 2):
                        blocks_since_heading = 0
                        continue
                    filling = False
                elif choice < 0.08:
                    filling = self.table()
                elif choice < 0.14:
                    filling = self.figure()
                else:
                    filling = self.paragraph()
                blocks_since_heading += 1
            # Pad the budget with blank pages only if a block could never fit (does not happen
            # with these block sizes, but keeps the page count exact whatever the sizes).
            while writer.page_number < self.page_limit:
                writer.new_page()

    def place(self, height: float) -> bool:
        """Make room for a block of ``height`` points, starting a page inside the budget."""
        writer = self.writer
        if not writer.fits(height):
            if writer.page_number >= self.page_limit:
                return False
            writer.new_page()
        for index in self.open_sections.values():
            self.sections[index].end_page = writer.page_number
        return True

    def fact_sentence(self) -> tuple[str, Fact, PendingFact] | None:
        if not self.fact_queue:
            return None
        rng, lang = self.rng, self.lang
        item = self.fact_queue.pop()
        site, metric, fact_year = item
        subject = SUBJECT[lang].format(site=site)
        value: int | float | str
        if metric.kind == "int":
            value = rng.randint(int(metric.low), int(metric.high))
            text = format_number(value, lang)
        elif metric.kind == "float":
            value = round(rng.uniform(metric.low, metric.high), 1)
            text = format_number(value, lang, 1)
        elif metric.kind == "year":
            value = rng.randint(int(metric.low), int(metric.high))
            text = str(value)
        else:
            value = rng.choice(PEOPLE)
            text = value
        sentence = metric.templates[lang].format(subject=subject, value=text, year=fact_year)
        sentence = sentence[0].upper() + sentence[1:]
        fact = Fact(
            page=1,
            sentence=sentence,
            subject=SUBJECT["en"].format(site=site),
            attribute=metric.attribute.format(year=fact_year),
            value=value,
            value_text=text,
            unit=metric.unit,
        )
        return sentence, fact, item

    def paragraph(self) -> bool:
        rng, writer = self.rng, self.writer
        sentences = rng.sample(FILLER[self.lang], rng.randint(2, 4))
        made = [m for m in (self.fact_sentence() for _ in range(rng.choice((0, 1, 1, 2)))) if m]
        for sentence, _, _ in made:
            sentences.insert(rng.randint(0, len(sentences)), sentence)
        lines = writer.wrap(" ".join(sentences), writer.regular, BODY_SIZE)
        if not self.place(len(lines) * BODY_LEADING + 8):
            self.fact_queue.extend(item for _, _, item in made)  # not printed: still to state
            return False
        for line in lines:
            writer.line(MARGIN_X, writer.y + BODY_SIZE, line, writer.regular, BODY_SIZE)
            writer.y += BODY_LEADING
        writer.y += 8
        page = writer.page_number
        self.facts.extend(fact.model_copy(update={"page": page}) for _, fact, _ in made)
        return True

    def table(self) -> bool:
        rng, writer, lang, words = self.rng, self.writer, self.lang, self.words
        metric_index = rng.randrange(len(TABLE_METRICS[lang]))
        metric = TABLE_METRICS[lang][metric_index]
        number = len(self.tables) + 1
        caption = words["table"].format(n=number) + TABLE_TOPICS[lang].format(metric=metric)
        years = sorted(rng.sample(YEARS, 3))
        rows = [[words["site"], *(str(y) for y in years)]]
        for site in rng.sample(self.sites, rng.randint(3, 5)):
            decimals = 1 if "MWh" in metric else 0
            high = 900 if decimals else (9000 if metric_index == 0 else 400)
            rows.append(
                [site]
                + [
                    format_number(round(rng.uniform(10, high), decimals), lang, decimals)
                    for _ in years
                ]
            )
        row_height = 16.0
        height = 22 + row_height * len(rows) + 12
        if not self.place(height):
            return False
        assert writer.page is not None
        writer.line(MARGIN_X, writer.y + CAPTION_SIZE, caption, writer.italic, CAPTION_SIZE)
        top = writer.y + 16
        col_width = min(110.0, writer.text_width / len(rows[0]))
        for r, row in enumerate(rows):
            for c, cell in enumerate(row):
                x0 = MARGIN_X + c * col_width
                y0 = top + r * row_height
                writer.rule(x0, y0, x0 + col_width, y0 + row_height, 0, 0.6)
                writer.line(x0 + 4, y0 + 11.5, cell, writer.regular, TABLE_SIZE)
        writer.y = top + row_height * len(rows) + 12
        page = writer.page_number
        self.tables.append(TableTruth(page=page, caption=caption, rows=rows))
        self.captions.append(CaptionTruth(page=page, kind="table", number=number, text=caption))
        return True

    def figure(self) -> bool:
        rng, writer = self.rng, self.writer
        number = len([c for c in self.captions if c.kind == "figure"]) + 1
        caption = self.words["figure"].format(n=number) + FIGURE_TOPICS[self.lang].format(
            site=rng.choice(self.sites)
        )
        height = 150 + 26
        if not self.place(height):
            return False
        assert writer.page is not None
        rect = pymupdf.Rect(MARGIN_X, writer.y, MARGIN_X + 266, writer.y + 150)
        if self.figure_xref:
            writer.page.insert_image(rect, xref=self.figure_xref)
        else:
            self.figure_xref = writer.page.insert_image(rect, stream=figure_png(rng))
        writer.rule(rect.x0, rect.y0, rect.x1, rect.y1, 0.3, 0.5)
        writer.line(MARGIN_X, rect.y1 + 14, caption, writer.italic, CAPTION_SIZE)
        writer.y = rect.y1 + 26
        page = writer.page_number
        self.pictures.append(PictureTruth(page=page, bbox=tuple(rect)))  # type: ignore[arg-type]
        self.captions.append(CaptionTruth(page=page, kind="figure", number=number, text=caption))
        return True

    def heading(self, text: str, level: int) -> bool:
        writer = self.writer
        size = H1_SIZE if level == 1 else H2_SIZE
        for open_level in [lvl for lvl in self.open_sections if lvl >= level]:
            del self.open_sections[open_level]
        # A subsection heading keeps at least three lines of its text on its page.
        if not self.place(size + 14 + 3 * BODY_LEADING):
            return False
        page = writer.page_number
        self.sections.append(SectionTruth(title=text, level=level, start_page=page, end_page=page))
        self.open_sections[level] = len(self.sections) - 1
        writer.y += 4
        writer.line(MARGIN_X, writer.y + size, text, writer.bold, size)
        writer.y += size + 10
        self.toc.append([level, text, writer.page_number])
        return True

    def save(self) -> tuple[bytes, DocTruth]:
        plan, doc = self.plan, self.doc
        if plan.has_outline:
            doc.set_toc(self.toc)
        doc.set_metadata(
            {
                "title": self.title,
                "author": self.author,
                "producer": "docpool corpus generator",
                "creator": "docpool",
                "creationDate": "D:20240101000000Z",
                "modDate": "D:20240101000000Z",
                "subject": "",
                "keywords": "",
            }
        )
        data = doc.tobytes(garbage=3, deflate=True, no_new_id=True)
        doc.close()
        truth = DocTruth(
            file="",
            doc_id=hashlib.sha256(data).hexdigest(),
            num_pages=plan.num_pages,
            page_width=plan.size[0],
            page_height=plan.size[1],
            lang=self.lang,
            has_outline=plan.has_outline,
            title=self.title,
            author=self.author,
            sections=self.sections,
            running_header=self.running_header,
            running_footer=self.running_footer,
            page_number_format=self.words["page"],
            facts=self.facts,
            tables=self.tables,
            captions=self.captions,
            pictures=self.pictures,
        )
        return data, truth


def make_corpus(
    out_dir: Path,
    n_docs: int = 8,
    seed: int = 0,
    pages: tuple[int, int] = (20, 60),
    langs: Sequence[str] = ("en", "fr", "de"),
) -> CorpusTruth:
    """Write ``n_docs`` PDFs and ``ground_truth.json`` into ``out_dir``; return the truth.

    ``pages`` bounds each document's page count (title page included; at least 5). Use
    ``pages=(32, 50)`` for the recipe's pool-native length range. Deterministic in ``seed``.
    """
    low, high = pages
    if not 5 <= low <= high:
        raise ValueError(f"pages {pages} must be a range with at least 5 pages")
    unknown = [lang for lang in langs if lang not in WORDS]
    if unknown or not langs:
        raise ValueError(f"langs {tuple(langs)} must be drawn from {sorted(WORDS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    documents = []
    for index in range(n_docs):
        plan = plan_document(index, seed, pages, langs)
        data, truth = ReportComposer(plan, seed).compose()
        name = f"report-{seed}-{index:03d}-{plan.lang}.pdf"
        with atomic_path(out / name) as tmp:
            tmp.write_bytes(data)
            tmp.chmod(0o644)
        documents.append(truth.model_copy(update={"file": name}))
    corpus = CorpusTruth(seed=seed, documents=documents)
    with atomic_path(out / GROUND_TRUTH_FILE) as tmp:
        tmp.write_text(corpus.model_dump_json(indent=1), encoding="utf-8")
        tmp.chmod(0o644)
    return corpus
