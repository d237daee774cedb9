"""The real lmms-eval, end to end, on a local task this test defines, on CPU, offline.

lmms-eval runs as a separate process (``LVLM_JUDGE_LMMS_PYTHON``, default this interpreter);
the `lmms-eval` nox session installs it and sets ``LVLM_JUDGE_REQUIRE_LMMS=1`` so that a
missing lmms-eval fails there instead of skipping.

The model is the tiny Qwen2.5-VL from ``longctx_rope.tiny``, saved as a checkpoint folder and
served on 127.0.0.1 behind lmms-eval's ``openai`` model. lmms-eval's own Qwen2.5-VL models
cannot run on this CPU-only test platform: ``qwen2_5_vl`` needs qwen_vl_utils, which imports
torchvision (only CUDA builds of it are on the registry for torch 2.13), and its
``huggingface`` model passes ``audios=`` to the processor, which transformers 5 rejects.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from longctx_rope.tiny import save_tiny_checkpoint, tiny_image
from lvlm_judge.lmms import LmmsModel, TaskSpec, run_tasks
from mmprolong_runtime.testing import ChatServer

pytestmark = pytest.mark.slow

LMMS_PYTHON = os.environ.get("LVLM_JUDGE_LMMS_PYTHON", sys.executable)


def _has_lmms_eval() -> bool:
    done = subprocess.run(
        [LMMS_PYTHON, "-c", "import lmms_eval.evaluator"], capture_output=True, check=False
    )
    return done.returncode == 0


@pytest.fixture(scope="module")
def lmms_python() -> str:
    if not _has_lmms_eval():
        if os.environ.get("LVLM_JUDGE_REQUIRE_LMMS") == "1":
            pytest.fail(f"lmms-eval is not importable by {LMMS_PYTHON}")
        pytest.skip(f"lmms-eval is not installed for {LMMS_PYTHON} (nox -s lmms-eval runs this)")
    return LMMS_PYTHON


def _images(body: dict[str, Any]) -> tuple[list[Image.Image], str]:
    images, texts = [], []
    for message in body["messages"]:
        content = message["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for part in parts:
            if part["type"] == "image_url":
                data = part["image_url"]["url"].split(",", 1)[1]
                images.append(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
            elif part["type"] == "text":
                texts.append(part["text"])
    return images, "\n".join(texts)


class TinyServed:
    """The tiny checkpoint behind an OpenAI-compatible endpoint: greedy, 4 new tokens."""

    def __init__(self, checkpoint: Path) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        import longctx_rope.processors  # noqa: F401  (registers the image-only processor)

        self.model = AutoModelForImageTextToText.from_pretrained(checkpoint).eval()
        self.processor = AutoProcessor.from_pretrained(checkpoint)
        self.answers: list[tuple[int, str, str]] = []

    def __call__(self, body: dict[str, Any], seen: int) -> str:
        images, text = _images(body)
        messages = [
            {
                "role": "user",
                "content": [{"type": "image"}] * len(images) + [{"type": "text", "text": text}],
            }
        ]
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = self.processor(text=[prompt], images=images or None, return_tensors="pt")
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=4, do_sample=False)
        answer = self.processor.tokenizer.decode(
            out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
        )
        self.answers.append((len(images), text, answer))
        return answer


def _write_task(root: Path, name: str, data_file: Path) -> None:
    # The task format restated from lmms-eval 0.7.3: a YAML read by lmms_eval/tasks/__init__.py
    # (TaskManager, --include_path) with the TaskConfig fields of lmms_eval/api/task.py; the
    # local-file data set follows tasks/realworldqa/realworldqa.yaml's shape with
    # dataset_path json + dataset_kwargs.data_files (handed to datasets.load_dataset), and
    # `!function utils.x` hooks as in every task folder's utils.py.
    (root / f"{name}.yaml").write_text(
        textwrap.dedent(f"""\
            task: {name}
            dataset_path: json
            dataset_kwargs:
              data_files:
                test: {data_file}
            test_split: test
            output_type: generate_until
            doc_to_visual: !function utils.doc_to_visual
            doc_to_text: !function utils.doc_to_text
            doc_to_target: answer
            generation_kwargs:
              max_new_tokens: 4
              temperature: 0
              do_sample: false
            process_results: !function utils.process_results
            metric_list:
              - metric: contains_answer
                aggregation: mean
                higher_is_better: true
            metadata:
              version: 0.0
            """),
        encoding="utf-8",
    )


UTILS = """\
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).parent / "media"


def doc_to_visual(doc):
    # An image item has one picture; a video item a few frames, in order.
    return [Image.open(ROOT / name).convert("RGB") for name in doc["media"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    return {"contains_answer": float(doc["answer"].lower() in results[0].lower())}
"""


def test_local_task_end_to_end_and_a_failing_task(tmp_path: Path, lmms_python: str) -> None:
    checkpoint = save_tiny_checkpoint("qwen2.5-vl", tmp_path / "ckpt")
    tasks = tmp_path / "tasks"
    media = tasks / "media"
    media.mkdir(parents=True)
    docs = []
    for i in range(3):
        tiny_image(56, 56, seed=i).save(media / f"image{i}.png")
        docs.append({"id": f"img{i}", "media": [f"image{i}.png"], "question": f"Colour {i}?",
                     "answer": "a"})  # fmt: skip
    frames = []
    for t in range(4):  # a short generated clip: a bright square moving right
        frame = Image.new("RGB", (56, 56), (0, 0, 0))
        frame.paste((255, 255, 255), (4 + 12 * t, 20, 16 + 12 * t, 32))
        frame.save(media / f"frame{t}.png")
        frames.append(f"frame{t}.png")
    docs.append({"id": "clip", "media": frames, "question": "Where does it move?", "answer": "e"})
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in docs), encoding="utf-8")
    (tasks / "utils.py").write_text(UTILS, encoding="utf-8")
    _write_task(tasks, "h19_local", data)
    _write_task(tasks, "h19_missing", tmp_path / "absent.jsonl")

    served = TinyServed(checkpoint)
    server = ChatServer()
    server.reply = served
    server.start()
    try:
        model = LmmsModel("openai", {"model_version": "tiny-qwen2.5-vl", "base_url": server.url,
                                     "num_concurrent": 1, "max_retries": 1})  # fmt: skip
        env = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "unused",
               "HF_HOME": str(tmp_path / "hf"), "NO_PROXY": "127.0.0.1"}  # fmt: skip
        specs = {
            name: TaskSpec("contains_answer", 100.0, "local")
            for name in ("h19_local", "h19_missing")
        }
        scores, failures = run_tasks(
            ["h19_missing", "h19_local"], model, tmp_path / "out", group="test",
            python=lmms_python, include_path=tasks, env=env, specs=specs,
        )  # fmt: skip
    finally:
        server.stop()

    assert list(failures) == ["h19_missing"], failures
    answered = len(served.answers)
    again, _ = run_tasks(
        ["h19_local"], model, tmp_path / "out", group="test", python=lmms_python,
        include_path=tasks, env=env, specs=specs,
    )  # fmt: skip
    assert again == scores and len(served.answers) == answered  # finished: not run again
    assert "h19_missing" in failures["h19_missing"]
    (score,) = scores
    assert score.task == "h19_local" and score.metric == "contains_answer" and score.n == 4
    assert score.source.startswith("lmms-eval ") and "(openai)" in score.source
    # Every item reached the tiny model with its pictures: three single images, one 4-frame clip.
    assert sorted(count for count, _, _ in served.answers) == [1, 1, 1, 4]

    # The imported score is lmms-eval's aggregate of the tiny model's actual answers.
    def answer_to(question: str) -> str:
        (answer,) = [answer for _, text, answer in served.answers if question in text]
        return answer

    expected = [float(doc["answer"] in answer_to(doc["question"]).lower()) for doc in docs]
    assert score.score == pytest.approx(100.0 * sum(expected) / len(expected))
