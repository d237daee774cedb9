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
            [r for r in read_metrics(self.path) if r["step"] <= resume_step] if resume_step else []
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
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self._tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a metrics file; a torn last line (killed mid-write) is skipped."""
    source = Path(path)
    if not source.is_file():
        return []
    records = []
    for line in source.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def plot_loss_curve(metrics_path: str | Path, out_png: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    steps = [r["step"] for r in records]
    ax_loss.plot(steps, [r["loss"] for r in records], lw=1.2)
    ax_loss.set_ylabel("loss")
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
