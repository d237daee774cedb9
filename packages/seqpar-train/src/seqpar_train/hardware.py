"""Accelerators by exact model name: dense bf16 peak (for MFU) and memory (for the planner).

Peaks are the vendors' dense bf16 tensor-core figures (datasheets print "with sparsity"
figures twice as large; those are halved here):

- NVIDIA H100 datasheet: SXM 1,979 / PCIe 1,513 / NVL 1,671 TFLOPS bf16 with sparsity.
- NVIDIA H200 datasheet: SXM 1,979 / NVL 1,671 TFLOPS bf16 with sparsity (141 GB HBM3e).
- H800 is the export H100 (same compute, reduced NVLink); A800 likewise for A100.
- NVIDIA H20: 148 TFLOPS dense bf16, 96 GB HBM3 (the paper's cluster; docs/DESIGN.md).
- NVIDIA A100 datasheet: 312 TFLOPS bf16 dense (SXM and PCIe), 40 or 80 GB.
- NVIDIA L40S datasheet: 362.05 TFLOPS bf16 dense (733 with sparsity), 48 GB.
- NVIDIA HGX B200: 4.5 PFLOPS bf16 with sparsity per GPU (2.25 dense), 180 GB.
- NVIDIA GB200 NVL72: 360 PFLOPS bf16 with sparsity for 72 GPUs (2.5 dense per GPU), 186 GB.
- AMD Instinct MI300X datasheet: 1,307.4 TFLOPS bf16 dense, 192 GB HBM3.

Matching is by the model token of the device name, never by substring: ``torch`` reports
"NVIDIA H200", which must not match "H20" (that would inflate MFU 6.7x).
"""

from __future__ import annotations

import re
import warnings

from pydantic import Field

from mmprolong_schemas.base import Model


class GpuSpec(Model):
    name: str = Field(description="Canonical name, e.g. 'H100 SXM'.")
    peak_tflops: float = Field(gt=0, description="Dense bf16 tensor-core TFLOP/s.")
    memory_gb: float = Field(gt=0, description="Vendor's memory size in GB (10^9 bytes).")

    @property
    def memory_bytes(self) -> int:
        """The vendor's figure as 10^9 bytes: a little below what the device reports (an
        H100 80 GB reports 85.0e9 bytes), so plans stay on the safe side."""
        return int(self.memory_gb * 1e9)


# (model token, form factor) -> spec. Form "" is the default (SXM/OAM) part.
_TABLE: dict[tuple[str, str], GpuSpec] = {
    ("h20", ""): GpuSpec(name="H20", peak_tflops=148.0, memory_gb=96),
    ("h100", ""): GpuSpec(name="H100 SXM", peak_tflops=989.5, memory_gb=80),
    ("h100", "pcie"): GpuSpec(name="H100 PCIe", peak_tflops=756.5, memory_gb=80),
    ("h100", "nvl"): GpuSpec(name="H100 NVL", peak_tflops=835.5, memory_gb=94),
    ("h200", ""): GpuSpec(name="H200", peak_tflops=989.5, memory_gb=141),
    ("h200", "nvl"): GpuSpec(name="H200 NVL", peak_tflops=835.5, memory_gb=141),
    ("h800", ""): GpuSpec(name="H800", peak_tflops=989.5, memory_gb=80),
    ("h800", "pcie"): GpuSpec(name="H800 PCIe", peak_tflops=756.5, memory_gb=80),
    ("a100", ""): GpuSpec(name="A100", peak_tflops=312.0, memory_gb=80),
    ("a100", "pcie"): GpuSpec(name="A100 PCIe", peak_tflops=312.0, memory_gb=80),
    ("a800", ""): GpuSpec(name="A800", peak_tflops=312.0, memory_gb=80),
    ("a800", "pcie"): GpuSpec(name="A800 PCIe", peak_tflops=312.0, memory_gb=80),
    ("l40s", ""): GpuSpec(name="L40S", peak_tflops=362.05, memory_gb=48),
    ("b200", ""): GpuSpec(name="B200", peak_tflops=2250.0, memory_gb=180),
    ("gb200", ""): GpuSpec(name="GB200", peak_tflops=2500.0, memory_gb=186),
    ("mi300x", ""): GpuSpec(name="MI300X", peak_tflops=1307.4, memory_gb=192),
}
_VENDOR = re.compile(r"^(nvidia|amd instinct|amd|tesla)\s+", re.IGNORECASE)
_MEMORY = re.compile(r"(\d+)\s*gb", re.IGNORECASE)


def known_gpus() -> list[str]:
    return [spec.name for spec in _TABLE.values()]


def lookup_gpu(name: str) -> GpuSpec | None:
    """The spec of a device name as torch reports it ("NVIDIA H100 80GB HBM3",
    "NVIDIA A100-SXM4-40GB", "AMD Instinct MI300X") or as a user types it ("H100 PCIe",
    "h20"); None when the model is not in the table."""
    text = _VENDOR.sub("", name.strip())
    tokens = [t for t in re.split(r"[\s\-_]+", text.lower()) if t]
    if not tokens:
        return None
    form = "pcie" if "pcie" in tokens else "nvl" if "nvl" in tokens else ""
    spec = _TABLE.get((tokens[0], form)) or (_TABLE.get((tokens[0], "")) if form else None)
    if spec is None:
        return None
    memory = _MEMORY.search(text)
    if memory and int(memory.group(1)) != spec.memory_gb and tokens[0] in ("a100", "a800"):
        # The 40 GB parts: same compute, half the memory.
        return spec.model_copy(update={"memory_gb": float(memory.group(1))})
    return spec


def device_peak_tflops(device_name: str, override: float | None = None) -> float | None:
    """Dense bf16 peak of a device for MFU: ``override`` if given, else the table's figure;
    None (with a warning) for a device the table does not know, so no MFU is reported
    rather than a wrong one."""
    if override is not None:
        return override
    spec = lookup_gpu(device_name)
    if spec is None:
        warnings.warn(
            f"no dense bf16 peak is known for device {device_name!r} (known: "
            f"{', '.join(known_gpus())}); MFU is not reported. Set peak_tflops "
            "(--peak-tflops) to report it.",
            stacklevel=2,
        )
        return None
    return spec.peak_tflops
