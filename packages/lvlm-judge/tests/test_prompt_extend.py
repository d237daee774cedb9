"""Prompts in the v1.1 layout, and length extension to 256K / 512K."""

from __future__ import annotations

import pytest

from lvlm_judge.context import ContextResolver
from lvlm_judge.extend import Extender, ExtensionError, donor_documents
from lvlm_judge.prompting import build_prompt, page_label
from lvlm_judge.testing import InMemoryPool, make_document
from mmprolong_schemas import EvalItem, ImagePart, PagePart, TextPart
from mmprolong_schemas.units import K


def doc_item(pages: list[ImagePart | PagePart], doc_name: str = "report2024-annul-x") -> EvalItem:
    return EvalItem(
        item_id="mmlongdoc:8K:7", dataset="mmlongdoc", length=8 * K, context=pages,
        question="How many rows?", answer=3, answer_format="Integer", doc_name=doc_name,
    )  # fmt: skip


def test_doc_prompt_layout() -> None:
    item = doc_item([ImagePart(path="img/report2024-annul-x/page3.png"),
                     ImagePart(path="img/report2024-annul-x/page4.png")])  # fmt: skip
    prompt = build_prompt(item)
    text = prompt.text()
    assert "Document report2024-annu: <image>\n\nDocument report2024-annu: <image>" in text
    assert text.endswith("Question: Question about document report2024-annu: How many rows?")
    assert prompt.question == "Question about document report2024-annu: How many rows?"
    assert "Not answerable." in text
    assert prompt.prefill == "Answer:"
    assert prompt.images == item.context
    indexed = build_prompt(item, "lvlm-judge-v1-page-index").text()
    assert "Document report2024-annu (page 4): <image>" in indexed
    with pytest.raises(ValueError, match="unknown prompt format"):
        build_prompt(item, "v2")
    with pytest.raises(ValueError, match="MMLongBench's own wording, read from your checkout"):
        build_prompt(item, "mmlb-v1.1")


def test_page_label_of_pool_pages_and_odd_names() -> None:
    assert page_label(PagePart(doc_id="a" * 64, page=9), 0) == ("a" * 15, 9)
    assert page_label(ImagePart(path="x/doc/slide.jpg"), 4) == ("doc", 5)


def test_niah_prompt_puts_question_images_in_the_question() -> None:
    item = EvalItem(
        item_id="n:8K:1", dataset="mm-niah-retrieval-image", length=8 * K,
        context=[TextPart(text="hay "), ImagePart(path="h.png"), TextPart(text=" stack"),
                 ImagePart(path="a.png"), ImagePart(path="b.png")],
        question="Which one?\nA. <image>\nB. <image>", answer=0, metric="mc_acc",
        choices=["a.png", "b.png"],
    )  # fmt: skip
    prompt = build_prompt(item)
    assert prompt.text().endswith(
        "hay <image> stack\n\nQuestion: Which one?\nA. <image>\nB. <image>"
    )
    assert [p.path for p in prompt.images] == ["h.png", "a.png", "b.png"]  # type: ignore[union-attr]


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture
def pool_items() -> tuple[ContextResolver, list[EvalItem]]:
    documents = [make_document(f"doc{i}", 20 + i) for i in range(14)]
    pool = InMemoryPool(documents)
    items = [
        doc_item(
            [PagePart(doc_id=d.doc_id, page=p.number) for p in d.pages], doc_name=d.doc_id
        ).model_copy(update={"item_id": f"heldout:128K:{i}"})
        for i, d in enumerate(documents)
    ]
    return ContextResolver(pool=pool), items


@pytest.mark.parametrize("target", [256 * K, 512 * K])
def test_extension_reaches_the_target_and_keeps_pages(
    pool_items: tuple[ContextResolver, list[EvalItem]], target: int
) -> None:
    resolver, items = pool_items
    extender = Extender(resolver, words, seed=3)
    donors = donor_documents(items)
    item = items[0]
    extended = extender.extend(item, target, donors)
    page_cost = 2510 + words("\n\nDocument x: ")
    assert extended.est_tokens is not None
    assert target - page_cost < extended.est_tokens <= target
    assert extended.est_tokens == extender.item_tokens(extended)
    positions = extended.original_positions
    assert positions is not None
    assert [extended.context[i] for i in positions] == item.context
    assert positions == list(range(positions[0], positions[0] + len(item.context)))
    assert positions[0] > 0 and positions[-1] < len(extended.context) - 1  # padded both sides
    assert extended.item_id == f"mmlongdoc:{target // K}K:0"
    assert extended.length == target
    padding = [p for p in extended.context if p not in item.context]
    assert all(isinstance(p, PagePart) and p.doc_id != item.doc_name for p in padding)
    # Seeded: the same again, another seed differs.
    assert extender.extend(item, target, donors) == extended
    assert Extender(resolver, words, seed=4).extend(item, target, donors) != extended


def test_extension_without_enough_donors_is_an_error(
    pool_items: tuple[ContextResolver, list[EvalItem]],
) -> None:
    resolver, items = pool_items
    with pytest.raises(ExtensionError, match="short of the target"):
        Extender(resolver, words).extend(items[0], 2048 * K, donor_documents(items[:3]))
    with pytest.raises(ExtensionError, match="more than the target"):
        Extender(resolver, words).extend(items[0], 8 * K, donor_documents(items))
