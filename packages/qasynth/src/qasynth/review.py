"""Human verification: a self-contained HTML page of sampled QA pairs, and its verdicts.

The page embeds each pair's evidence pages as JPEG data URIs next to the question, answer and
evidence text, with three buttons per pair (correct, wrong answer, wrong evidence). Verdicts
are kept in the browser's localStorage while reviewing and downloaded as a JSON file;
``ingest_review`` reads that file and reports the accuracy with a Wilson 95% confidence interval
(the paper's hand check found 97 of 100 pairs fully correct).
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmprolong_schemas import QAPair
from mmprolong_schemas.io import atomic_path
from qasynth.assemble import format_answer
from qasynth.grounding import NOT_CHECKED, grounding_rates
from qasynth.page_images import PageRenderer, data_uri

VERDICTS = ("correct", "wrong-answer", "wrong-evidence")

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>qasynth review {review_id}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
.pair {{ border: 1px solid #ccc; border-radius: 6px; padding: 1em; margin-bottom: 2em; }}
.pages img {{ max-width: 380px; border: 1px solid #999; margin: 4px; }}
.meta {{ color: #555; font-size: 0.9em; }}
button {{ margin-right: 0.5em; padding: 0.4em 1em; }}
button.on {{ background: #2a6; color: white; }}
#bar {{ position: sticky; top: 0; background: white; padding: 0.5em 0;
        border-bottom: 1px solid #ddd; }}
</style></head><body>
<div id="bar"><b>qasynth review {review_id}</b>: {count} pairs.
<span id="done">0</span> judged. <button onclick="download()">Download verdicts JSON</button></div>
<table class="meta"><tr><th>teacher</th><th>task</th><th>grounded</th><th>unverified</th>
<th>not checked</th><th>grounding rate</th></tr>{grounding}</table>
{items}
<script>
const REVIEW = {review_json};
const KEY = "qasynth-review-" + REVIEW.review_id;
const verdicts = JSON.parse(localStorage.getItem(KEY) || "{{}}");
function paint() {{
  document.querySelectorAll("button[data-qa]").forEach(b => {{
    b.classList.toggle("on", verdicts[b.dataset.qa] === b.dataset.verdict);
  }});
  document.getElementById("done").textContent = Object.keys(verdicts).length;
}}
function judge(qa, verdict) {{
  verdicts[qa] = verdict;
  localStorage.setItem(KEY, JSON.stringify(verdicts));
  paint();
}}
function download() {{
  const body = JSON.stringify({{review_id: REVIEW.review_id, qa_ids: REVIEW.qa_ids,
                               verdicts: verdicts}}, null, 1);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([body], {{type: "application/json"}}));
  link.download = "verdicts-" + REVIEW.review_id + ".json";
  link.click();
}}
paint();
</script></body></html>
"""

_ITEM = """<div class="pair" id="{qa_id}">
<div class="meta">#{number} · {task} · document {doc} · segment pages {segment} · evidence
pages {pages} ({sources}) · teacher {teacher} · answer {grounding}</div>
<p><b>Question:</b> {question}</p>
<p><b>Answer</b> ({answer_format}): {answer}</p>
<p><b>Evidence:</b> {evidence}</p>
<div class="pages">{images}</div>
{buttons}
</div>"""


def draw(pairs: Sequence[QAPair], count: int, seed: int = 0) -> list[QAPair]:
    """``count`` pairs drawn without replacement, in a seeded order."""
    rng = random.Random(f"review:{seed}")
    return rng.sample(list(pairs), min(count, len(pairs)))


def write_review(
    pairs: Sequence[QAPair],
    renderer: PageRenderer,
    out: str | Path,
    count: int = 100,
    seed: int = 0,
    dpi: float = 72,
) -> list[QAPair]:
    """Write the review page for ``count`` drawn pairs; returns the drawn pairs."""
    drawn = draw(pairs, count, seed)
    ids = "|".join(p.qa_id for p in drawn)
    review_id = f"{seed}-{len(drawn)}-{hashlib.sha256(ids.encode()).hexdigest()[:8]}"
    items = []
    for number, pair in enumerate(drawn, start=1):
        images = renderer.render(pair.doc_id, pair.evidence_pages, dpi=dpi)
        tags = "".join(
            f'<figure style="display:inline-block"><img src="{data_uri(image, 80)}" '
            f'alt="page {page}"><figcaption>Page {page}</figcaption></figure>'
            for page, image in zip(pair.evidence_pages, images, strict=True)
        )
        buttons = "".join(
            f'<button data-qa="{pair.qa_id}" data-verdict="{v}" '
            f"onclick=\"judge('{pair.qa_id}', '{v}')\">{v}</button>"
            for v in VERDICTS
        )
        items.append(
            _ITEM.format(
                qa_id=html.escape(pair.qa_id),
                number=number,
                task=pair.task.value,
                doc=pair.doc_id[:12],
                segment=pair.segment,
                pages=", ".join(map(str, pair.evidence_pages)),
                sources=", ".join(s.value for s in pair.evidence_sources),
                teacher=html.escape(pair.teacher),
                grounding=pair.grounding or "not checked on the text layer",
                question=html.escape(pair.question),
                answer_format=pair.answer_format.value,
                answer=html.escape(format_answer(pair.answer)),
                evidence=html.escape(pair.evidence_description),
                images=tags,
                buttons=buttons,
            )
        )
    payload = json.dumps({"review_id": review_id, "qa_ids": [p.qa_id for p in drawn]})
    page = _PAGE.format(
        review_id=review_id,
        count=len(drawn),
        grounding=_grounding_rows(pairs),
        items="\n".join(items),
        review_json=payload.replace("</", "<\\/"),
    )
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return drawn


def _grounding_rows(pairs: Sequence[QAPair]) -> str:
    """The grounding rate per teacher and task over all pairs, not only the drawn ones."""
    rows = []
    for teacher, tasks in grounding_rates(pairs).items():
        for task, row in tasks.items():
            rate = row["grounding_rate"]
            cells = [
                html.escape(teacher),
                task,
                *(str(row.get(k, 0)) for k in ("grounded", "unverified", NOT_CHECKED)),
                "-" if rate is None else f"{100 * rate:.1f}%",
            ]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(rows)


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% for z = 1.96)."""
    if total <= 0:
        return (0.0, 1.0)
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class ReviewSummary:
    judged: int
    counts: dict[str, int]
    accuracy: float
    interval: tuple[float, float]
    unjudged: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "judged": self.judged,
            "counts": self.counts,
            "accuracy": round(self.accuracy, 4),
            "ci95": [round(self.interval[0], 4), round(self.interval[1], 4)],
            "unjudged": self.unjudged,
        }


def ingest_review(path: str | Path) -> ReviewSummary:
    """Accuracy (share judged 'correct') of a downloaded verdicts file."""
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
        verdicts = data["verdicts"]
        if not isinstance(verdicts, dict):
            raise TypeError("verdicts is not an object")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{source} is not a qasynth verdicts file ({error})") from None
    unknown = sorted({v for v in verdicts.values() if v not in VERDICTS})
    if unknown:
        raise ValueError(f"{source}: unknown verdicts {unknown}; expected {list(VERDICTS)}")
    counts = Counter(verdicts.values())
    judged = sum(counts.values())
    correct = counts.get("correct", 0)
    drawn = data.get("qa_ids") or list(verdicts)
    return ReviewSummary(
        judged=judged,
        counts={v: counts.get(v, 0) for v in VERDICTS},
        accuracy=correct / judged if judged else 0.0,
        interval=wilson_interval(correct, judged),
        unjudged=len([q for q in drawn if q not in verdicts]),
    )
