"""`mmprolong`: the whole MMProLong pipeline from one recipe file, and every package's CLI.

The package CLIs are mounted lazily (imported only when their subcommand runs), so
`mmprolong --help` does not import torch or transformers.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mmprolong import __version__
from mmprolong_runtime.cli_app import fail, package_app
from mmprolong_runtime.errors import InputError

if TYPE_CHECKING:
    from mmprolong.orchestrator import StageLaunched
    from mmprolong_schemas import Recipe

PACKAGE_APPS: dict[str, tuple[str, str]] = {
    "pool": ("docpool.cli", "PDFs -> a deduplicated, layout-parsed document pool (docpool)."),
    "synth": ("qasynth.cli", "Pool -> segments, QA pairs, samples and mixtures (qasynth)."),
    "rope": ("longctx_rope.cli", "Extend the (m)RoPE of a Qwen-VL checkpoint (longctx-rope)."),
    "train": ("seqpar_train.cli", "LongPT training with Ulysses SP + FSDP2 (seqpar-train)."),
    "eval": ("lvlm_judge.cli", "Long-context evaluation and judging (lvlm-judge)."),
}


app = package_app(
    "mmprolong",
    __version__,
    help="The MMProLong pipeline: PDFs -> synthesized long-document VQA -> LongPT -> evaluation, "
    "driven by one recipe file. `mmprolong demo` runs all of it on CPU in minutes.",
    rich_markup_mode=None,
)
console = Console(stderr=True)
out = Console()

STAGE_HELP = "One of pool, synth, mix, rope, train, sft (with train.extra_sft), eval, report."
LAUNCH_EXIT = 3
"""Exit code of `run` stopped at a stage whose multi-node job is to be launched."""


def _plan_table(plans: list[Any], title: str, actions: bool = True) -> Table:
    table = Table(title=title)
    for column in ("stage", "state", "counts", "action")[: 4 if actions else 3]:
        table.add_column(column)
    colours = {"done": "green", "partial": "yellow", "stale": "magenta", "pending": "white"}
    for plan in plans:
        counts = ", ".join(f"{key} {value}" for key, value in plan.counts.items()) or "-"
        if not plan.will_run:
            action = "skip" if plan.state == "done" else "-"
        else:
            action = {
                "done": "redo (--from)",
                "partial": "resume",
                "stale": "redo",
                "pending": "run",
            }[plan.state]
        state = f"[{colours[plan.state]}]{plan.state}[/]" + (
            f" ({plan.reason})" if plan.reason else ""
        )
        table.add_row(plan.name, state, counts, *([action] if actions else []))
    return table


def _announce(plans: list[Any]) -> None:
    console.print(_plan_table(plans, "Plan"))
    stale = [plan for plan in plans if plan.state == "stale" and plan.will_run]
    if stale:
        first = stale[0]
        console.print(
            f"[magenta]The config of stage {first.name!r} changed since it ran: "
            f"{', '.join(plan.name for plan in stale)} will be redone and their old outputs "
            "deleted.[/magenta]"
        )


def _run_recipe(
    recipe_arg: str,
    run_dir: Path | None,
    from_stage: str | None,
    until: str | None,
    pdfs: list[Path],
    dry_run: bool,
    executor: str = "local",
    ray_address: str | None = None,
    restart: bool = False,
) -> Path:
    from mmprolong.orchestrator import (
        Execution,
        Pipeline,
        StageFailed,
        StageLaunched,
        StageUnavailable,
    )
    from mmprolong.recipes import apply_overrides, load_recipe
    from mmprolong.stages import default_stages

    try:
        recipe = load_recipe(recipe_arg)
        if pdfs:
            recipe = apply_overrides(
                recipe, {"pool.inputs": [str(p.resolve()) for p in pdfs]}, "--pdfs"
            )
        execution = Execution(executor, ray_address)  # type: ignore[arg-type]
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    target = run_dir or Path("runs") / recipe.name
    pipeline = Pipeline(default_stages(recipe), target, execution)
    console.print(f"recipe [bold]{recipe.name}[/bold] -> run directory {target}")
    if dry_run:
        try:
            plans = pipeline.plan(recipe, from_stage=from_stage, until=until)
        except ValueError as error:
            fail(str(error))
        _announce(plans)
        return target
    try:
        pipeline.run(
            recipe,
            from_stage=from_stage,
            until=until,
            command=sys.argv,
            log=lambda message: console.print(message),
            on_plan=_announce,
            restart=restart,
        )
    except StageLaunched as error:
        _stopped_for_launch(error, target, recipe)
    except StageFailed as error:
        cause = error.__cause__
        detail = str(cause) if isinstance(cause, StageUnavailable) else str(error)
        # A stage failed: a failed run (exit 1), not bad input.
        fail(
            f"{detail}\nEverything finished so far is kept; rerun the same command to resume.",
            exit_code=1,
        )
    except (ValueError, RuntimeError) as error:
        fail(str(error))
    console.print(_plan_table(pipeline.plan(recipe), "Finished", actions=False))
    return target


def _stopped_for_launch(error: StageLaunched, run_dir: Path, recipe: Recipe) -> None:
    from mmprolong.launch import node_commands

    console.print(f"[yellow]{error}[/yellow]", soft_wrap=True, highlight=False)
    for path in error.files:
        console.print(f"  wrote {path}", soft_wrap=True, highlight=False)
    sbatch = next((path for path in error.files if path.name == "sbatch.sh"), None)
    if sbatch is not None:
        console.print(f"Slurm:\n  sbatch {sbatch.resolve()}", soft_wrap=True, highlight=False)
    console.print("Or on every node (node rank last):", highlight=False)
    for command in node_commands(run_dir, error.stage, recipe.train.parallel.nodes):
        console.print(f"  {command}", soft_wrap=True, highlight=False, markup=False)
    console.print(
        "When the job has finished, rerun the same `mmprolong run` command: it continues after "
        f"stage {error.stage!r}.",
        highlight=False,
    )
    raise typer.Exit(LAUNCH_EXIT)


def _mount(name: str, module_name: str, help_text: str) -> None:
    """``mmprolong NAME ...`` hands its arguments to the package's own typer app, imported
    only when the subcommand runs."""

    @app.command(
        name,
        help=f"{help_text} Everything after `{name}` goes to that package's CLI; try "
        f"`mmprolong {name} --help`.",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )
    def forward(ctx: typer.Context) -> None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            fail(
                f"`mmprolong {name}` needs {module_name}, which cannot be imported: {error}",
                exit_code=1,
            )
        debug = ["--debug"] if ctx.find_root().params.get("debug") else []
        module.app(args=[*debug, *ctx.args], prog_name=f"mmprolong {name}")


@app.command()
def run(
    recipe: Annotated[str, typer.Argument(help="Recipe TOML file, or a shipped recipe's name.")],
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Run directory [default: runs/<recipe name>].")
    ] = None,
    from_stage: Annotated[
        str | None,
        typer.Option("--from", help=f"Redo this stage and all after it. {STAGE_HELP}"),
    ] = None,
    until: Annotated[str | None, typer.Option(help=f"Stop after this stage. {STAGE_HELP}")] = None,
    pdfs: Annotated[
        list[Path] | None,
        typer.Option("--pdfs", help="PDF file or folder to pool (repeatable); sets pool.inputs."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Print the plan and change nothing.")] = False,
    executor: Annotated[
        str,
        typer.Option(
            help="Where the data stages' per-record work runs: 'local' (this machine's "
            "processes) or 'ray' (pool ingest, teacher calls as actors, assembly, mixing and "
            "scoring on a Ray cluster; needs the packages' [ray] extra). Not part of the "
            "recipe: both write the same records."
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster to join with --executor ray [default: a local instance]."),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Let a stale stage's folder (or one --from redoes) be cleared even when it "
            "holds checkpoints or predictions (without it such a stage is refused).",
        ),
    ] = False,
) -> None:
    """Run a recipe through pool -> synth -> mix -> rope -> train -> eval -> report.

    Finished stages are skipped, interrupted ones resume, and a stage whose settings changed
    is redone together with every stage after it (the plan says so before anything runs).
    A recipe with train.extra_sft adds an sft stage after train. A training stage on more
    than one node stops the run (exit code 3) after writing its launch files (torchrun per
    node, sbatch) into RUN/<stage>/launch/; rerun once that job has finished."""
    _run_recipe(
        recipe, run_dir, from_stage, until, pdfs or [], dry_run, executor, ray_address, restart
    )


@app.command("launch-train")
def launch_train(
    run_dir: Annotated[Path, typer.Argument(help="The run directory `mmprolong run` prepared.")],
    stage: Annotated[str, typer.Option(help="The training stage to join: train or sft.")] = "train",
    timeout: Annotated[
        float, typer.Option(help="Seconds a collective may wait for the other ranks.")
    ] = 1800.0,
) -> None:
    """Join a multi-node training stage as one process of its job: start it on every node
    with torchrun (or srun, one task per device), as the launch files `mmprolong run` wrote
    do. Every rank trains; rank 0 writes the stage's manifest and export. Afterwards rerun
    `mmprolong run` to continue with the stages after it."""
    from mmprolong.launch import join_stage
    from mmprolong.orchestrator import StageFailed

    try:
        counts = join_stage(
            run_dir, stage, log=lambda message: console.print(message), timeout_s=timeout
        )
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    except RuntimeError as error:  # the stage ran and failed: a failed run (exit 1)
        fail(str(error.__cause__) if isinstance(error, StageFailed) else str(error), exit_code=1)
    if counts is not None:
        console.print(
            f"stage {stage} done: " + ", ".join(f"{key} {value}" for key, value in counts.items())
        )


@app.command()
def status(run_dir: Annotated[Path, typer.Argument(help="A run directory.")]) -> None:
    """Show each stage of a run as done, partial, stale or pending, with its counts."""
    from mmprolong.orchestrator import Pipeline, load_run_recipe
    from mmprolong.stages import default_stages

    try:
        recipe = load_run_recipe(run_dir)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    plans = Pipeline(default_stages(recipe), run_dir).plan(recipe)
    out.print(_plan_table(plans, f"{recipe.name} in {run_dir}", actions=False))


@app.command()
def recipes(
    name: Annotated[str | None, typer.Argument(help="Print this shipped recipe's TOML.")] = None,
) -> None:
    """List the shipped recipes, or print one."""
    from mmprolong.recipes import load_recipe, shipped_recipes

    shipped = shipped_recipes()
    if name is not None:
        if name.removesuffix(".toml") not in shipped:
            fail(f"no shipped recipe {name!r}; shipped: {', '.join(shipped)}")
        out.print(shipped[name.removesuffix(".toml")], markup=False, highlight=False)
        return
    table = Table(title="Shipped recipes")
    table.add_column("name")
    table.add_column("description")
    for recipe_name in shipped:
        table.add_row(recipe_name, load_recipe(recipe_name).description)
    out.print(table)


@app.command()
def sweep(
    name: Annotated[str, typer.Argument(help="Sweep name, e.g. ablation-ratio; see --list.")] = "",
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the run configs and runs [default: sweeps/<name>]."),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(help="Recipe the sweep varies [default: the final recipe]; e.g. demo-tiny."),
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only these runs of the grid (repeatable).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Write the run configs and print each run's plan; run nothing.")
    ] = False,
    list_sweeps: Annotated[bool, typer.Option("--list", help="List the sweeps and exit.")] = False,
) -> None:
    """Write the run configs of an ablation grid, then run them one after another."""
    from mmprolong.recipes import load_recipe
    from mmprolong.sweeps import SWEEPS, get_sweep, write_sweep

    if list_sweeps or not name:
        table = Table(title="Sweeps")
        for column in ("name", "runs", "description"):
            table.add_column(column)
        for sweep_def in SWEEPS.values():
            table.add_row(
                sweep_def.name, ", ".join(r.name for r in sweep_def.runs), sweep_def.description
            )
        out.print(table)
        return
    try:
        definition = get_sweep(name)
        base_recipe = load_recipe(base) if base else None
    except (KeyError, FileNotFoundError, ValueError) as error:
        fail(str(error.args[0] if isinstance(error, KeyError) else error))
    target = out_dir or Path("sweeps") / name
    paths = write_sweep(definition, target, base_recipe)
    console.print(f"wrote {len(paths)} run configs of {name} to {target}")
    selected = [path for path in paths if not only or path.stem in only]
    unknown = set(only or []) - {path.stem for path in paths}
    if unknown:
        fail(f"no run named {', '.join(sorted(unknown))} in {name}")
    failed = []
    for path in selected:
        console.rule(f"{name}: {path.stem}")
        try:
            _run_recipe(str(path), target / path.stem, None, None, [], dry_run)
        except (typer.Exit, InputError) as error:
            # One failed run does not stop the grid; rerunning the sweep resumes it.
            if isinstance(error, InputError):
                console.print(f"[red]error:[/red] {error}", soft_wrap=True, highlight=False)
            failed.append(path.stem)
    if failed:
        fail(f"{len(failed)} of {len(selected)} runs failed: {', '.join(failed)}", exit_code=1)


@app.command()
def doctor(
    recipe: Annotated[
        str, typer.Option(help="Recipe whose stage choices to check.")
    ] = "mmprolong-qwen2.5-vl-7b",
    disk: Annotated[Path, typer.Option(help="Where runs will be written (for free space).")] = Path(
        "."
    ),
    gpu: Annotated[
        str | None,
        typer.Option(
            help="GPU to plan training memory for (default: this machine's); the planner "
            "runs the step on the CPU, a few minutes at 128K."
        ),
    ] = None,
) -> None:
    """Report GPUs, CUDA, attention kernels, engines, disk and versions, and what each stage
    would use with RECIPE on this machine, and whether its training step fits the GPU."""
    from mmprolong.doctor import machine_findings, probe, stage_picks
    from mmprolong.recipes import load_recipe

    try:
        chosen = load_recipe(recipe)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    machine = probe(disk)
    colours = {"ok": "green", "missing": "red", "warn": "yellow", "info": "white"}
    for title, findings in (
        ("This machine", machine_findings(machine)),
        (f"Stage choices for {chosen.name}", stage_picks(chosen, machine)),
    ):
        table = Table(title=title)
        for column in ("area", "item", "status", "detail"):
            table.add_column(column)
        for finding in findings:
            table.add_row(
                finding.area,
                finding.name,
                f"[{colours[finding.status]}]{finding.status}[/]",
                finding.detail,
            )
        out.print(table)
    target = gpu or (machine.gpus[0] if machine.gpus else None)
    if target and chosen.demo is None:
        from mmprolong.memory_plan import check_recipe, refusal
        from seqpar_train.planner import plan_table

        result, alternatives = check_recipe(chosen, target)
        if result is not None:
            out.print(plan_table(result))
            if result.fits is False:
                out.print(f"[red]{refusal(result, alternatives)}[/red]")


@app.command()
def demo(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="Run directory.")] = Path("runs/demo"),
) -> None:
    """The whole pipeline on CPU with no downloads: generated PDFs, rules teacher, a tiny
    Qwen2.5-VL trained with SP=2 on 2 processes, evaluation of base vs trained, a report.
    Rerunning resumes; the report's path is printed at the end."""
    from mmprolong.report import REPORT_FILE
    from mmprolong.stages.report import REPORT_DIR

    started = time.perf_counter()
    target = _run_recipe("demo-tiny", run_dir, None, None, [], False)
    report = target / REPORT_DIR / REPORT_FILE
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s; the report:")
    out.print(str(report.resolve()), soft_wrap=True, highlight=False)


for _name, (_module, _help) in PACKAGE_APPS.items():
    _mount(_name, _module, _help)


if __name__ == "__main__":
    app()
