"""The paper's generalization benchmarks on one checkpoint, by named group.

    video  long video through lmms-eval: videomme, mlvu_dev, longvideobench_val_v
    short  short-context skills through lmms-eval: the paper's MMBench, RealWorldQA, MMMU,
           MMMU-Pro (its standard 10-option setting, as the paper reports), MathVista, OCRBench
    niah   MM-NIAH through lvlm-judge's own MMLongBench loaders, runners and scorer
    vtc    VTCBench-Wild from its Hugging Face release: Retrieval and Reasoning scored with
           containsAll, Memory by an LLM judge (VTCBench's prompt read from the user's
           checkout with --vtc-source, else ours)

Each group's scores land in ``<out>/suite.json`` (a SuiteReport), labelled with what produced
them; a task that fails is recorded there with its reason and the others go on.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from lvlm_judge.lmms import (
    LMMS_TASKS,
    LmmsEvalError,
    LmmsModel,
    SuiteScore,
    lmms_version,
    run_tasks,
)
from lvlm_judge.vtcbench import PAPER_COLUMNS as VTC_PAPER_COLUMNS
from mmprolong_schemas import ScoreTable, format_tokens
from mmprolong_schemas.base import Model
from mmprolong_schemas.io import atomic_path

if TYPE_CHECKING:
    from lvlm_judge.vtc_judge import MemoryJudge

LMMS_GROUPS: dict[str, tuple[str, ...]] = {
    "video": ("videomme", "mlvu_dev", "longvideobench_val_v"),
    "short": (
        "mmbench_en_dev", "realworldqa", "mmmu_val", "mmmu_pro_standard",
        "mathvista_testmini_format", "ocrbench",
    ),
}  # fmt: skip
GROUPS: tuple[str, ...] = (*LMMS_GROUPS, "niah", "vtc")

NIAH_COLUMNS = {"retrieval": "Ret", "counting": "Count", "reasoning": "Reas"}
"""MM-NIAH task family -> the paper's column (table17_mm_niah). The paper (Appendix B.4) first
averages a family's text- and image-needle variants, then macro-averages the three families."""


class SuiteReport(Model):
    checkpoint: str
    rope: dict[str, Any] = Field(default_factory=dict)
    groups: list[str]
    scores: list[SuiteScore] = Field(default_factory=list)
    failures: dict[str, str] = Field(default_factory=dict)
    """'group/task' -> why it produced no score."""

    def write(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / "suite.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        return path


def read_rope(checkpoint: str | Path) -> dict[str, Any]:
    """The rope settings a checkpoint's config.json carries, in both the transformers 5 form
    (text_config.rope_parameters) and the 4.x / vLLM form (rope_theta, rope_scaling)."""
    import json

    path = Path(checkpoint) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise LmmsEvalError(f"{path}: cannot read the checkpoint's config ({error})") from None
    text = config.get("text_config") or {}
    rope: dict[str, Any] = {}
    for source in (config, text):
        for key in ("rope_parameters", "rope_theta", "rope_scaling", "max_position_embeddings"):
            if key in source and key not in rope:
                rope[key] = source[key]
    # lmms-eval's environment may hold transformers 4.x (rope_theta) or 5 (rope_parameters):
    # a checkpoint whose two forms disagree would be evaluated with a different base there.
    new_form = (rope.get("rope_parameters") or {}).get("rope_theta")
    old_form = rope.get("rope_theta")
    if new_form is not None and old_form is not None and float(new_form) != float(old_form):
        raise LmmsEvalError(
            f"{path}: rope_theta {old_form} and rope_parameters.rope_theta {new_form} disagree; "
            "rewrite the checkpoint with longctx-rope so both forms carry the same base"
        )
    return rope


def niah_scores(table: ScoreTable, source: str) -> list[SuiteScore]:
    """The paper's MM-NIAH columns per length (the mean of text and image needles) from
    lvlm-judge's niah-scores table."""
    by_column: dict[tuple[int, str], list[tuple[float, int]]] = defaultdict(list)
    kinds: dict[tuple[int, str], set[str]] = defaultdict(set)
    for cell in table.cells:
        match = re.fullmatch(r"mm-niah-(retrieval|counting|reasoning)-(text|image)", cell.dataset)
        if match and cell.n:
            key = (cell.length, NIAH_COLUMNS[match.group(1)])
            by_column[key].append((cell.score, cell.n))
            kinds[key].add(match.group(2))
    return [
        SuiteScore(
            group="niah", task=f"{format_tokens(length)}.{column}", metric="mean over needles",
            value=sum(s for s, _ in cells) / len(cells),
            score=sum(s for s, _ in cells) / len(cells), n=sum(n for _, n in cells),
            source=source, paper_table="table17_mm_niah", paper_column=column,
            protocol=_niah_protocol(sorted(kinds[(length, column)])),
        )
        for (length, column), cells in sorted(by_column.items())
    ]  # fmt: skip


def _niah_protocol(kinds: list[str]) -> str:
    if kinds == ["image", "text"]:
        return "mean of the text- and image-needle variants, as the paper's Appendix B.4"
    return f"{kinds[0]} needles only: the paper's column also averages the other variant"


def niah_files(data: str | Path, lengths: Sequence[int]) -> list[Path]:
    """MMLongBench's MM-NIAH files for ``lengths`` under ``data`` (its mmlb_data/ folder, its
    NIAH/ folder, or one file: a {task}-{modality}_test_K{n}_dep{d}.jsonl or VLMEvalKit's
    MMLongBench_<n>K.tsv, whose MM-NIAH rows are 256K and 512K's official items)."""
    path = Path(data)
    if path.is_file():
        return [path]
    folder = path / "NIAH" if (path / "NIAH").is_dir() else path
    wanted = {f"_K{length // 1024}_" for length in lengths}
    files = sorted(p for p in folder.glob("*.jsonl") if any(w in p.name for w in wanted))
    if not files:
        raise LmmsEvalError(
            f"{folder}: no MM-NIAH files for {[format_tokens(n) for n in lengths]} (download "
            "MMLongBench's release and pass its mmlb_data/ folder)"
        )
    return files


def _mmlb_image_root(data: str | Path) -> Path:
    """mmlb_image/ beside mmlb_data/ as MMLongBench releases them (for a TSV, where VLMEvalKit
    puts them), else the data folder."""
    from lvlm_judge.datasets import is_mmlb_tsv, tsv_image_root

    if is_mmlb_tsv(Path(data)):
        return tsv_image_root(Path(data)) or Path(data).parent
    base = Path(data) if Path(data).is_dir() else Path(data).parent
    if base.name == "NIAH":
        base = base.parent
    sibling = base.parent / "mmlb_image"
    return sibling if sibling.is_dir() else base


def mm_niah(
    checkpoint: str | Path,
    data: str | Path,
    *,
    lengths: Sequence[int],
    image_root: str | Path | None = None,
    runner: str = "transformers",
    max_new_tokens: int = 128,
    device_map: str = "auto",
    base_url: str | None = None,
    limit: int | None = None,
) -> Callable[[Path], ScoreTable]:
    """MM-NIAH on ``checkpoint`` through lvlm-judge's MMLongBench loaders, runner and rule
    scorer: a function of the output folder returning the niah-scores table. Image paths are
    relative to ``image_root`` (default: mmlb_image/ beside mmlb_data/)."""

    def evaluate(out: Path) -> ScoreTable:
        from lvlm_judge.context import ContextResolver
        from lvlm_judge.datasets import DATASET_GROUPS, load_data
        from lvlm_judge.evaluate import run_eval
        from lvlm_judge.factory import make_runner

        files = niah_files(data, lengths)
        root = Path(image_root) if image_root is not None else _mmlb_image_root(data)
        items = load_data(files, image_root=root, lengths=lengths, datasets=DATASET_GROUPS["niah"])
        items = [item for item in items if item.metric]
        if limit:
            seen: dict[tuple[str, int], int] = defaultdict(int)
            kept = []
            for item in items:
                seen[(item.dataset, item.length)] += 1
                if seen[(item.dataset, item.length)] <= limit:
                    kept.append(item)
            items = kept
        model_runner = make_runner(
            runner, checkpoint, ContextResolver(root), items, max_new_tokens=max_new_tokens,
            device_map=device_map, base_url=base_url,
        )  # fmt: skip
        summary = run_eval(items, model_runner, out, judge="rules")
        close = getattr(model_runner, "close", None)
        if callable(close):
            close()
        return summary.tables["niah-scores"]

    return evaluate


def vtc_wild(
    checkpoint: str | Path,
    release: str | Path,
    instructions: str | Path | None,
    *,
    vtc_source: str | Path | None = None,
    memory_judge: MemoryJudge | None = None,
    runner: str = "transformers",
    max_new_tokens: int = 128,
    device_map: str = "auto",
    base_url: str | None = None,
    limit: int | None = None,
) -> Callable[[Path], tuple[list[SuiteScore], dict[str, str]]]:
    """VTCBench-Wild on ``checkpoint``: per split, lvlm-judge's runner answers; containsAll
    scores Retrieval and Reasoning, ``memory_judge`` scores Memory. The instructions come from
    the ``instructions`` JSON, else from the VTCBench checkout ``vtc_source``. A split that
    cannot run is returned as a failure."""

    def evaluate(out: Path) -> tuple[list[SuiteScore], dict[str, str]]:
        from lvlm_judge.context import ContextResolver
        from lvlm_judge.factory import make_runner
        from lvlm_judge.vtc_judge import read_instructions_from_source
        from lvlm_judge.vtcbench import (
            VTC_SPLITS,
            VtcDataError,
            evaluate_split,
            load_vtc_split,
            read_instructions,
        )  # fmt: skip

        failures: dict[str, str] = {}
        if instructions is not None:
            texts, given = read_instructions(instructions), str(instructions)
        elif vtc_source is not None:
            texts, given = read_instructions_from_source(vtc_source), str(vtc_source)
        else:
            why = (
                "no instructions: pass --vtc-source (a VTCBench checkout) or --vtc-instructions "
                "(a JSON file of split -> text)"
            )
            return [], dict.fromkeys(VTC_SPLITS, why)
        scores: list[SuiteScore] = []
        model_runner = None
        for split in VTC_SPLITS:
            if split == "Memory" and memory_judge is None:
                failures[split] = "scored by an LLM judge: pass --judge-model (and --vtc-source)"
                continue
            if split not in texts:
                failures[split] = f"{given} has no instruction for {split}"
                continue
            try:
                items = load_vtc_split(release, split, out / "images")[: limit or None]
            except VtcDataError as error:
                failures[split] = str(error)
                continue
            if model_runner is None:
                model_runner = make_runner(
                    runner, checkpoint, ContextResolver(out / "images"), (),
                    max_new_tokens=max_new_tokens, device_map=device_map, base_url=base_url,
                )  # fmt: skip
            answered = evaluate_split(items, model_runner, texts[split], out / f"{split}.jsonl")
            problems = []
            if len(answered) < len(items):
                problems.append(f"{len(items) - len(answered)} of {len(items)} items got no answer")
            if split == "Memory" and memory_judge is not None:
                values = _judge_memory(answered, memory_judge, out)
                metric, protocol = "LLM accuracy", memory_judge.label
                if len(values) < len(answered):
                    first = memory_judge.stats.errors[0] if memory_judge.stats.errors else ""
                    problems.append(
                        f"{len(answered) - len(values)} of {len(items)} answers got no judge "
                        f"verdict (a rerun asks again; first: {first})"
                    )
            else:
                values = [score for _, _, score in answered]
                metric, protocol = "containsAll", "VTCBench's containsAll, restated"
            if problems:
                failures[split] = "; ".join(problems)
            if values:
                mean = 100.0 * sum(values) / len(values)
                scores.append(SuiteScore(
                    group="vtc", task=split, metric=metric, value=mean, score=mean,
                    n=len(values), source="lvlm-judge VTCBench-Wild", protocol=protocol,
                    paper_table="table18_vtcbench_wild", paper_column=VTC_PAPER_COLUMNS[split],
                ))  # fmt: skip
        close = getattr(model_runner, "close", None)
        if callable(close):
            close()
        return scores, failures

    return evaluate


def _judge_memory(
    answered: Sequence[tuple[Any, str, float]], judge: MemoryJudge, out: Path
) -> list[float]:
    """The scores of the items judged; their verdicts land in Memory-judged.jsonl."""
    import json

    verdicts = judge.judge(
        [(item.item_id, item.problem, item.answers, prediction) for item, prediction, _ in answered]
    )
    path = out / "Memory-judged.jsonl"
    with atomic_path(path) as tmp:
        tmp.write_text("".join(
            json.dumps({"item_id": v.item_id, "verdict": v.verdict, "score": v.score,
                        "source": v.source, "judge_model": judge.model,
                        "prompt_version": judge.prompt.version}) + "\n"
            for v in verdicts if v is not None
        ), encoding="utf-8")  # fmt: skip
    return [v.score for v in verdicts if v is not None]


def run_suite(
    groups: Sequence[str],
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    lmms_model: LmmsModel | None = None,
    lmms_python: str | None = None,
    limit: int | None = None,
    include_path: str | Path | None = None,
    env: dict[str, str] | None = None,
    niah: Callable[[Path], ScoreTable] | None = None,
    niah_source: str = "lvlm-judge MM-NIAH (MMLongBench scorer)",
    vtc: Callable[[Path], tuple[list[SuiteScore], dict[str, str]]] | None = None,
    log: Callable[[str], None] = print,
) -> SuiteReport:
    """Run ``groups`` on ``checkpoint`` into ``out_dir``. ``niah(out)`` evaluates MM-NIAH and
    returns its niah-scores table (the CLI builds it from lvlm-judge's loaders and runner)."""
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise LmmsEvalError(f"unknown suite groups {unknown}; known: {list(GROUPS)}")
    out = Path(out_dir)
    report = SuiteReport(
        checkpoint=str(checkpoint), rope=read_rope(checkpoint), groups=list(groups)
    )
    lmms_groups = [g for g in groups if g in LMMS_GROUPS]
    if lmms_groups:
        if lmms_model is None or lmms_python is None:
            raise LmmsEvalError("the video and short groups need an lmms-eval model and python")
        log(f"lmms-eval {lmms_version(lmms_python)} in {lmms_python}")
        for group in lmms_groups:
            log(f"suite: {group}: {', '.join(LMMS_GROUPS[group])}")
            scores, failures = run_tasks(
                LMMS_GROUPS[group], lmms_model, out / group, group=group, python=lmms_python,
                include_path=include_path, limit=limit, env=env, specs=LMMS_TASKS,
            )  # fmt: skip
            report.scores += scores
            report.failures.update({f"{group}/{task}": why for task, why in failures.items()})
            for task, why in failures.items():
                log(f"suite: {group}/{task} failed: {why}")
            report.write(out)
    if "niah" in groups:
        if niah is None:
            report.failures["niah/mm-niah"] = "no MM-NIAH data given (--niah-data)"
        else:
            try:
                report.scores += niah_scores(niah(out / "niah"), niah_source)
            except Exception as error:  # one failing group is recorded; the others stand
                report.failures["niah/mm-niah"] = f"{type(error).__name__}: {error}"
        report.write(out)
    if "vtc" in groups:
        if vtc is None:
            report.failures["vtc/vtcbench-wild"] = "no VTCBench-Wild release given (--vtc-data)"
        else:
            try:
                scores, failures = vtc(out / "vtc")
                report.scores += scores
                report.failures.update({f"vtc/{split}": why for split, why in failures.items()})
            except Exception as error:  # one failing group is recorded; the others stand
                report.failures["vtc/vtcbench-wild"] = f"{type(error).__name__}: {error}"
    report.write(out)
    return report


def suite_row(report: SuiteReport) -> dict[str, float]:
    """Scores under the paper's column names where there is one, else the task name, and the
    paper's averages (``paper_averages``) where all their parts were scored."""
    row = {
        (score.paper_column or score.task)
        if score.group != "niah" else score.task: score.score
        for score in report.scores
        if score.score is not None
    }  # fmt: skip
    return row | paper_averages(report.scores)


SHORT_COLUMNS = tuple(
    spec.paper_column
    for spec in LMMS_TASKS.values()
    if spec.paper_table == "table3_short_context" and spec.paper_column
)


def paper_averages(scores: Sequence[SuiteScore]) -> dict[str, float]:
    """The paper's AVG columns, computed its way, where every part was scored:
    Short.AVG, the macro average of the six short-context benchmarks (Table 3, Appendix B.7);
    '<length>.AVG', MM-NIAH's macro average of its three task families at one length (Table
    17, Appendix B.4); VTC.AVG, VTCBench-Wild's overall score, the average of the three splits
    weighted by their item counts (Table 18, Appendix B.5: 800, 800 and 600 items)."""
    by_column = {s.paper_column: s for s in scores if s.score is not None and s.group != "niah"}
    averages: dict[str, float] = {}
    if all(column in by_column for column in SHORT_COLUMNS):
        parts = [by_column[column].score or 0.0 for column in SHORT_COLUMNS]
        averages["Short.AVG"] = sum(parts) / len(parts)
    niah: dict[str, list[float]] = defaultdict(list)
    for score in scores:
        if score.group == "niah" and score.score is not None:
            niah[score.task.split(".")[0]].append(score.score)
    for length, parts in niah.items():
        if len(parts) == len(NIAH_COLUMNS):
            averages[f"{length}.AVG"] = sum(parts) / len(parts)
    vtc = [by_column.get(column) for column in VTC_PAPER_COLUMNS.values()]
    if all(part is not None for part in vtc):
        weighted = [(part.score or 0.0, part.n) for part in vtc if part is not None]
        total = sum(n for _, n in weighted)
        if total:
            averages["VTC.AVG"] = sum(value * n for value, n in weighted) / total
    return averages


def provenance(report: SuiteReport) -> list[tuple[str, str]]:
    """(column, what produced its score and how it stands to the paper's column) per score."""
    rows = []
    for score in report.scores:
        column = (score.paper_column or score.task) if score.group != "niah" else score.task
        label = f"{score.source}; {score.metric}, n={score.n}"
        if score.protocol:
            label += f"; {score.protocol}"
        rows.append((column, label))
    return rows


PAPER_GENERALIZATION = (
    "table19_long_video", "table3_short_context", "table17_mm_niah", "table18_vtcbench_wild",
)  # fmt: skip
"""The paper's tables whose columns the suite reproduces (suite_row's keys)."""


def read_suite_reports(paths: Sequence[Path]) -> tuple[list[SuiteReport], list[Path]]:
    """Suite reports among ``paths`` (folders holding suite.json, or suite.json files), and
    the other paths."""
    reports: list[SuiteReport] = []
    rest: list[Path] = []
    for path in paths:
        file = path / "suite.json" if path.is_dir() else path
        if file.name == "suite.json" and file.is_file():
            reports.append(SuiteReport.model_validate_json(file.read_text(encoding="utf-8")))
        else:
            rest.append(path)
    return reports, rest


def paper_generalization_row(data: dict[str, Any], row: str) -> dict[str, float]:
    """One paper row's generalization scores under suite_row's column names; MM-NIAH's table
    is per length, so its columns become '<length>.<column>'; VTCBench-Wild's 'VTC.<column>';
    the short-context AVG 'Short.AVG'."""
    values: dict[str, float] = {}
    for table in PAPER_GENERALIZATION:
        section = data.get(table, {})
        if table == "table17_mm_niah":
            for length, rows in section.items():
                for column, value in rows.get(row, {}).items():
                    values[f"{length}.{column}"] = float(value)
        elif table == "table18_vtcbench_wild":
            for column, value in section.get(row, {}).items():
                values[f"VTC.{column}"] = float(value)
        elif table == "table3_short_context":
            for column, value in section.get(row, {}).items():
                values["Short.AVG" if column == "AVG" else column] = float(value)
        else:
            values.update({k: float(v) for k, v in section.get(row, {}).items()})
    return values


def generalization_rows(
    reports: Sequence[SuiteReport],
    paper_table: Path | None = None,
    paper_rows: Sequence[str] = (),
) -> list[tuple[str, dict[str, float]]]:
    """Suite reports beside the paper's rows (labelled as the paper's)."""
    import json

    rows = [(f"{Path(r.checkpoint).name} [suite]", suite_row(r)) for r in reports]
    if paper_table is not None:
        data = json.loads(Path(paper_table).read_text(encoding="utf-8"))
        for name in paper_rows:
            found = paper_generalization_row(data, name)
            if found:
                rows.append((f"paper: {name} (generalization)", found))
    return rows
