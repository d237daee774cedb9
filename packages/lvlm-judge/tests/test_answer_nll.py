"""answer-nll on the tiny Qwen2.5-VL: the runner's number is the teacher-forced likelihood
computed by hand from the logits, and a rerun resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lvlm_judge.answer_nll import answer_text, run_answer_nll
from lvlm_judge.context import ContextResolver
from lvlm_judge.datasets import load_data
from lvlm_judge.prompting import build_prompt
from lvlm_judge.runners.base import GenerationRequest, chat_text
from lvlm_judge.runners.transformers_runner import TransformersRunner
from lvlm_judge.testing import make_doc_benchmark
from mmprolong_schemas.units import K

pytestmark = pytest.mark.slow


def test_answer_nll_is_the_teacher_forced_likelihood(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    tiny = pytest.importorskip("longctx_rope.tiny")
    checkpoint = tiny.save_tiny_checkpoint("qwen2.5-vl", tmp_path / "ckpt")
    data = make_doc_benchmark(tmp_path, datasets=("slidevqa",), docs=1, pages=1)
    items = load_data([data], lengths=[8 * K], datasets=["slidevqa"], subset="all")
    runner = TransformersRunner(checkpoint, ContextResolver(tmp_path / "mmlb_image"),
                                device_map="cpu", model_name="tiny")  # fmt: skip
    item = next(i for i in items if i.answer_format == "List")
    assert answer_text(item) == "red, blue"  # the released JSON string, as the model writes it

    request = GenerationRequest(item.item_id, build_prompt(item))
    total, tokens = runner.answer_nll(request, answer_text(item))
    # By hand: log-softmax of the logits at each position before an answer token.
    target = " " + answer_text(item)
    answer_ids = runner.processor.tokenizer(target, add_special_tokens=False)["input_ids"]
    images = [runner.resolver.load(part) for part in request.prompt.images]
    inputs = runner.processor(text=[chat_text(runner.processor, request.prompt) + target],
                              images=images, return_tensors="pt")  # fmt: skip
    ids = inputs["input_ids"][0]
    assert ids[-len(answer_ids) :].tolist() == answer_ids  # the answer ends the sequence
    with torch.inference_mode():
        logits = runner.model(**inputs, use_cache=False).logits[0].float()
    logprobs = torch.log_softmax(logits[-len(answer_ids) - 1 : -1], dim=-1)
    expected = -logprobs.gather(1, ids[-len(answer_ids) :, None]).sum().item()
    assert tokens == len(answer_ids)
    assert total == pytest.approx(expected, rel=1e-4)

    calls = []
    original = runner.answer_nll

    def counted(*args: object) -> tuple[float, int]:
        calls.append(args)
        return original(*args)  # type: ignore[arg-type]

    runner.answer_nll = counted  # type: ignore[method-assign]
    table = run_answer_nll(items, runner, tmp_path / "run")
    assert len(calls) == 5 and table["failed"] == 0
    (cell,) = table["cells"]
    assert cell["n"] == 5 and cell["nll"] > 0
    run_answer_nll(items, runner, tmp_path / "run")
    assert len(calls) == 5  # resumed from answer-nll.jsonl
    written = json.loads((tmp_path / "run" / "answer-nll.json").read_text())
    assert written["metric"] == "answer-nll" and written["model"] == "tiny"
