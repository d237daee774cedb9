"""Training samples (chat messages that reference pages, never pixels) and mixture specs."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from mmprolong_schemas.base import Model, Record
from mmprolong_schemas.document import DocId, PageNumber
from mmprolong_schemas.qa import Task
from mmprolong_schemas.units import B, K, TokenCount


class TextPart(Model):
    type: Literal["text"] = "text"
    text: str


class PagePart(Model):
    """A page of a pooled PDF, rendered when needed."""

    type: Literal["page"] = "page"
    doc_id: DocId
    page: PageNumber


class ImagePart(Model):
    """An image file (short-context data, benchmark images), relative to a data root."""

    type: Literal["image"] = "image"
    path: str = Field(min_length=1)


Part = Annotated[TextPart | PagePart | ImagePart, Field(discriminator="type")]


class Message(Model):
    role: Literal["system", "user", "assistant"]
    content: list[Part]


class Sample(Record):
    """One training instance. ``messages`` is the prompt; ``target`` is the assistant reply and
    the only text that receives loss (answer-only loss mask)."""

    sample_id: str
    task: Task
    doc_id: DocId | None = Field(default=None, description="None for short-context samples.")
    pages: list[PageNumber] = Field(
        default_factory=list, description="Pages of doc_id shown, in order of appearance."
    )
    messages: list[Message] = Field(min_length=1)
    target: str = Field(min_length=1)
    est_tokens: int = Field(ge=1, description="Estimated tokens of prompt plus target.")
    qa_id: str | None = None
    source: str = Field(default="qasynth", description="Which stage or dataset made the sample.")
    cut_after: PageNumber | None = Field(
        default=None,
        description="The last page the question and target depend on: the sample stays valid "
        "when its document is cut after this page or any later one (a trainer may do so to "
        "fill a row). None: the sample cannot be cut.",
    )

    @model_validator(mode="after")
    def _pages_match_messages(self) -> Sample:
        shown = [
            part
            for message in self.messages
            for part in message.content
            if isinstance(part, PagePart)
        ]
        for part in shown:
            if part.doc_id != self.doc_id:
                raise ValueError(
                    f"a message shows page {part.page} of document {part.doc_id[:12]}, "
                    f"not of the sample's document"
                )
        if [part.page for part in shown] != self.pages:
            raise ValueError(
                f"pages {self.pages} do not match the pages shown in the messages "
                f"{[part.page for part in shown]}"
            )
        if self.cut_after is not None:
            if self.cut_after not in self.pages:
                raise ValueError(f"cut_after page {self.cut_after} is not a page shown")
            increasing = all(a < b for a, b in zip(self.pages, self.pages[1:], strict=False))
            if not increasing or len(self._page_messages()) != 1:
                raise ValueError(
                    "cut_after needs the pages shown in increasing order in one message"
                )
        return self

    def _page_messages(self) -> list[int]:
        return [
            index
            for index, message in enumerate(self.messages)
            if any(isinstance(part, PagePart) for part in message.content)
        ]

    def cut(self, last_page: PageNumber, est_tokens: int) -> Sample:
        """The sample with its document cut after ``last_page``: the later pages, and any
        text between them (such as their page labels), are left out; the text after the last
        page (the question) stays. Cutting is allowed from ``cut_after`` on."""
        if self.cut_after is None:
            raise ValueError(f"sample {self.sample_id} cannot be cut (no cut_after)")
        if not self.cut_after <= last_page < self.pages[-1]:
            raise ValueError(
                f"sample {self.sample_id} can be cut after pages {self.cut_after}-"
                f"{self.pages[-1] - 1}, not after page {last_page}"
            )
        (at,) = self._page_messages()
        content = self.messages[at].content
        shown = [i for i, part in enumerate(content) if isinstance(part, PagePart)]
        keep = shown[self.pages.index(last_page)]
        message = self.messages[at].model_copy(
            update={"content": [*content[: keep + 1], *content[shown[-1] + 1 :]]}
        )
        return self.model_copy(
            update={
                "sample_id": f"{self.sample_id}:{self.pages[0]}-{last_page}",
                "pages": [p for p in self.pages if p <= last_page],
                "messages": [*self.messages[:at], message, *self.messages[at + 1 :]],
                "est_tokens": est_tokens,
            }
        )


class LengthDistribution(StrEnum):
    POOL_NATIVE = "pool-native"
    LONG_BIASED = "long-biased"
    CUSTOM = "custom"

    @property
    def default_doc_pages(self) -> tuple[int, int] | None:
        return {"pool-native": (32, 50), "long-biased": (50, 100)}.get(self.value)


class HistogramBin(Model):
    """Documents whose estimated tokens lie in [low, high) get this relative weight."""

    low: TokenCount = Field(ge=0)
    high: TokenCount
    weight: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> HistogramBin:
        if self.high <= self.low:
            raise ValueError(f"histogram bin [{self.low}, {self.high}) is empty")
        return self


def _default_ratios() -> dict[Task, float]:
    return {Task.EXTRACT_SINGLE: 0.4, Task.EXTRACT_MULTI: 0.4, Task.REASONING: 0.2}


class MixtureSpec(Record):
    """What to draw from synthesized samples: a token budget split by task, by tokens."""

    token_budget: TokenCount = Field(default=5 * B, ge=1)
    task_ratios: dict[Task, float] = Field(
        default_factory=_default_ratios, description="Shares of the long-data tokens per task."
    )
    short_share: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Share of all tokens from short-context data."
    )
    length_distribution: LengthDistribution = LengthDistribution.POOL_NATIVE
    doc_pages: tuple[int, int] | None = Field(
        default=None, description="Page range of source documents; default from the distribution."
    )
    min_tokens: TokenCount = Field(default=32 * K, ge=0)
    max_length: TokenCount = Field(default=128 * K, ge=1)
    histogram: list[HistogramBin] | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> MixtureSpec:
        total = sum(self.task_ratios.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"task ratios add up to {total:g}, not 1")
        if any(share < 0 for share in self.task_ratios.values()):
            raise ValueError("task ratios cannot be negative")
        if Task.SHORT in self.task_ratios:
            raise ValueError("short data is set by short_share, not task_ratios")
        if self.length_distribution is LengthDistribution.CUSTOM and not self.histogram:
            raise ValueError("length_distribution 'custom' needs a histogram")
        if self.length_distribution is not LengthDistribution.CUSTOM and self.histogram:
            raise ValueError("a histogram is only used with length_distribution 'custom'")
        if self.doc_pages is None:
            self.doc_pages = self.length_distribution.default_doc_pages
        if self.doc_pages is not None and not 1 <= self.doc_pages[0] <= self.doc_pages[1]:
            raise ValueError(f"doc_pages {self.doc_pages} is not a range of pages")
        if self.min_tokens > self.max_length:
            raise ValueError(f"min_tokens {self.min_tokens} exceeds max_length {self.max_length}")
        return self

    @property
    def long_tasks(self) -> list[Task]:
        return [task for task in self.task_ratios if self.task_ratios[task] > 0]

    def task_budgets(self) -> dict[Task, int]:
        """Tokens to draw per task (Task.SHORT for short data).

        Whole tokens that add up to the budget exactly: shares are floored, then the leftover
        tokens go to the largest remainders.
        """
        shares = {Task.SHORT: self.short_share} if self.short_share else {}
        long_share = 1.0 - self.short_share
        shares |= {task: long_share * ratio for task, ratio in self.task_ratios.items()}
        exact = {task: self.token_budget * share for task, share in shares.items()}
        budgets = {task: int(value) for task, value in exact.items()}
        leftover = self.token_budget - sum(budgets.values())
        for task in sorted(exact, key=lambda t: budgets[t] - exact[t])[:leftover]:
            budgets[task] += 1
        return budgets

    def task_budget(self, task: Task) -> int:
        return self.task_budgets().get(task, 0)

    @classmethod
    def extraction_reasoning(cls, extraction: int, reasoning: int, **fields: object) -> MixtureSpec:
        """The paper's extraction:reasoning grid, e.g. 8:2; extraction splits evenly."""
        total = extraction + reasoning
        if total <= 0:
            raise ValueError("extraction:reasoning needs a positive total")
        half = extraction / total / 2
        ratios = {
            Task.EXTRACT_SINGLE: half,
            Task.EXTRACT_MULTI: half,
            Task.REASONING: reasoning / total,
        }
        return cls(task_ratios={t: r for t, r in ratios.items() if r > 0}, **fields)
