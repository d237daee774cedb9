"""`seqpar-train` command line: train, flops, export, selfcheck."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mmprolong_runtime.cli_app import fail, option_value, package_app
from mmprolong_schemas import ModelFamily, format_tokens, parse_tokens
from seqpar_train import __version__

app = package_app(
    "seqpar-train",
    __version__,
    help="LongPT trainer for Qwen2.5-VL / Qwen3-VL: Ulysses SP + FSDP2 + varlen attention.",
)
console = Console(stderr=True)


def _under_launcher() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


@app.command()
def train(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="TOML config file."),
    overrides: list[str] = typer.Argument(
        None, help="key.sub=value settings applied over the file, e.g. parallel.sp=2 max_steps=10."
    ),
    nproc_per_node: int = typer.Option(
        None, "--nproc-per-node", help="Processes (GPUs) per node; default parallel.nproc_per_node."
    ),
    nnodes: int = typer.Option(None, "--nnodes", help="Nodes; default parallel.nnodes."),
    node_rank: int = typer.Option(0, "--node-rank", help="This node's rank (multi-node)."),
    master_addr: str = typer.Option("127.0.0.1", "--master-addr", help="Rendezvous host."),
    master_port: int = typer.Option(29500, "--master-port", help="Rendezvous port."),
) -> None:
    """Train. The typed config is printed at start. With more than one process in total,
    relaunches itself through torchrun, unless torchrun (or Slurm + torchrun) launched it."""
    from seqpar_train.config import load_config

    items = list(overrides or [])
    if nproc_per_node is not None:
        items.append(f"parallel.nproc_per_node={nproc_per_node}")
    if nnodes is not None:
        items.append(f"parallel.nnodes={nnodes}")
    try:
        settings = load_config(config, items)
    except ValueError as error:
        fail(f"invalid config: {error}")
    world = settings.parallel.nproc_per_node * settings.parallel.nnodes
    if world > 1 and not _under_launcher():
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={settings.parallel.nproc_per_node}",
            f"--nnodes={settings.parallel.nnodes}",
            f"--node-rank={node_rank}",
            f"--master-addr={master_addr}",
            f"--master-port={master_port}",
            "-m",
            "seqpar_train.cli",
            "train",
            str(config),
            *items,
        ]
        console.print("launching: " + " ".join(command))
        raise typer.Exit(subprocess.call(command))
    from seqpar_train.trainer import train as run_training

    result = run_training(settings)
    if result.stopped_early:
        raise typer.Exit(0)


@app.command()
def flops(
    model: str = typer.Option(
        "qwen2.5-vl-7b", help="Preset (qwen2.5-vl-7b, qwen3-vl-8b) or a checkpoint folder."
    ),
    seq_len: str = typer.Option("128K", help="Row length in tokens."),
    doc_len: str = typer.Option(
        None, help="Document length inside a row (attention is per document); default = row."
    ),
    gpus: int = typer.Option(64, help="Devices in the job."),
    gpu: str = typer.Option("H20", help="Device name, e.g. H20, 'H100 PCIe', 'NVIDIA H200'."),
    peak_tflops: float = typer.Option(
        None, "--peak-tflops", help="Dense bf16 peak per device; default: the --gpu's figure."
    ),
    budget: str = typer.Option("5B", help="Training token budget (tokens trained)."),
    global_batch: str = typer.Option("4M", help="Row tokens per optimizer step."),
    row_fill: float = typer.Option(
        1.0, help="Share of a row that is real tokens (whole-sample packing: about 0.77)."
    ),
    mfu: float = typer.Option(0.35, help="Assumed model FLOPs utilisation (causal FLOPs)."),
) -> None:
    """Step FLOPs (text and vision tower) in our causal convention and VeOmni's 12*sum(s^2)
    one, step time, time to budget and GPU-hours for a model and cluster. Rows are made of
    pages rendered at 144 DPI (US letter) as the recipe's documents are."""
    from seqpar_train.flops import estimate, page_row, preset_arch
    from seqpar_train.hardware import device_peak_tflops
    from seqpar_train.presets import preset_vision

    try:
        arch = preset_arch(model)
        vision = preset_vision(model)
    except (ValueError, OSError) as error:
        fail(str(error))
    if not 0 < row_fill <= 1:
        fail(f"--row-fill {row_fill} is not in (0, 1]")
    peak = device_peak_tflops(gpu, peak_tflops)
    if peak is None:
        fail(f"no peak known for --gpu {gpu!r}; give --peak-tflops")
    length = option_value(parse_tokens, seq_len, "--seq-len")
    row = page_row(
        arch,
        seq_len=int(length * row_fill),
        doc_len=option_value(parse_tokens, doc_len, "--doc-len") if doc_len else None,
        factor=vision.factor,
        min_pixels=vision.min_pixels,
        max_pixels=vision.max_pixels,
    )
    result = estimate(
        arch,
        row=row,
        row_length=length,
        global_batch_tokens=option_value(parse_tokens, global_batch, "--global-batch"),
        token_budget=option_value(parse_tokens, budget, "--budget"),
        gpus=gpus,
        peak_tflops=peak,
        mfu=mfu,
    )
    ratio = result.step_flops_veomni / result.step_flops_causal
    table = Table(title=f"{model}, {seq_len} rows, {gpus} x {gpu} ({peak:g} TFLOP/s bf16 dense)")
    table.add_column("quantity")
    table.add_column("causal (ours)", justify="right")
    table.add_column("12*sum(s^2) (VeOmni)", justify="right")
    rows = [
        ("tokens trained per step", format_tokens(result.tokens_per_step), ""),
        ("page images per row", str(len(row.image_grids)), ""),
        ("steps (budget / tokens per step)", str(result.steps), ""),
        ("step FLOPs", f"{result.step_flops_causal:.3e}", f"{result.step_flops_veomni:.3e}"),
        ("vision tower share", f"{result.vision_share_causal:.1%}", ""),
        ("MFU", f"{mfu:.1%} (assumed)", f"{mfu * ratio:.1%} (same step time)"),
        ("step time", f"{result.step_seconds:.1f} s", ""),
        ("time to budget", f"{result.total_hours:.1f} h", ""),
        ("GPU-hours", f"{result.gpu_hours:.0f}", ""),
    ]
    for key, ours, peers in rows:
        table.add_row(key, ours, peers)
    Console().print(table)


@app.command()
def plan(
    model: str = typer.Option(
        "qwen2.5-vl-7b", help="Preset (qwen2.5-vl-7b, qwen3-vl-8b) or a checkpoint folder."
    ),
    gpus: int = typer.Option(8, help="GPUs in the job."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", help="GPUs per node."),
    gpu: str = typer.Option("H20", help="GPU name: its memory and bf16 peak (H20, H100, ...)."),
    memory_gb: float = typer.Option(None, "--memory-gb", help="GPU memory, overrides --gpu's."),
    peak_tflops: float = typer.Option(None, "--peak-tflops", help="Overrides --gpu's peak."),
    seq_len: str = typer.Option("128K", help="Row length in tokens."),
    sp: int = typer.Option(2, help="Ulysses SP size."),
    fsdp: int = typer.Option(-1, help="FSDP shard size (-1: every rank left by SP)."),
    activation_checkpointing: bool = typer.Option(
        True, "--ac/--no-ac", help="Activation checkpointing."
    ),
    cpu_offload: bool = typer.Option(
        False,
        "--offload/--no-offload",
        help="FSDP CPU offload: sharded parameters, gradients and optimizer state in host "
        "memory (reported); the copies are added to the step time at --link-gbps.",
    ),
    link_gbps: float = typer.Option(
        25.0, "--link-gbps", help="Assumed host<->GPU copy bandwidth per GPU (GB/s), offload."
    ),
    margin: float = typer.Option(0.1, help="Share of GPU memory kept free."),
    mfu: float = typer.Option(0.35, help="Assumed MFU (causal FLOPs) for step time."),
    budget: str = typer.Option("5B", help="Token budget (tokens trained)."),
    global_batch: str = typer.Option("4M", help="Row tokens per optimizer step."),
    row_fill: float = typer.Option(0.77, help="Real tokens per row slot, for step count."),
    search: bool = typer.Option(
        False,
        "--search",
        help="Try SP / checkpointing / offload settings; list those that fit, fastest first.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Peak memory per GPU and step time of a training setup, before the job is scheduled.

    The real training step (model wrapping, SP forward, fully_shard, AdamW) runs on this
    CPU under torch's FakeTensorMode as rank 0 of a fake process group of --gpus ranks, on a
    row of pages rendered at 144 DPI; torch's FSDPMemTracker records the memory. Figures are
    estimates, not measurements. Exit code 1 when nothing fits."""
    import json

    from seqpar_train.planner import PlanSetup, plan_table, search_setups
    from seqpar_train.planner import plan as make_plan

    try:
        setup = PlanSetup(
            model=model,
            gpus=gpus,
            gpus_per_node=gpus_per_node,
            gpu=gpu,
            memory_gb=memory_gb,
            peak_tflops=peak_tflops,
            seq_len=option_value(parse_tokens, seq_len, "--seq-len"),
            sp=sp,
            fsdp=fsdp,
            activation_checkpointing=activation_checkpointing,
            cpu_offload=cpu_offload,
            host_link_gbps=link_gbps,
            margin=margin,
            mfu=mfu,
            token_budget=option_value(parse_tokens, budget, "--budget"),
            global_batch_tokens=option_value(parse_tokens, global_batch, "--global-batch"),
            row_fill=row_fill,
        )
        plans = search_setups(setup) if search else [make_plan(setup)]
    except ValueError as error:
        fail(str(error))
    if as_json:
        typer.echo(json.dumps([p.model_dump(mode="json") for p in plans], indent=1))
    else:
        for result in plans:
            Console().print(plan_table(result))
        if search and not plans:
            console.print("[red]no SP / checkpointing / offload setting fits[/red]")
    if not plans or (not search and plans[0].fits is False):
        raise typer.Exit(1)


@app.command()
def export(
    config: Path = typer.Argument(..., exists=True, dir_okay=False, help="The run's TOML config."),
    out: Path = typer.Option(..., "--out", help="New directory for the HF model."),
    checkpoint: Path = typer.Option(
        None, help="Checkpoint directory (default: the run's latest complete one)."
    ),
    dtype: str = typer.Option("bfloat16", help="Saved dtype: bfloat16 or float32."),
    overrides: list[str] = typer.Argument(None, help="key.sub=value settings over the file."),
) -> None:
    """Export a checkpoint to HF safetensors with the extended rope config (both forms)."""
    import torch

    from seqpar_train.config import load_config
    from seqpar_train.export import export_hf

    if dtype not in ("bfloat16", "float32"):
        fail(f"--dtype {dtype!r} is not bfloat16 or float32")
    try:
        settings = load_config(config, list(overrides or []))
    except ValueError as error:
        fail(f"invalid config: {error}")
    target = export_hf(settings, out, checkpoint, getattr(torch, dtype))
    console.print(f"exported to {target}")


@app.command()
def selfcheck(
    sp: int = typer.Option(2, help="Ulysses SP size for the SP-vs-single check (0 skips it)."),
    fsdp: int = typer.Option(2, help="FSDP ranks for the FSDP-vs-single check (0 skips it)."),
    attn: str = typer.Option(
        "auto", help="Attention backend: auto, flash, torch-varlen, flex, sdpa."
    ),
    family: str = typer.Option("qwen2.5-vl", help="Tiny model family: qwen2.5-vl or qwen3-vl."),
) -> None:
    """Check a cluster before spending GPU hours: the attention kernels in bf16 against a
    float64 reference, then a tiny model's SP-vs-single gradients and FSDP-vs-single
    training on the devices present; prints the largest differences."""
    from seqpar_train.selfcheck import Scenario, check_fsdp, check_kernels, check_sp

    option_value(ModelFamily, family, "--family")  # before minutes of kernel checks
    # First the attention kernels training will use here, in bf16 against float64.
    comparisons = check_kernels()
    if sp > 1:
        comparisons += check_sp([Scenario(family, attention=attn)], sp=sp)
    if fsdp > 1:
        comparisons += check_fsdp(family, nproc=fsdp, attention=attn)
    for comparison in comparisons:
        typer.echo(comparison.line())
    failed = [c for c in comparisons if not c.passed]
    typer.echo("FAIL" if failed else "PASS")
    raise typer.Exit(1 if failed else 0)


if __name__ == "__main__":
    app()
