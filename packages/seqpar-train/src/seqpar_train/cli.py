"""`seqpar-train` command line: train, flops, export, selfcheck."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from mmprolong_schemas import format_tokens, parse_tokens
from mmprolong_schemas.cli_app import package_app
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
        console.print(f"[red]invalid config[/red]: {error}")
        raise typer.Exit(2) from None
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
    model: str = typer.Option("qwen2.5-vl-7b", help="Preset: qwen2.5-vl-7b or qwen3-vl-8b."),
    seq_len: str = typer.Option("128K", help="Row length in tokens."),
    doc_len: str = typer.Option(
        None, help="Document length inside a row (attention is per document); default = row."
    ),
    gpus: int = typer.Option(64, help="Devices in the job."),
    peak_tflops: float = typer.Option(148.0, help="Dense bf16 peak per device (H20: 148)."),
    budget: str = typer.Option("5B", help="Training token budget."),
    global_batch: str = typer.Option("4M", help="Tokens per optimizer step."),
    mfu: float = typer.Option(0.35, help="Assumed model FLOPs utilisation (causal FLOPs)."),
) -> None:
    """Estimate step FLOPs, step time, time to budget and GPU-hours for a model and cluster."""
    from seqpar_train.flops import PRESETS, estimate

    if model not in PRESETS:
        console.print(f"[red]unknown model preset {model!r}[/red]; choose one of {sorted(PRESETS)}")
        raise typer.Exit(2)
    result = estimate(
        PRESETS[model],
        seq_len=parse_tokens(seq_len),
        doc_len=parse_tokens(doc_len) if doc_len else None,
        global_batch_tokens=parse_tokens(global_batch),
        token_budget=parse_tokens(budget),
        gpus=gpus,
        peak_tflops=peak_tflops,
        mfu=mfu,
    )
    table = Table(title=f"{model}, {seq_len} rows, {gpus} x {peak_tflops:g} TFLOP/s")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("tokens per step", format_tokens(result.tokens_per_step)),
        ("steps (budget / batch)", str(result.steps)),
        ("step FLOPs, causal attention", f"{result.step_flops_causal:.3e}"),
        ("step FLOPs, non-causal (peers' convention)", f"{result.step_flops_non_causal:.3e}"),
        (f"step time at MFU {mfu:.0%}", f"{result.step_seconds:.1f} s"),
        ("time to budget", f"{result.total_hours:.1f} h"),
        ("GPU-hours", f"{result.gpu_hours:.0f}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)


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
        console.print(f"[red]dtype {dtype!r} is not bfloat16 or float32[/red]")
        raise typer.Exit(2)
    settings = load_config(config, list(overrides or []))
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
