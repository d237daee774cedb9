"""VTCBench-Wild's Memory split, scored by an LLM judge as VTCBench does.

VTCBench (github.com/Moenupa/VTCBench, examples/llm_judge.py) judges each Memory answer with
one chat request: the problem, the gold answers joined by ", " and the model's final answer
(the text after a closing ``</think>``) are formatted into a grading prompt; the judge model
(gpt-4o-mini, temperature 0, max_tokens 10) replies with one letter, A (correct), B
(incorrect) or C (invalid). A reply that is not exactly one of the three letters once
stripped is asked again, up to three attempts in all, and then counts as C. The split's score
is the share of A verdicts.

This package ships none of VTCBench's wording. With ``--vtc-source DIR`` (the user's checkout
of VTCBench) the prompt, the judge model and its request parameters are read from
examples/llm_judge.py with ``ast`` (nothing there is imported or run) and the score is
labelled as VTCBench's protocol; otherwise our own prompt asks the same three-letter question
and the score is labelled as ours. The per-split instructions given to the answering model
are read from the same checkout (examples/run_wild.py, ``_select_instruction_prompt``).

One difference on purpose: a judge call that fails for good (the server is down after the
client's retries) is not a verdict. Upstream scores it C; here it is counted as failed, left
out of the score, not cached, and asked again by a rerun.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from lvlm_judge.judge.cache import CachedVerdict, JudgeCache, cache_key
from lvlm_judge.judge.llm import JudgeStats
from lvlm_judge.mmlb_source import _string
from mmprolong_runtime.chat_client import ChatClient, ChatError, ClientSettings
from mmprolong_runtime.errors import InputError

VERDICTS = ("A", "B", "C")
"""Correct, incorrect, invalid: the letters VTCBench's judge answers with."""
CORRECT = "A"
INVALID = "C"
PLACEHOLDERS = ("question", "gold_answer", "llm_response")
"""The fields VTCBench formats into its judge prompt (and our wording uses the same)."""

VTC_PROTOCOL = "vtcbench-llm-judge"
OUR_VERSION = "lvlm-judge-vtc-memory-1"

OUR_MEMORY_PROMPT = """\
You check one answer to a question about a long conversation. Decide whether the candidate's \
final answer means the same as the reference answer.

- Judge only the final answer, not any reasoning before it. The reference answer is right; do \
not re-solve the question.
- Different wording, paraphrase, letter case or a correct unit added to a unitless reference \
still count as the same answer. When the reference lists several items, all of them must be \
given.
- An answer that is cut off, repeats itself without end, is off topic, or declines to answer \
is invalid.

Reply with one capital letter and nothing else: A if the answer is correct, B if it is \
incorrect, C if it is invalid.

Question: {question}
Reference answer: {gold_answer}
Candidate's answer: {llm_response}
Verdict:"""


class VtcSourceError(InputError):
    """The checkout does not hold what VTCBench's layout puts there."""


@dataclass(frozen=True)
class MemoryJudgePrompt:
    """The judge's request: a template with PLACEHOLDERS and its parameters."""

    template: str
    version: str
    """Part of every cache key; names the wording (ours, or VTCBench's with a digest)."""
    model: str | None
    """The judge model the protocol names (VTCBench: gpt-4o-mini); None for ours."""
    max_tokens: int
    temperature: float
    attempts: int
    """How often an answer that is no verdict letter is asked again, in all."""
    protocol: str
    source: str = "lvlm-judge"

    def prompt(self, question: str, gold_answer: str, llm_response: str) -> str:
        return self.template.format(
            question=question, gold_answer=gold_answer, llm_response=llm_response
        )


_THOUGHT_THEN_ANSWER = re.compile(r"<think>(.*?)</think>(.*)", re.DOTALL)
_AFTER_THOUGHT = re.compile(r"</think>(.*)", re.DOTALL)

OUR_MEMORY_JUDGE = MemoryJudgePrompt(
    OUR_MEMORY_PROMPT, version=OUR_VERSION, model=None, max_tokens=10, temperature=0.0,
    attempts=3, protocol=OUR_VERSION,
)  # fmt: skip


def final_answer(response: str) -> str:
    """What the judge sees of a response: the text after a thought block (or after the first
    ``</think>``), stripped; restated from VTCBench's examples/llm_judge.py
    ``extract_final_answer``."""
    for pattern in (_THOUGHT_THEN_ANSWER, _AFTER_THOUGHT):
        match = pattern.search(response)
        if match:
            return match.group(match.lastindex or 0).strip()
    return response.strip()


def gold_text(answers: Sequence[object]) -> str:
    """The gold answers as the judge sees them, joined by ", " (VTCBench's
    ``process_single_entry``)."""
    return ", ".join(str(answer) for answer in answers)


def parse_verdict(reply: str) -> str | None:
    """The verdict letter of a judge reply, or None when the stripped reply is not exactly one
    of A, B, C (VTCBench's ``evaluate_answer_with_gpt`` then asks again)."""
    text = reply.strip()
    return text if text in VERDICTS else None


# Reading VTCBench's wording from the user's checkout.

JUDGE_FILE = "examples/llm_judge.py"
JUDGE_FUNCTION = "evaluate_answer_with_gpt"
INSTRUCTIONS_FILE = "examples/run_wild.py"
INSTRUCTIONS_FUNCTION = "_select_instruction_prompt"


def _module(path: Path) -> ast.Module:
    if not path.is_file():
        raise VtcSourceError(f"{path}: not found; --vtc-source must be a VTCBench checkout")
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as error:
        raise VtcSourceError(f"{path}: cannot be parsed ({error.msg})") from None


def _function(module: ast.Module, name: str, path: Path) -> ast.FunctionDef:
    for node in ast.walk(module):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise VtcSourceError(f"{path}: no function {name}")


def _constant(node: ast.AST) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def read_memory_judge(checkout: str | Path) -> MemoryJudgePrompt:
    """VTCBench's Memory judge from ``checkout``/examples/llm_judge.py: in
    ``evaluate_answer_with_gpt``, the module constant formatted into ``prompt``
    (``NAME.format(question=..., gold_answer=..., llm_response=...)``), the ``model``,
    ``temperature`` and ``max_tokens`` of the request, and the ``max_retries`` default."""
    path = Path(checkout) / JUDGE_FILE
    module = _module(path)
    function = _function(module, JUDGE_FUNCTION, path)
    template_name: str | None = None
    request: dict[str, object] = {}
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format"
            and isinstance(node.func.value, ast.Name)
        ):
            keywords = tuple(sorted(k.arg for k in node.keywords if k.arg))
            if keywords != tuple(sorted(PLACEHOLDERS)):
                raise VtcSourceError(
                    f"{path}: {JUDGE_FUNCTION} formats its prompt with {list(keywords)}, not "
                    f"{list(PLACEHOLDERS)}"
                )
            template_name = node.func.value.id
        if isinstance(node, ast.keyword) and node.arg in ("model", "temperature", "max_tokens"):
            request[node.arg] = _constant(node.value)
    defaults = function.args.defaults
    with_defaults = function.args.args[len(function.args.args) - len(defaults) :]
    retries = [d for a, d in zip(with_defaults, defaults, strict=True) if a.arg == "max_retries"]
    attempts = _constant(retries[0]) if retries else None
    if template_name is None:
        raise VtcSourceError(f"{path}: {JUDGE_FUNCTION} formats no prompt constant")
    model, temperature = request.get("model"), request.get("temperature")
    max_tokens = request.get("max_tokens")
    if not isinstance(model, str) or not isinstance(max_tokens, int):
        raise VtcSourceError(f"{path}: {JUDGE_FUNCTION} sends no literal model or max_tokens")
    if not isinstance(temperature, int | float) or not isinstance(attempts, int):
        raise VtcSourceError(f"{path}: {JUDGE_FUNCTION} has no literal temperature or max_retries")
    template = None
    for statement in module.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
            if isinstance(target, ast.Name) and target.id == template_name:
                template = _string(statement.value)
    if template is None:
        raise VtcSourceError(f"{path}: no string constant {template_name}")
    try:
        template.format(**dict.fromkeys(PLACEHOLDERS, ""))
    except (KeyError, IndexError, ValueError) as error:
        raise VtcSourceError(f"{path}: {template_name} is not a template of {PLACEHOLDERS}: "
                             f"{error!r}") from None  # fmt: skip
    digest = hashlib.sha256(template.encode("utf-8")).hexdigest()[:12]
    return MemoryJudgePrompt(
        template, version=f"{VTC_PROTOCOL}:{digest}", model=model, max_tokens=max_tokens,
        temperature=float(temperature), attempts=attempts, protocol=VTC_PROTOCOL,
        source=str(Path(checkout).resolve()),
    )  # fmt: skip


def read_instructions_from_source(checkout: str | Path) -> dict[str, str]:
    """Split -> instruction, from the ``match split`` of ``_select_instruction_prompt`` in
    ``checkout``/examples/run_wild.py (each ``case "<split>": return "<text>"``)."""
    path = Path(checkout) / INSTRUCTIONS_FILE
    function = _function(_module(path), INSTRUCTIONS_FUNCTION, path)
    found: dict[str, str] = {}
    for node in ast.walk(function):
        if not isinstance(node, ast.match_case):
            continue
        split = node.pattern.value if isinstance(node.pattern, ast.MatchValue) else None
        name = _string(split)
        returned = [s for s in node.body if isinstance(s, ast.Return)]
        text = _string(returned[0].value) if returned else None
        if name is not None and text is not None:
            found[name] = text
    if not found:
        raise VtcSourceError(f"{path}: {INSTRUCTIONS_FUNCTION} returns no instruction per split")
    return found


@dataclass(frozen=True)
class MemoryVerdict:
    item_id: str
    verdict: str
    """A, B or C."""
    score: float
    source: str
    """llm or cache."""
    reply: str


class MemoryJudge:
    """Judge Memory answers on an OpenAI-compatible server with ``prompt``; verdicts are cached
    by judge model, prompt version, question, gold text and final answer."""

    def __init__(
        self,
        settings: ClientSettings,
        model: str,
        *,
        prompt: MemoryJudgePrompt = OUR_MEMORY_JUDGE,
        cache: JudgeCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.settings = settings
        self.model = model
        self.prompt = prompt
        self.cache = cache
        self.transport = transport
        self.stats = JudgeStats()

    @property
    def label(self) -> str:
        """What produced the scores: the protocol, its wording's version, the judge model."""
        whose = "VTCBench's protocol" if self.prompt.protocol == VTC_PROTOCOL else "our wording"
        label = f"{whose} {self.prompt.version}, judge {self.model}"
        if self.prompt.model is not None and self.prompt.model != self.model:
            label += f" (VTCBench's judge is {self.prompt.model})"
        return label

    async def _ask(self, client: ChatClient, text: str) -> tuple[str, str, int]:
        """(verdict, last reply, tokens) after up to ``prompt.attempts`` requests."""
        body = {
            "model": self.model, "messages": [{"role": "user", "content": text}],
            "temperature": self.prompt.temperature, "max_tokens": self.prompt.max_tokens,
        }  # fmt: skip
        tokens, reply_text = 0, ""
        for _ in range(self.prompt.attempts):
            reply = await client.post(body)
            self.stats.made += 1
            self.stats.prompt_tokens += reply.prompt_tokens
            self.stats.completion_tokens += reply.completion_tokens
            tokens += reply.prompt_tokens + reply.completion_tokens
            reply_text = reply.text
            verdict = parse_verdict(reply.text)
            if verdict is not None:
                return verdict, reply_text, tokens
        return INVALID, reply_text, tokens

    async def judge_async(
        self, items: Sequence[tuple[str, str, Sequence[object], str]]
    ) -> list[MemoryVerdict | None]:
        """One verdict per (item_id, question, gold answers, response); None where the judge
        server failed for good (counted in ``stats.failed``)."""
        results: list[MemoryVerdict | None] = [None] * len(items)
        pending: list[tuple[int, str, str]] = []
        for index, (item_id, question, golds, response) in enumerate(items):
            gold, answer = gold_text(golds), final_answer(response)
            key = cache_key(self.model, self.prompt.version, question, gold, answer)
            cached = self.cache.get(key) if self.cache else None
            if cached is not None:
                self.stats.cached += 1
                results[index] = MemoryVerdict(item_id, cached.rationale, cached.score,
                                               "cache", cached.reply)  # fmt: skip
            else:
                pending.append((index, key, self.prompt.prompt(question, gold, answer)))
        if not pending:
            return results
        async with ChatClient(self.settings, transport=self.transport) as client:

            async def run(index: int, key: str, text: str) -> None:
                item_id = items[index][0]
                try:
                    verdict, reply, tokens = await self._ask(client, text)
                except ChatError as error:
                    self.stats.failed += 1
                    self.stats.errors.append(f"{item_id}: {error}")
                    return
                score = 1.0 if verdict == CORRECT else 0.0
                if self.cache is not None:
                    self.cache.put(key, CachedVerdict(score, verdict, reply, tokens))
                results[index] = MemoryVerdict(item_id, verdict, score, "llm", reply)

            await asyncio.gather(*(run(*job) for job in pending))
        return results

    def judge(
        self, items: Sequence[tuple[str, str, Sequence[object], str]]
    ) -> list[MemoryVerdict | None]:
        return asyncio.run(self.judge_async(items))


def make_memory_judge(
    judge_model: str | None,
    cache_path: str | Path,
    *,
    base_url: str | None = None,
    vtc_source: str | Path | None = None,
    concurrency: int = 8,
) -> MemoryJudge:
    """The Memory judge on an OpenAI-compatible server (``base_url`` or OPENAI_BASE_URL; the
    key from OPENAI_API_KEY). With ``vtc_source`` it asks VTCBench's prompt with its request
    parameters and, unless ``judge_model`` names another, its judge model; otherwise our
    wording, which needs ``judge_model``."""
    prompt = read_memory_judge(vtc_source) if vtc_source is not None else OUR_MEMORY_JUDGE
    model = judge_model or prompt.model
    if not model:
        raise ValueError("the VTCBench-Wild Memory judge needs a judge model (--judge-model)")
    try:
        settings = ClientSettings.from_env(base_url, concurrency=concurrency)
    except ValueError:
        raise ValueError(
            "the VTCBench-Wild Memory judge has no server: pass --judge-base-url or set "
            "OPENAI_BASE_URL"
        ) from None
    return MemoryJudge(settings, model, prompt=prompt, cache=JudgeCache(cache_path))
