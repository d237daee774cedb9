"""Wavelengths of each mRoPE section against the positions a model has seen.

The checkpoint was trained at the original base up to some maximum position per mRoPE row.
A frequency whose original wavelength 2*pi/inv_freq is shorter than that has turned through
its whole circle in training: any angle is familiar ("periodic"). A longer wavelength only saw
angles up to trained_max * inv_freq. At the target length and the new base it reaches
target_max * new_inv_freq; if that stays within the trained angles the frequency only
interpolates ("in-range"), otherwise it shows the model angles it never saw ("extrapolating",
by the factor ``overshoot``). Raising the base shrinks the new angles of the low frequencies,
which is what NTK-style base changes rely on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from longctx_rope.architectures import Architecture
from longctx_rope.methods import default_inv_freq

ROWS = ("T", "H", "W")


def section_of_frequencies(arch: Architecture) -> list[str]:
    """Which mRoPE row (T, H or W) drives each rotary frequency.

    Qwen2.5-VL: contiguous blocks of mrope_section sizes. Qwen3-VL: interleaved; index i
    belongs to H when i % 3 == 1 and i < 3 * section[1], to W when i % 3 == 2 and
    i < 3 * section[2], else to T (as transformers' recomposition does)."""
    section = arch.mrope_section
    if not arch.interleaved:
        return [row for row, size in zip(ROWS, section, strict=True) for _ in range(size)]
    rows = []
    for index in range(arch.rotary_pairs):
        if index % 3 == 1 and index < 3 * section[1]:
            rows.append("H")
        elif index % 3 == 2 and index < 3 * section[2]:
            rows.append("W")
        else:
            rows.append("T")
    return rows


@dataclass(frozen=True)
class Frequency:
    index: int
    row: str
    wavelength: float
    """At the new base (and method), in positions."""
    original_wavelength: float
    trained_max: int
    target_max: int

    @property
    def trained_angle(self) -> float:
        return 2 * math.pi * self.trained_max / self.original_wavelength

    @property
    def target_angle(self) -> float:
        return 2 * math.pi * self.target_max / self.wavelength

    @property
    def overshoot(self) -> float:
        """Largest target angle over largest trained angle (<= 1: interpolation only)."""
        return self.target_angle / self.trained_angle if self.trained_angle else math.inf

    @property
    def status(self) -> str:
        if self.trained_angle >= 2 * math.pi:
            return "periodic"
        if self.target_angle <= self.trained_angle:
            return "in-range"
        return "extrapolating"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"status": self.status, "overshoot": self.overshoot}


def frequency_table(
    arch: Architecture,
    base: float,
    original_base: float,
    trained_max: dict[str, int],
    target_max: dict[str, int],
    inv_freq: torch.Tensor | None = None,
) -> list[Frequency]:
    """One row per rotary frequency. ``trained_max`` / ``target_max`` give the largest
    position per mRoPE row (T/H/W) in training and at the target length. ``inv_freq`` overrides
    the default frequencies at ``base`` (for linear or yarn specs)."""
    frequencies = default_inv_freq(base, arch.head_dim) if inv_freq is None else inv_freq
    original = default_inv_freq(original_base, arch.head_dim)
    rows = section_of_frequencies(arch)
    return [
        Frequency(
            index=index,
            row=row,
            wavelength=2 * math.pi / float(frequencies[index]),
            original_wavelength=2 * math.pi / float(original[index]),
            trained_max=trained_max[row],
            target_max=target_max[row],
        )
        for index, row in enumerate(rows)
    ]


def summarize_sections(table: list[Frequency]) -> list[dict[str, Any]]:
    """Per row: how many frequencies are periodic, in range or extrapolating, and the worst
    overshoot of the non-periodic ones."""
    summary = []
    for row in ROWS:
        items = [f for f in table if f.row == row]
        counts = dict.fromkeys(("periodic", "in-range", "extrapolating"), 0)
        for item in items:
            counts[item.status] += 1
        summary.append(
            {
                "row": row,
                "frequencies": len(items),
                **counts,
                "trained_max": items[0].trained_max if items else None,
                "target_max": items[0].target_max if items else None,
                "longest_wavelength": max((f.wavelength for f in items), default=None),
                "max_overshoot": max(
                    (f.overshoot for f in items if f.status != "periodic"), default=None
                ),
            }
        )
    return summary


def plot_wavelengths(table: list[Frequency], path: Path, title: str) -> None:
    """Top: wavelength per frequency index (log), new base (dots) and original (crosses), with
    the trained maximum position per row. Bottom: overshoot of the non-periodic frequencies;
    above 1 they extrapolate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), dpi=120, sharex=True)
    colours = {"T": "tab:blue", "H": "tab:orange", "W": "tab:green"}
    for row in ROWS:
        items = [f for f in table if f.row == row]
        if not items:
            continue
        index = [f.index for f in items]
        colour = colours[row]
        top.scatter(index, [f.wavelength for f in items], s=14, color=colour, label=row)
        top.scatter(
            index, [f.original_wavelength for f in items], s=10, color=colour, marker="x", alpha=0.4
        )
        top.axhline(items[0].trained_max, color=colour, linestyle=":", linewidth=1)
        moving = [f for f in items if f.status != "periodic"]
        bottom.scatter(
            [f.index for f in moving], [f.overshoot for f in moving], s=14, color=colour, label=row
        )
    bottom.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    top.set_yscale("log")
    top.set_ylabel("wavelength (positions)")
    top.set_title(title + "\n(x: original base, dotted: trained max position)")
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_xlabel("rotary frequency index")
    bottom.set_ylabel("target angle / trained angle")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
