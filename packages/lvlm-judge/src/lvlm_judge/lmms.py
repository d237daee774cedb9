"""lmms-eval as a separate process: its command line, one run per task, and its result files
read back as lvlm-judge suite scores.

lmms-eval runs in an interpreter the user names (``--lmms-python``), so its pins (torchvision,
wandb, an older transformers) never reach our environment. Per task it writes, under
``--output_path``, ``<model_name_sanitized>/<date>_results.json`` (keys ``results``,
``configs``, ``n-samples``, ``lmms_eval_version``, ``config``, ...) and, with
``--log_samples``, ``<date>_samples_<task>.jsonl``; that layout is restated from
lmms_eval/loggers/evaluation_tracker.py (``save_results_aggregated`` and
``save_results_samples``) of lmms-eval 0.7.3. lmms-eval exits 0 even when a task fails (its
``cli_evaluate`` logs the error), so a task has failed when it wrote no results file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmprolong_schemas.base import Model


class LmmsEvalError(RuntimeError):
    """lmms-eval is missing, a task's data set is unreachable, or a task failed."""


@dataclass(frozen=True)
class TaskSpec:
    """What lvlm-judge knows about one lmms-eval task, restated from its YAML and utils.py in
    lmms_eval/tasks/ (0.7.3): the headline metric, the factor that turns the aggregated value
    into percent, the Hub data set it downloads, and the paper's column for it."""

    metric: str
    to_percent: float
    dataset: str
    paper_table: str | None = None
    paper_column: str | None = None
    protocol: str | None = None
    """How this task's number stands to the paper's column, where they are not plainly the
    same (the paper evaluated these benchmarks with VLMEvalKit, its Appendix B.7)."""


PAPER_VIDEO_SAMPLING = "the paper samples 1 fps, at most 768 frames, 24,576 video tokens (B.6)"

LMMS_TASKS: dict[str, TaskSpec] = {
    # tasks/videomme/utils.py videomme_aggregate_results returns 100 * correct / answered.
    "videomme": TaskSpec(
        "videomme_perception_score", 1.0, "lmms-eval/Video-MME",
        "table19_long_video", "Video-MME", PAPER_VIDEO_SAMPLING,
    ),
    # tasks/mlvu/utils.py mlvu_aggregate_results_dev returns 100 * correct / answered.
    "mlvu_dev": TaskSpec(
        "mlvu_percetion_score", 1.0, "sy1998/MLVU_dev", "table19_long_video", "MLVU",
        PAPER_VIDEO_SAMPLING,
    ),
    # tasks/longvideobench/utils.py longvideobench_aggregate_results returns a fraction.
    "longvideobench_val_v": TaskSpec(
        "lvb_acc", 100.0, "longvideobench/LongVideoBench",
        "table19_long_video", "LongVideoBench", PAPER_VIDEO_SAMPLING,
    ),
    # tasks/mmbench/en_utils.py mmbench_aggregate_dev_results_eval returns percent.
    "mmbench_en_dev": TaskSpec(
        "gpt_eval_score", 1.0, "lmms-lab-encoder/MMBench", "table3_short_context", "MMBench",
        "MMBench dev split of lmms-eval's data set; the paper's is MMBench-V1.1 (VLMEvalKit "
        "MMBench_DEV_EN_V11), which lmms-eval has no task for: not the same items",
    ),
    # tasks/realworldqa/realworldqa.yaml: exact_match, aggregation mean (a fraction).
    "realworldqa": TaskSpec(
        "exact_match", 100.0, "lmms-lab-encoder/RealWorldQA", "table3_short_context", "RWQA"
    ),
    # tasks/mmmu/utils.py and tasks/mmmu_pro/utils.py aggregate to a fraction.
    "mmmu_val": TaskSpec(
        "mmmu_acc", 100.0, "lmms-lab-encoder/MMMU", "table3_short_context", "MMMU",
        "MMMU validation split (900 items); the paper names VLMEvalKit's MMMU_DEV_VAL, and "
        "every MMMU figure of its Table 3 is a whole number of 900ths, the validation split",
    ),
    # mmmu_pro_standard.yaml: dataset_name "standard (10 options)", the setting the paper
    # reports (VLMEvalKit MMMU_Pro_10c, Appendix B.7); the vision setting is not in the paper.
    "mmmu_pro_standard": TaskSpec(
        "mmmu_acc", 100.0, "MMMU/MMMU_Pro", "table3_short_context", "MMMU-Pro",
        "MMMU-Pro standard setting, 10 options (the paper: VLMEvalKit MMMU_Pro_10c)",
    ),
    "mmmu_pro_vision": TaskSpec("mmmu_acc", 100.0, "MMMU/MMMU_Pro"),
    # tasks/mathvista/utils.py mathvista_aggregate_results: round(correct / total * 100, 2).
    "mathvista_testmini_format": TaskSpec(
        "llm_as_judge_eval", 1.0, "AI4Math/MathVista", "table3_short_context", "MathVista"
    ),
    # tasks/ocrbench/utils.py ocrbench_aggregate_accuracy returns Final_score / 1000.
    "ocrbench": TaskSpec(
        "ocrbench_accuracy", 100.0, "echo840/OCRBench", "table3_short_context", "OCRBench"
    ),
}  # fmt: skip
"""The paper's long-video and short-context benchmarks, as lmms-eval names them (and
mmmu_pro_vision, which the paper does not report, so an imported result keeps its scale)."""


class SuiteScore(Model):
    """One benchmark's score, labelled with what produced it."""

    group: str
    task: str
    metric: str
    value: float
    """As the producer reported it."""
    score: float | None
    """Percent, where the producer's scale is known."""
    n: int
    source: str
    """What produced the number, e.g. 'lmms-eval 0.7.3 (qwen2_5_vl)'."""
    paper_table: str | None = None
    paper_column: str | None = None
    protocol: str | None = None
    """How the number stands to the paper's column where they differ or the paper is silent."""


@dataclass(frozen=True)
class LmmsModel:
    """The lmms-eval model and its ``--model_args``."""

    name: str
    args: Mapping[str, str | int | float]

    def arg_string(self) -> str:
        parts = []
        for key, value in self.args.items():
            text = str(value)
            if "," in text or "=" in text:
                raise LmmsEvalError(
                    f"model argument {key}={text!r}: lmms-eval splits --model_args on ',' "
                    "and '=', so a value cannot contain them"
                )
            parts.append(f"{key}={text}")
        return ",".join(parts)


def qwen2_5_vl_model(
    checkpoint: str | Path,
    *,
    min_pixels: int,
    max_pixels: int,
    max_num_frames: int,
    attn_implementation: str | None = None,
    device_map: str = "auto",
) -> LmmsModel:
    """lmms-eval's ``qwen2_5_vl`` model on a checkpoint folder. Its arguments are restated from
    lmms_eval/models/simple/qwen2_5_vl.py (``Qwen2_5_VL.__init__``): pretrained, min_pixels,
    max_pixels, max_num_frames, attn_implementation (None, flash_attention_2, sdpa, eager),
    device_map. The rope config travels in the checkpoint's config.json."""
    if attn_implementation not in (None, "flash_attention_2", "sdpa", "eager"):
        raise LmmsEvalError(
            f"attn_implementation {attn_implementation!r}: lmms-eval's qwen2_5_vl accepts "
            "flash_attention_2, sdpa or eager"
        )
    if not 0 < min_pixels <= max_pixels:
        raise LmmsEvalError(
            f"pixels: need 0 < min_pixels ({min_pixels}) <= max_pixels ({max_pixels})"
        )
    args: dict[str, str | int | float] = {
        "pretrained": str(checkpoint),
        "min_pixels": min_pixels,
        "max_pixels": max_pixels,
        "max_num_frames": max_num_frames,
        "device_map": device_map,
    }
    if attn_implementation is not None:
        args["attn_implementation"] = attn_implementation
    return LmmsModel("qwen2_5_vl", args)


def lmms_version(python: str) -> str:
    """The lmms-eval version importable by ``python``; a clear error when it is not."""
    code = "import importlib.metadata as m, lmms_eval.evaluator; print(m.version('lmms-eval'))"
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=600, check=False
        )
    except OSError as error:
        raise LmmsEvalError(f"--lmms-python {python}: cannot start it ({error})") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise LmmsEvalError(
            f"lmms-eval cannot be imported by {python} ({last}). Install it there with "
            f"`{python} -m pip install lmms-eval`, or pass --lmms-python with the interpreter "
            "of an environment that has it."
        )
    return done.stdout.strip().splitlines()[-1]


_UNREACHABLE = (
    "Couldn't reach",
    "LocalEntryNotFoundError",
    "OfflineModeIsEnabled",
    "offline mode is enabled",
    "ConnectionError",
    "Max retries exceeded",
    "DatasetNotFoundError",
)


def _results_files(folder: Path) -> set[Path]:
    return set(folder.glob("*/*_results.json")) if folder.is_dir() else set()


def _finished(
    results_files: set[Path], task: str, model: LmmsModel, limit: int | None
) -> Path | None:
    """The newest earlier results file of ``task`` made with the same model, model arguments
    and limit (lmms-eval records them under ``config``), so a rerun resumes task by task."""
    for path in sorted(results_files, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        config = data.get("config") or {}
        if (
            task in (data.get("results") or {})
            and config.get("model") == model.name
            and config.get("model_args") == model.arg_string()
            and config.get("limit") == limit
        ):
            return path
    return None


def run_task(
    task: str,
    model: LmmsModel,
    out_dir: str | Path,
    *,
    python: str,
    include_path: str | Path | None = None,
    limit: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> Path:
    """Run one lmms-eval task in its own process and return its results file; a task already
    finished with the same model arguments and limit is not run again. Its log is kept beside
    it; a task that writes no results is an error naming the cause found in the log."""
    out = Path(out_dir) / task
    out.mkdir(parents=True, exist_ok=True)
    before = _results_files(out)
    finished = _finished(before, task, model, limit)
    if finished is not None:
        return finished
    command = [
        python, "-m", "lmms_eval",
        "--model", model.name,
        "--model_args", model.arg_string(),
        "--tasks", task,
        "--batch_size", "1",
        "--output_path", str(out),
        "--log_samples",
    ]  # fmt: skip
    if include_path is not None:
        command += ["--include_path", str(include_path)]
    if limit is not None:
        command += ["--limit", str(limit)]
    log = out / "lmms-eval.log"
    with log.open("w", encoding="utf-8") as handle:
        try:
            done = subprocess.run(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                timeout=timeout_s,
                check=False,
            )
        except OSError as error:
            raise LmmsEvalError(f"lmms-eval task {task}: cannot start {python} ({error})") from None
        except subprocess.TimeoutExpired:
            raise LmmsEvalError(
                f"lmms-eval task {task}: no result after {timeout_s} s (log: {log})"
            ) from None
    written = sorted(_results_files(out) - before, key=lambda p: p.stat().st_mtime)
    if done.returncode == 0 and written:
        return written[-1]
    text = log.read_text(encoding="utf-8", errors="replace")
    spec = LMMS_TASKS.get(task)
    if any(marker in text for marker in _UNREACHABLE):
        where = f"the Hub data set {spec.dataset}" if spec else "its data set"
        raise LmmsEvalError(
            f"lmms-eval task {task}: {where} is not reachable. Download it first (e.g. "
            f"`huggingface-cli download --repo-type dataset {spec.dataset if spec else '<repo>'}`"
            f" into the HF cache) or run with network access. Log: {log}"
        )
    tail = " | ".join(line.strip() for line in text.strip().splitlines()[-3:])
    raise LmmsEvalError(
        f"lmms-eval task {task} failed (exit {done.returncode}, no results file): {tail} "
        f"(log: {log})"
    )


def _sample_count(results_file: Path, task: str) -> int | None:
    stamp = results_file.name.removesuffix("_results.json")
    samples = results_file.with_name(f"{stamp}_samples_{task}.jsonl")
    if not samples.is_file():
        return None
    with samples.open(encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


def import_results(
    results_file: str | Path,
    *,
    group: str,
    tasks: Mapping[str, TaskSpec] = LMMS_TASKS,
) -> list[SuiteScore]:
    """Suite scores from one lmms-eval results file: each task's headline metric (from
    ``tasks``; every metric of a task it does not know, unscaled), labelled with the lmms-eval
    version and model that produced it. ``n`` is the samples log's line count where it exists,
    else ``n-samples.effective``."""
    path = Path(results_file)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        results: dict[str, dict[str, Any]] = data["results"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise LmmsEvalError(f"{path}: not an lmms-eval results file ({error})") from None
    config = data.get("config") or {}
    version = data.get("lmms_eval_version", "unknown")
    source = f"lmms-eval {version} ({config.get('model', 'unknown model')})"
    frames = re.search(r"(?:^|,)max_num_frames=(\d+)", str(config.get("model_args") or ""))
    scores: list[SuiteScore] = []
    for task, values in results.items():
        spec = tasks.get(task)
        counted = _sample_count(path, task)
        n = (
            counted
            if counted is not None
            else int((data.get("n-samples") or {}).get(task, {}).get("effective", 0))
        )
        for key, value in values.items():
            metric, _, _filter = key.partition(",")
            if metric == "alias" or "_stderr" in metric or not isinstance(value, int | float):
                continue
            if spec is not None and metric != spec.metric:
                continue
            scores.append(
                SuiteScore(
                    group=group, task=task, metric=metric, value=float(value),
                    score=float(value) * spec.to_percent if spec else None, n=n, source=source,
                    paper_table=spec.paper_table if spec else None,
                    paper_column=spec.paper_column if spec else None,
                    protocol=_protocol(spec, frames.group(1) if frames else None),
                )
            )  # fmt: skip
        if spec is not None and not any(s.task == task for s in scores):
            raise LmmsEvalError(f"{path}: task {task} has no {spec.metric} in its results")
    return scores


def _protocol(spec: TaskSpec | None, max_num_frames: str | None) -> str | None:
    """The task's protocol note; a video task's also names the frames it was run with."""
    if spec is None or spec.protocol is None:
        return None
    if spec.protocol == PAPER_VIDEO_SAMPLING:
        used = f"max_num_frames={max_num_frames}" if max_num_frames else "frames not recorded"
        return f"{used}; {spec.protocol}"
    return spec.protocol


def run_tasks(
    tasks: Sequence[str],
    model: LmmsModel,
    out_dir: str | Path,
    *,
    group: str,
    python: str,
    include_path: str | Path | None = None,
    limit: int | None = None,
    env: Mapping[str, str] | None = None,
    specs: Mapping[str, TaskSpec] = LMMS_TASKS,
) -> tuple[list[SuiteScore], dict[str, str]]:
    """Each task in turn; a failing task is recorded (task -> reason) and the others go on."""
    scores: list[SuiteScore] = []
    failures: dict[str, str] = {}
    for task in tasks:
        try:
            results_file = run_task(
                task, model, out_dir, python=python, include_path=include_path,
                limit=limit, env=env,
            )  # fmt: skip
            imported = import_results(results_file, group=group, tasks=specs)
            scores += [score for score in imported if score.task == task]
        except LmmsEvalError as error:
            failures[task] = str(error)
    return scores, failures
