"""The GPU check (``nox -s gpu``, or ``python -m seqpar_train.gpu_report --out DIR``).

On a CUDA machine, in one command: every attention backend that trains there, in bf16,
against a float64 reference on packed multi-document rows (output and q/k/v gradients); one
training step of a model with Qwen2.5-VL-7B's real widths (hidden 3584, 28 query / 4 KV
heads, the real 32-block ViT) at reduced text depth on 32K, 64K and 128K rows on one GPU,
with tokens/s, MFU and peak memory; the SP and FSDP selfchecks. Writes gpu_report.json and
gpu_report.md under --out and prints the table. Without CUDA it stops with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

K = 1024
TEXT_WIDTHS = (
    "hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
    "vocab_size", "rms_norm_eps", "max_position_embeddings",
)  # fmt: skip
VISION_FIELDS = (
    "depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size", "patch_size",
    "spatial_merge_size", "temporal_patch_size", "window_size", "fullatt_block_indexes",
    "tokens_per_second",
)  # fmt: skip
"""What the check takes from Qwen2.5-VL-7B-Instruct's published config (seqpar_train.presets):
every width of the text model, and the whole ViT, all 32 blocks."""
LETTER_PAGE_GRID = (88, 114)
"""A US-letter page at 144 DPI (1232 x 1596 px) in 14-px patches: 2508 tokens after merging."""


def wide_config(text_layers: int) -> Any:
    """Qwen2.5-VL-7B's widths and ViT with ``text_layers`` decoder layers."""
    from longctx_rope.tiny import tiny_config
    from seqpar_train.presets import preset_config

    published = preset_config("qwen2.5-vl-7b")
    text = {key: getattr(published.text_config, key) for key in TEXT_WIDTHS}
    rope = published.text_config.rope_parameters
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": rope["rope_theta"],
        "mrope_section": rope["mrope_section"],
    }
    return tiny_config(
        "qwen2.5-vl",
        text_config={**text, "num_hidden_layers": text_layers},
        vision_config={key: getattr(published.vision_config, key) for key in VISION_FIELDS},
    )


def page_documents(tokens: int, docs: int = 4, answer: int = 64) -> list[Any]:
    """``docs`` documents of letter pages (2508 tokens each) filling ``tokens``."""
    per_page = LETTER_PAGE_GRID[0] * LETTER_PAGE_GRID[1] // 4 + 2
    per_doc = tokens // docs
    pages = max(1, (per_doc - answer - 64) // per_page)
    prompt = per_doc - pages * per_page - answer
    return [(prompt, [LETTER_PAGE_GRID] * pages, answer)] * docs


def kernel_rows(device: torch.device) -> list[dict[str, Any]]:
    from seqpar_train.attention import choose_backend
    from seqpar_train.attention.backends import backend_support
    from seqpar_train.selfcheck import check_kernels

    support = backend_support(device)
    usable: list[str] = [name for name, reason in support.items() if reason is None]
    comparisons = check_kernels(
        device,
        backends=usable,
        doc_lens=(1000, 1, 3000, 4096, 2047),
        q_heads=28,
        kv_heads=4,
        head_dim=128,
        reference_device=device,
    )
    rows = [
        {"check": c.name, "max_rel": c.max_rel, "tolerance": c.tolerance, "passed": c.passed}
        for c in comparisons
    ]
    choice = choose_backend("auto", device)
    rows.append({"check": "auto backend", "value": choice.name, "rejected": choice.rejected})
    rows += [
        {"check": f"{name} unavailable", "value": reason}
        for name, reason in support.items()
        if reason is not None
    ]
    return rows


def step_row(device: torch.device, tokens: int, text_layers: int, backend: str) -> dict[str, Any]:
    """One optimizer step (forward, backward, AdamW) of a ``tokens``-token packed row."""
    from seqpar_train.activation_checkpoint import apply_activation_checkpointing
    from seqpar_train.batch import to_device
    from seqpar_train.flops import arch_from_config, mfu, training_flops
    from seqpar_train.forward import count_label_tokens, row_loss
    from seqpar_train.hardware import device_peak_tflops
    from seqpar_train.modeling import build_model
    from seqpar_train.synthetic import synthetic_row
    from seqpar_train.trainer import device_name
    from seqpar_train.ulysses import install_attention

    config = wide_config(text_layers)
    model = build_model(config, seed=0).to(device)
    model.train()
    install_attention(model, None, backend)  # type: ignore[arg-type]
    apply_activation_checkpointing(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    row = synthetic_row(config, page_documents(tokens), seed=0)
    labels = count_label_tokens(row, 0, 1)
    grids = [] if row.image_grid_thw is None else row.image_grid_thw.tolist()
    flops = training_flops(
        arch_from_config(config), row.doc_lens, labels, [tuple(g) for g in grids]
    )
    row = to_device(row, device)

    def step() -> float:
        torch.cuda.synchronize(device)
        began = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = row_loss(model, row)
        (out.loss_sum / out.label_tokens.clamp(min=1)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        return time.perf_counter() - began

    step()  # warm-up: kernel selection, allocator growth
    torch.cuda.reset_peak_memory_stats(device)
    seconds = step()
    peak = device_peak_tflops(device_name(device))  # None on a GPU the peak table lacks
    result = {
        "check": f"train step {tokens // K}K tokens, {text_layers} text layers + 32-block ViT",
        "backend": backend,
        "tokens": row.num_tokens,
        "documents": len(row.doc_lens),
        "seconds": seconds,
        "tokens_per_s": row.num_tokens / seconds,
        "mfu_causal": mfu(flops.causal, seconds, 1, peak),
        "mfu_veomni": mfu(flops.veomni, seconds, 1, peak),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30,
    }
    return result


def selfcheck_rows(ranks: int) -> list[dict[str, Any]]:
    from seqpar_train.selfcheck import Scenario, check_fsdp, check_sp

    where = "cuda" if torch.cuda.device_count() >= ranks else "cpu (fewer GPUs than ranks)"
    comparisons = check_sp([Scenario()], sp=ranks) + check_fsdp(nproc=ranks)
    return [
        {
            "check": f"{c.name} on {where}",
            "max_rel": c.max_rel,
            "tolerance": c.tolerance,
            "passed": c.passed,
        }
        for c in comparisons
    ]


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| check | result |", "|---|---|"]
    for row in rows:
        rest = {k: v for k, v in row.items() if k != "check"}
        cells = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in rest.items()
        )
        lines.append(f"| {row['check']} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(".reports/gpu"))
    parser.add_argument("--lengths", default="32K,64K,128K", help="Row lengths of the steps.")
    parser.add_argument("--text-layers", type=int, default=4)
    parser.add_argument("--selfcheck-ranks", type=int, default=2, help="0 skips SP/FSDP.")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(
            "seqpar-train gpu check: no CUDA device is visible to torch "
            f"{torch.__version__} (CUDA build: {torch.version.cuda}); run it on a GPU machine",
            file=sys.stderr,
        )
        return 2
    from seqpar_train.attention import choose_backend
    from seqpar_train.distributed import device_for_rank

    device = device_for_rank()
    backend = choose_backend("auto", device).name
    rows: list[dict[str, Any]] = [
        {
            "check": "device",
            "value": torch.cuda.get_device_name(device),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
            "torch": torch.__version__,
        }
    ]
    rows += kernel_rows(device)
    for length in args.lengths.split(","):
        tokens = int(length.rstrip("Kk")) * K
        try:
            rows.append(step_row(device, tokens, args.text_layers, backend))
        except torch.OutOfMemoryError as error:
            rows.append({"check": f"train step {length}", "passed": False, "error": str(error)})
        torch.cuda.empty_cache()
    if args.selfcheck_ranks > 1:
        rows += selfcheck_rows(args.selfcheck_ranks)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_report.json").write_text(json.dumps(rows, indent=2, default=str))
    (args.out / "gpu_report.md").write_text(table(rows) + "\n")
    print(table(rows))
    failed = [row for row in rows if row.get("passed") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
