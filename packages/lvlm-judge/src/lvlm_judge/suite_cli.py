"""`lvlm-judge suite`: the paper's generalization benchmarks on one checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from lvlm_judge.cli import _lengths, app, console
from mmprolong_runtime.cli_app import fail


@app.command()
def suite(
    checkpoint: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="Checkpoint folder (config.json with its rope)."
    ),
    groups: str = typer.Option(
        "video,short,niah,vtc",
        help="Comma-separated groups: video (videomme, mlvu_dev, longvideobench_val_v), short "
        "(MMBench, RealWorldQA, MMMU, MMMU-Pro, MathVista, OCRBench), niah (MM-NIAH), vtc "
        "(VTCBench-Wild Retrieval, Reasoning and Memory).",
    ),
    out: Path = typer.Option(
        Path("lvlm-judge-suite"), help="Output folder; suite.json lands here."
    ),
    lmms_python: str = typer.Option(
        sys.executable,
        help="Interpreter of the environment holding lmms-eval; it runs as a separate process "
        "so its pins never reach ours [default: this interpreter].",
    ),
    min_pixels: int = typer.Option(3136, help="Vision min pixels (Qwen2.5-VL checkpoint: 3136)."),
    max_pixels: int = typer.Option(
        12845056, help="Vision max pixels (Qwen2.5-VL checkpoint: 12845056)."
    ),
    max_num_frames: int = typer.Option(32, help="Frames sampled per video."),
    attn: str | None = typer.Option(
        None, help="Attention backend: flash_attention_2, sdpa or eager [default: the model's]."
    ),
    device_map: str = typer.Option("auto", help="Device map for the model."),
    lmms_base_url: str | None = typer.Option(
        None,
        help="Evaluate the checkpoint served at this OpenAI-compatible URL (e.g. by vLLM) "
        "through lmms-eval's openai model instead of loading it in lmms-eval; the server's "
        "pixel and frame settings then apply.",
    ),
    lmms_served_name: str | None = typer.Option(
        None, help="The served model's name with --lmms-base-url [default: the folder name]."
    ),
    limit: int | None = typer.Option(None, help="Items per task (a smoke run, not a score)."),
    include_path: Path | None = typer.Option(None, help="Extra lmms-eval task folder."),
    niah_data: Path | None = typer.Option(
        None, help="MMLongBench's mmlb_data/ (or its NIAH/ folder) for the niah group."
    ),
    niah_lengths: str = typer.Option("64K,128K", help="MM-NIAH lengths (the paper's: 64K,128K)."),
    image_root: Path | None = typer.Option(None, help="MMLongBench's mmlb_image/ for MM-NIAH."),
    max_new_tokens: int = typer.Option(128, help="MM-NIAH and VTCBench-Wild answer length."),
    vtc_data: Path | None = typer.Option(
        None, help="VTCBench-Wild release (hf download --repo-type dataset MLLM-CL/VTCBench)."
    ),
    vtc_instructions: Path | None = typer.Option(
        None,
        help="JSON of split -> instruction given before each problem [default: read from "
        "--vtc-source].",
    ),
    vtc_source: Path | None = typer.Option(
        None,
        exists=True,
        file_okay=False,
        help="Your checkout of github.com/Moenupa/VTCBench: its per-split instructions and its "
        "Memory judge prompt, model and request parameters are read from it at run time "
        "(Memory then labelled as VTCBench's protocol). Without it, our judge wording.",
    ),
    judge_model: str | None = typer.Option(
        None, help="Memory judge model [default: the one --vtc-source names (gpt-4o-mini)]."
    ),
    judge_base_url: str | None = typer.Option(
        None, help="Memory judge server [default: $OPENAI_BASE_URL]; key from $OPENAI_API_KEY."
    ),
    judge_cache: Path | None = typer.Option(
        None, help="Judge cache (SQLite) [default: OUT/judge-cache.sqlite]."
    ),
) -> None:
    """Run the paper's generalization groups on a checkpoint: long video and short-context
    skills through lmms-eval, MM-NIAH through lvlm-judge. A failing task is reported and the
    others go on; scores are labelled with what produced them."""
    from lvlm_judge.lmms import LmmsEvalError, LmmsModel, qwen2_5_vl_model
    from lvlm_judge.suite import LMMS_GROUPS, mm_niah, provenance, run_suite, suite_row, vtc_wild
    from lvlm_judge.vtc_judge import make_memory_judge

    chosen = [g.strip() for g in groups.split(",") if g.strip()]
    try:
        model = None
        if any(g in LMMS_GROUPS for g in chosen) and lmms_base_url is not None:
            name = lmms_served_name or checkpoint.name
            model = LmmsModel("openai", {"model_version": name, "base_url": lmms_base_url})
        elif any(g in LMMS_GROUPS for g in chosen):
            model = qwen2_5_vl_model(
                checkpoint, min_pixels=min_pixels, max_pixels=max_pixels,
                max_num_frames=max_num_frames, attn_implementation=attn, device_map=device_map,
            )  # fmt: skip
        niah = None
        if "niah" in chosen and niah_data is not None:
            niah = mm_niah(
                checkpoint, niah_data, lengths=_lengths(niah_lengths), image_root=image_root,
                max_new_tokens=max_new_tokens, device_map=device_map, limit=limit,
            )  # fmt: skip
        vtc = None
        if "vtc" in chosen and vtc_data is not None:
            memory_judge = None
            if judge_model is not None or vtc_source is not None:
                memory_judge = make_memory_judge(
                    judge_model, judge_cache or out / "judge-cache.sqlite",
                    base_url=judge_base_url, vtc_source=vtc_source,
                )  # fmt: skip
            vtc = vtc_wild(
                checkpoint, vtc_data, vtc_instructions, vtc_source=vtc_source,
                memory_judge=memory_judge, max_new_tokens=max_new_tokens,
                device_map=device_map, limit=limit,
            )  # fmt: skip
        report = run_suite(
            chosen, checkpoint, out, lmms_model=model, lmms_python=lmms_python, limit=limit,
            include_path=include_path, niah=niah, vtc=vtc, log=console.print,
        )  # fmt: skip
    except (LmmsEvalError, ValueError) as error:  # ValueError: bad judge or --vtc-source
        fail(str(error))
    from lvlm_judge.results import markdown

    typer.echo(markdown([(f"{checkpoint.name} (suite)", suite_row(report))]))
    for column, what in provenance(report):
        console.print(f"{column}: {what}", markup=False, highlight=False)
    for task, why in report.failures.items():
        console.print(f"[red]failed[/red] {task}: {why}", markup=True, highlight=False)
    if not report.scores:
        # The tasks ran and failed: a failed run (exit 1), not bad input.
        fail(f"no score was produced; see {out / 'suite.json'} for each task's reason", exit_code=1)


@app.command("import-lmms-eval")
def import_lmms_eval(
    results: list[Path] = typer.Argument(
        ..., exists=True, dir_okay=False, help="lmms-eval <date>_results.json files."
    ),
    checkpoint: str = typer.Option(..., help="What was evaluated (a path or a name)."),
    group: str = typer.Option("imported", help="Group name recorded with the scores."),
    out: Path = typer.Option(..., help="Folder for suite.json (then `report` shows it)."),
) -> None:
    """Read results lmms-eval wrote elsewhere into a suite.json, labelled with the lmms-eval
    version and model that produced them."""
    from lvlm_judge.lmms import LmmsEvalError, import_results
    from lvlm_judge.results import markdown
    from lvlm_judge.suite import SuiteReport, suite_row

    try:
        scores = [score for path in results for score in import_results(path, group=group)]
    except LmmsEvalError as error:
        fail(str(error))
    if not scores:
        fail("the results files hold no score")
    report = SuiteReport(checkpoint=checkpoint, groups=[group], scores=scores)
    console.print(f"{len(scores)} scores written to {report.write(out)}")
    typer.echo(markdown([(f"{checkpoint} (lmms-eval)", suite_row(report))]))
