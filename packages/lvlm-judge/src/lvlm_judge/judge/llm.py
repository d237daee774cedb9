"""The v1.1 LLM judge: cached, optionally pre-judged by rules, concurrent, counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from lvlm_judge.judge.cache import CachedVerdict, JudgeCache, cache_key
from lvlm_judge.judge.parse import JudgeVerdict, parse_list_verdict, parse_single_verdict
from lvlm_judge.judge.prompts import OUR_JUDGE, JudgePrompts
from lvlm_judge.rules import is_certain_match, list_items
from mmprolong_runtime.chat_client import ChatClient, ChatError, ClientSettings
from mmprolong_schemas import AnswerFormat, Judgement, JudgeSource


def _stored(verdict: JudgeVerdict, reply: str, tokens: int) -> CachedVerdict:
    rationale = verdict.rationale if verdict.parsed else f"unparsed reply: {verdict.rationale}"
    return CachedVerdict(verdict.score, rationale, reply, tokens)


@dataclass(frozen=True)
class JudgeRequest:
    item_id: str
    question: str
    """The question as the model saw it (with the prompt's document prefix)."""
    reference: object
    answer_format: AnswerFormat
    prediction: str


@dataclass
class JudgeStats:
    """What judging cost: calls made, answered from cache, skipped by the pre-judge."""

    made: int = 0
    cached: int = 0
    skipped: int = 0
    failed: int = 0
    unparsed: int = 0
    """Replies that held no score MMLongBench's parsing can use (scored 0, as there)."""
    out_of_range: int = 0
    """Scores outside [0, 1], kept as MMLongBench keeps them."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.made + self.cached + self.skipped + self.failed

    def as_dict(self) -> dict[str, int]:
        return {
            "made": self.made, "cached": self.cached, "skipped": self.skipped,
            "failed": self.failed, "unparsed": self.unparsed,
            "out_of_range": self.out_of_range, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }  # fmt: skip


def reference_text(reference: object, answer_format: AnswerFormat) -> str:
    """The reference as the judge sees it: the answer as released (MMLongBench formats the
    released string into the prompt); a list made here becomes a JSON string."""
    if isinstance(reference, str):
        return reference
    if answer_format is AnswerFormat.LIST:
        return json.dumps(list_items(reference), ensure_ascii=False)
    return str(reference)


class LLMJudge:
    """Judge predictions with an OpenAI-compatible model. ``prompts`` are ours (greedy, room
    for a rationale) or MMLongBench's read from its checkout (its max_tokens, no temperature
    sent). A call that fails is retried by the client, then counted in ``stats.failed`` and
    answered None."""

    def __init__(
        self,
        settings: ClientSettings,
        model: str,
        *,
        cache: JudgeCache | None = None,
        pre_judge: bool = True,
        prompts: JudgePrompts = OUR_JUDGE,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.settings = settings
        self.model = model
        self.cache = cache
        self.pre_judge = pre_judge
        self.prompts = prompts
        self.transport = transport
        self.stats = JudgeStats()

    @property
    def max_tokens(self) -> int:
        return self.prompts.max_tokens

    def _judgement(self, request: JudgeRequest, score: float, source: JudgeSource,
                   rationale: str, tokens: int = 0) -> Judgement:  # fmt: skip
        if not 0.0 <= score <= 1.0:
            self.stats.out_of_range += 1
        return Judgement(
            item_id=request.item_id,
            judge="llm",
            score=score,
            source=source,
            parsed_answer=request.prediction,
            rationale=rationale,
            judge_model=self.model,
            prompt_version=self.prompts.version,
            judge_tokens=tokens,
        )

    def _prompt(self, request: JudgeRequest, reference: str) -> str:
        build = (
            self.prompts.list_prompt
            if request.answer_format is AnswerFormat.LIST
            else self.prompts.single_prompt
        )
        return build(request.question, reference, request.prediction)

    def _verdict(self, request: JudgeRequest, reply: str) -> JudgeVerdict:
        if request.answer_format is AnswerFormat.LIST:
            return parse_list_verdict(reply, len(list_items(request.reference)))
        return parse_single_verdict(reply)

    async def _call(
        self, client: ChatClient, request: JudgeRequest, reference: str
    ) -> CachedVerdict:
        body: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "user", "content": self._prompt(request, reference)}],
            "max_tokens": self.prompts.max_tokens,
        }
        if self.prompts.temperature is not None:
            body["temperature"] = self.prompts.temperature
        reply = await client.post(body)
        self.stats.made += 1
        self.stats.prompt_tokens += reply.prompt_tokens
        self.stats.completion_tokens += reply.completion_tokens
        verdict = self._verdict(request, reply.text)
        self.stats.unparsed += not verdict.parsed
        return _stored(verdict, reply.text, reply.prompt_tokens + reply.completion_tokens)

    async def judge_async(
        self,
        requests: Sequence[JudgeRequest],
        on_done: Callable[[int], None] | None = None,
    ) -> list[Judgement | None]:
        """One Judgement per request (None where the judge server failed for good);
        ``on_done(n)`` is told each time n more requests are settled."""
        notify = on_done or (lambda count: None)
        results: list[Judgement | None] = [None] * len(requests)
        pending: dict[str, list[int]] = {}
        references: dict[str, str] = {}
        for index, request in enumerate(requests):
            reference = reference_text(request.reference, request.answer_format)
            if self.pre_judge and is_certain_match(
                request.reference, request.prediction, request.answer_format
            ):
                self.stats.skipped += 1
                results[index] = self._judgement(
                    request, 1.0, JudgeSource.PRE_JUDGE, "rule pre-judge: exact match"
                )
                notify(1)
                continue
            key = cache_key(
                self.model, self.prompts.version, request.question, reference, request.prediction
            )
            cached = self.cache.get(key) if self.cache else None
            if cached is not None:
                # the stored reply is read again, so a verdict cached under older parsing
                # scores as the reply reads now
                verdict = self._verdict(request, cached.reply)
                cached = _stored(verdict, cached.reply, cached.tokens)
                self.stats.cached += 1
                results[index] = self._judgement(
                    request, cached.score, JudgeSource.CACHE, cached.rationale
                )
                notify(1)
                continue
            pending.setdefault(key, []).append(index)
            references[key] = reference
        if not pending:
            return results
        async with ChatClient(self.settings, transport=self.transport) as client:

            async def run(key: str, indices: list[int]) -> None:
                first = requests[indices[0]]
                try:
                    verdict = await self._call(client, first, references[key])
                except ChatError as error:
                    self.stats.failed += len(indices)
                    self.stats.errors.append(f"{first.item_id}: {error}")
                    notify(len(indices))
                    return
                if self.cache is not None:
                    self.cache.put(key, verdict)
                results[indices[0]] = self._judgement(
                    first, verdict.score, JudgeSource.LLM, verdict.rationale, verdict.tokens
                )
                for index in indices[1:]:
                    self.stats.cached += 1
                    results[index] = self._judgement(
                        requests[index], verdict.score, JudgeSource.CACHE, verdict.rationale
                    )
                notify(len(indices))

            await asyncio.gather(*(run(key, indices) for key, indices in pending.items()))
        return results

    def judge(
        self,
        requests: Sequence[JudgeRequest],
        on_done: Callable[[int], None] | None = None,
    ) -> list[Judgement | None]:
        return asyncio.run(self.judge_async(requests, on_done))
