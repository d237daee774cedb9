"""Per-step metrics: JSONL (always), TensorBoard (optional), and a PNG loss curve at the end."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

import torch


def peak_memory_bytes(device: torch.device) -> int:
    """Peak allocated memory on a GPU; peak resident set size of the process on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class MetricsWriter:
    """Appends one JSON line per step. On resume, lines past the resumed step are dropped
    first, so the file is the loss curve of one uninterrupted run."""

    def __init__(self, path: str | Path, resume_step: int = 0, tensorboard_dir: Path | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = (
            [r for r in read_metrics(self.path, kind=None) if r["step"] <= resume_step]
            if resume_step
            else []
        )
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self._tb: Any = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise RuntimeError(
                    "tensorboard=true needs the tensorboard package: "
                    "pip install 'seqpar-train[tensorboard]'"
                ) from error
            self._tb = SummaryWriter(str(tensorboard_dir))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._tb is not None:
            prefix = f"{record['kind']}/" if "kind" in record else ""
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self._tb.add_scalar(prefix + key, value, record["step"])
            for bucket, values in record.get("buckets", {}).items():
                self._tb.add_scalar(f"{prefix}loss {bucket}", values["loss"], record["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path, kind: str | None = "train") -> list[dict[str, Any]]:
    """Records of a metrics file of one ``kind``: "train" (one per step, no ``kind`` key),
    "validation" (seqpar_train.validation), or None for all. A torn last line (killed
    mid-write) is skipped."""
    source = Path(path)
    if not source.is_file():
        return []
    records = []
    for line in source.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or record.get("kind", "train") == kind:
            records.append(record)
    return records


def plot_loss_curve(metrics_path: str | Path, out_png: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    steps = [r["step"] for r in records]
    ax_loss.plot(steps, [r["loss"] for r in records], lw=1.2, label="training")
    validation = read_metrics(metrics_path, kind="validation")
    bounds = {b: v["max_tokens"] for r in validation for b, v in r["buckets"].items()}
    for bucket in sorted(bounds, key=bounds.__getitem__):
        points = [
            (r["step"], r["buckets"][bucket]["loss"]) for r in validation if bucket in r["buckets"]
        ]
        ax_loss.plot(
            *zip(*points, strict=True), marker="o", ms=3, lw=0.8, label=f"held-out {bucket}"
        )
    if validation:
        ax_loss.legend(fontsize=7)
    ax_loss.set_ylabel("loss (answer tokens)")
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(steps, [r["lr"] for r in records], lw=1.2, color="tab:orange")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("optimizer step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out_png)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
