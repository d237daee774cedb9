"""Fixtures: a scripted OpenAI-compatible server on 127.0.0.1; a VTCBench checkout's files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mmprolong_runtime.testing import ChatServer


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer().start()
    try:
        yield server
    finally:
        server.stop()


def write_vtc_checkout(root: Path, judge_model: str = "gpt-4o-mini") -> Path:
    """The two files of a VTCBench checkout that --vtc-source reads, in the layout of its
    examples/llm_judge.py (a module string constant formatted in evaluate_answer_with_gpt with
    question, gold_answer and llm_response; the request's model, temperature and max_tokens;
    the max_retries default) and examples/run_wild.py (_select_instruction_prompt's match on
    the split). The wording here is ours: upstream's is read only from the user's checkout."""
    (root / "examples").mkdir(parents=True)
    (root / "examples" / "llm_judge.py").write_text(
        "GRADE = (\n"
        '    "GRADE-ME {{braces}} Q={question} "\n'
        '    "G={gold_answer} R={llm_response}"\n'
        ")\n\n\n"
        "def evaluate_answer_with_gpt(question, gold_answer, llm_response, max_retries=3):\n"
        "    final = llm_response\n"
        "    for attempt in range(max_retries):\n"
        "        prompt = GRADE.format(question=question, gold_answer=gold_answer, "
        "llm_response=final)\n"
        f'        reply = client.chat.completions.create(model="{judge_model}", '
        'messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=10)\n'
    )
    (root / "examples" / "run_wild.py").write_text(
        "def _select_instruction_prompt(split: str) -> str:\n"
        "    match split:\n"
        + "".join(
            f'        case "{split}":\n            return "{split} instruction. Q: "\n'
            for split in ("Retrieval", "Reasoning", "Memory")
        )
        + "        case _:\n            raise ValueError(split)\n"
    )
    return root


@pytest.fixture
def vtc_checkout() -> Callable[..., Path]:
    return write_vtc_checkout
