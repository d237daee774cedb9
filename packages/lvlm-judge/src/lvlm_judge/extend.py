"""Length extension to 256K / 512K: pad an item with pages of other documents.

This is our padding, a named option (``lvlm-judge extend``); MMLongBench's own 256K/512K items
are VLMEvalKit's MMLongBench_256K/_512K.tsv (lvlm_judge.datasets.load_mmlb_tsv). Negative
documents are drawn at random (seeded per item and target, so results do not depend on the
order items are processed) and placed alternately left and right of the item's own pages, each
as a contiguous block, until the next page would pass the target. Donor pages are deduplicated
by image: a page already in the context (the same file or pool page, e.g. a gold page that
another item's document shares) is never put in twice. The item's own
pages stay in order and intact; their new places are recorded in ``original_positions``.
Tokens are counted like the model under test: the vision formula for every page plus the text
tokenizer for each page's "Document <id>:" label and the question.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePosixPath

from lvlm_judge.context import ContextResolver, TextTokenizer
from lvlm_judge.prompting import page_label
from mmprolong_runtime.errors import InputError
from mmprolong_schemas import EvalItem, ImagePart, PagePart, TextPart, format_tokens
from mmprolong_schemas.sample import Part


def image_key(part: Part) -> str:
    """What makes two pages the same image: the file (normalised path) or the pool page."""
    if isinstance(part, PagePart):
        return f"pool:{part.doc_id}:{part.page}"
    if isinstance(part, ImagePart):
        return "file:" + str(PurePosixPath(part.path.replace("\\", "/")))
    return "text:" + part.text


class ExtensionError(InputError):
    """The donors cannot supply enough pages to reach a target."""


def donor_documents(items: Iterable[EvalItem]) -> dict[str, list[Part]]:
    """Each document's pages as items show them (the longest context seen per document)."""
    documents: dict[str, list[Part]] = {}
    for item in items:
        if item.metric is not None or not item.doc_name:
            continue
        pages: list[Part] = [part for part in item.context if not isinstance(part, TextPart)]
        if len(pages) > len(documents.get(item.doc_name, [])):
            documents[item.doc_name] = pages
    return documents


class Extender:
    def __init__(self, resolver: ContextResolver, text_tokens: TextTokenizer, seed: int = 0):
        self.resolver = resolver
        self.text_tokens = text_tokens
        self.seed = seed

    def page_cost(self, part: Part, position: int) -> int:
        doc_id, _ = page_label(part, position)  # type: ignore[arg-type]
        return self.resolver.tokens(part) + self.text_tokens(f"\n\nDocument {doc_id}: ")

    def item_tokens(self, item: EvalItem) -> int:
        pages = [part for part in item.context if not isinstance(part, TextPart)]
        return sum(self.page_cost(part, i) for i, part in enumerate(pages)) + self.text_tokens(
            item.question
        )

    def extend(self, item: EvalItem, target: int, donors: Mapping[str, Sequence[Part]]) -> EvalItem:
        if item.metric is not None:
            raise ExtensionError(f"{item.item_id}: only document items can be extended")
        total = self.item_tokens(item)
        if total > target:
            raise ExtensionError(
                f"{item.item_id}: already {total} tokens, more than the target {target}"
            )
        rng = random.Random(f"{self.seed}:{item.item_id}:{target}")
        candidates = sorted(doc for doc in donors if doc != item.doc_name)
        rng.shuffle(candidates)
        left: list[Part] = []
        right: list[Part] = []
        on_left = True
        full = False
        seen = {image_key(part) for part in item.context}
        for doc in candidates:
            block: list[Part] = []
            for position, part in enumerate(donors[doc]):
                key = image_key(part)
                if key in seen:
                    continue
                seen.add(key)
                cost = self.page_cost(part, position)
                if total + cost > target:
                    full = True
                    break
                block.append(part)
                total += cost
            if on_left:
                left = block + left
            else:
                right = right + block
            on_left = not on_left
            if full:
                break
        if not full:
            raise ExtensionError(
                f"{item.item_id}: the other {len(candidates)} documents reach only {total} "
                f"tokens, short of the target {target}"
            )
        base_id = item.item_id.rsplit(":", 1)[-1]
        return item.model_copy(
            update={
                "item_id": f"{item.dataset}:{format_tokens(target)}:{base_id}",
                "length": target,
                "context": left + list(item.context) + right,
                "original_positions": [len(left) + i for i in range(len(item.context))],
                "est_tokens": total,
            }
        )

    def extend_all(self, items: Sequence[EvalItem], targets: Iterable[int]) -> list[EvalItem]:
        """Every document item at every target; donors are the items' own documents."""
        donors = donor_documents(items)
        return [self.extend(item, target, donors) for target in targets for item in items]
