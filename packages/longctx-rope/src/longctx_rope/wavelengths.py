"""Wavelengths of each mRoPE section against the positions a model has seen.

A frequency whose wavelength 2*pi/inv_freq is shorter than the largest position seen in
training has turned through every angle: longer inputs only repeat known angles. A longer
wavelength saw only part of its circle, so positions beyond the trained maximum show it new
angles: it extrapolates. Raising the base lengthens every wavelength except the first, moving
frequencies from "extrapolating" to "in range" for a given target position.
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
    original_wavelength: float
    trained_max: int
    target_max: int

    @property
    def status(self) -> str:
        """periodic: a full turn was seen in training; in-range: the target stays within
        trained angles; extrapolating: the target reaches angles never seen."""
        if self.wavelength <= self.trained_max:
            return "periodic"
        if self.target_max <= self.trained_max:
            return "in-range"
        return "extrapolating"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"status": self.status}


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
    """Per row: how many frequencies are periodic, in range or extrapolating."""
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
            }
        )
    return summary


def plot_wavelengths(table: list[Frequency], path: Path, title: str) -> None:
    """Wavelength per frequency index (log scale), coloured by row, against the trained and
    target maximum positions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    colours = {"T": "tab:blue", "H": "tab:orange", "W": "tab:green"}
    for row in ROWS:
        items = [f for f in table if f.row == row]
        if not items:
            continue
        axes.scatter(
            [f.index for f in items],
            [f.wavelength for f in items],
            s=14,
            color=colours[row],
            label=f"{row} (new base)",
        )
        axes.scatter(
            [f.index for f in items],
            [f.original_wavelength for f in items],
            s=8,
            color=colours[row],
            alpha=0.35,
            marker="x",
        )
        axes.axhline(items[0].trained_max, color=colours[row], linestyle=":", linewidth=1)
        axes.axhline(items[0].target_max, color=colours[row], linestyle="--", linewidth=1)
    axes.set_yscale("log")
    axes.set_xlabel("rotary frequency index (x: original base)")
    axes.set_ylabel("wavelength (positions)")
    axes.set_title(title + "\n(dotted: trained max position, dashed: target max position)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
