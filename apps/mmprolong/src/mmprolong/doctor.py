"""What this machine offers the pipeline, and what each stage would pick with a given recipe.

Every probe is cheap and never raises: a missing library or tool is a finding, not an error.
Optional engines are looked up with ``find_spec`` and read their version from package
metadata, so the doctor does not pay for importing vllm or ray.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal

from mmprolong_runtime.manifest import installed_versions
from mmprolong_schemas import Recipe

Status = Literal["ok", "missing", "warn", "info"]

MIN_FREE_DISK = 10 * 2**30
"""Below this much free space the doctor warns: a 7B checkpoint alone is about 16 GiB."""


@dataclass(frozen=True)
class Finding:
    area: str
    name: str
    status: Status
    detail: str


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _has_module(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _tesseract() -> str | None:
    binary = shutil.which("tesseract")
    if binary is None:
        return None
    try:
        result = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "installed (version unknown)"
    first = (result.stdout or result.stderr).strip().splitlines()
    return first[0] if first else "installed (version unknown)"


@dataclass(frozen=True)
class Machine:
    """The facts the stage picks depend on."""

    gpus: list[str]
    cuda: str | None
    gpu_capability: tuple[int, int] | None
    flash_attn: str | None
    torch_varlen: bool
    vllm: str | None
    ray: str | None
    pymupdf_layout: str | None
    tesseract: str | None
    gloo: bool
    nccl: bool
    cpus: int
    disk_free: int
    disk_path: Path

    @property
    def device(self) -> str:
        return "cuda" if self.gpus else "cpu"


def probe(disk_path: Path = Path(".")) -> Machine:
    import torch
    import torch.distributed as dist

    gpus: list[str] = []
    capability: tuple[int, int] | None = None
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(f"{props.name} ({props.total_memory / 2**30:.0f} GiB)")
        capability = torch.cuda.get_device_capability(0)
    where = disk_path if disk_path.exists() else Path.cwd()
    return Machine(
        gpus=gpus,
        cuda=torch.version.cuda,
        gpu_capability=capability,
        flash_attn=_version("flash-attn") if _has_module("flash_attn") else None,
        torch_varlen=_has_module("torch.nn.attention.varlen"),
        vllm=_version("vllm") if _has_module("vllm") else None,
        ray=_version("ray") if _has_module("ray") else None,
        pymupdf_layout=_version("pymupdf-layout") if _has_module("pymupdf.layout") else None,
        tesseract=_tesseract(),
        gloo=dist.is_available() and dist.is_gloo_available(),
        nccl=dist.is_available() and dist.is_nccl_available(),
        cpus=os.cpu_count() or 1,
        disk_free=shutil.disk_usage(where).free,
        disk_path=where,
    )


def machine_findings(machine: Machine) -> list[Finding]:
    found = [
        Finding(
            "system", "python", "info", f"{platform.python_version()} on {platform.platform()}"
        ),
        Finding("system", "cpus", "info", str(machine.cpus)),
        Finding(
            "system",
            "disk",
            "ok" if machine.disk_free >= MIN_FREE_DISK else "warn",
            f"{machine.disk_free / 2**30:.1f} GiB free at {machine.disk_path.resolve()}",
        ),
        Finding(
            "gpu",
            "GPUs",
            "ok" if machine.gpus else "missing",
            ", ".join(machine.gpus) if machine.gpus else "none: training and inference run on CPU",
        ),
        Finding(
            "gpu",
            "CUDA",
            "ok" if machine.cuda and machine.gpus else "missing",
            machine.cuda or "this torch build has no CUDA",
        ),
        Finding(
            "attention",
            "flash-attn",
            "ok" if machine.flash_attn else "missing",
            machine.flash_attn or "not installed (pip install 'seqpar-train[flash]' on a GPU node)",
        ),
    ]
    varlen_usable = machine.torch_varlen and (machine.gpu_capability or (0, 0))[0] >= 8
    found.append(
        Finding(
            "attention",
            "torch varlen attention",
            "ok" if varlen_usable else ("warn" if machine.torch_varlen else "missing"),
            "torch.nn.attention.varlen present"
            + ("" if varlen_usable else "; needs a CUDA GPU of compute capability 8.0+")
            if machine.torch_varlen
            else "this torch has no torch.nn.attention.varlen",
        )
    )
    for name, value, hint in (
        ("vllm", machine.vllm, "pip install 'qasynth[vllm]' 'lvlm-judge[vllm]'"),
        ("ray", machine.ray, "pip install 'docpool[ray]'"),
        ("pymupdf-layout", machine.pymupdf_layout, "pip install 'docpool[layout]'"),
        ("tesseract", machine.tesseract, "apt-get install tesseract-ocr (OCR of scanned pages)"),
    ):
        found.append(
            Finding("engines", name, "ok" if value else "missing", value or f"not found: {hint}")
        )
    backends = [name for name, ok in (("nccl", machine.nccl), ("gloo", machine.gloo)) if ok]
    found.append(
        Finding(
            "distributed",
            "process groups",
            "ok" if backends else "missing",
            ", ".join(backends) or "torch.distributed is unavailable",
        )
    )
    versions = installed_versions()
    found.extend(Finding("versions", name, "info", version) for name, version in versions.items())
    return found


def _attention_pick(requested: str, device: str) -> tuple[Status, str]:
    try:
        from seqpar_train.attention import choose_backend
    except ImportError as error:
        return "missing", f"seqpar-train's attention API is not available ({error})"
    try:
        choice = choose_backend(requested, device)
        # The chosen backend, then why each better one was not chosen.
        return "ok", "; ".join(
            [choice.name, *(f"not {n}: {r}" for n, r in choice.rejected.items())]
        )
    except ValueError as error:
        return "warn", str(error)


def stage_picks(recipe: Recipe, machine: Machine) -> list[Finding]:
    """What each stage would use for ``recipe`` on this machine, and what blocks it."""
    picks: list[Finding] = []
    parse_workers = "ray" if machine.ray else f"{machine.cpus} local processes"
    layout = recipe.pool.layout
    if layout == "model" and not machine.pymupdf_layout:
        picks.append(
            Finding("pool", "layout", "warn", "recipe asks for the layout model; not installed")
        )
    else:
        picks.append(Finding("pool", "layout", "ok", f"{layout} layout, parsed by {parse_workers}"))
    picks.append(
        Finding(
            "pool",
            "OCR of scanned pages",
            "ok" if machine.tesseract else "warn",
            "tesseract" if machine.tesseract else "none: pages without a text layer are skipped",
        )
    )
    teacher = recipe.synth.teacher
    if teacher == "vllm" and not (machine.vllm and machine.gpus):
        picks.append(
            Finding("synth", "teacher", "warn", "recipe asks for vllm, which needs vllm and a GPU")
        )
    else:
        model = f" ({recipe.synth.teacher_model})" if recipe.synth.teacher_model else ""
        picks.append(Finding("synth", "teacher", "ok", f"{teacher}{model}"))
    picks.append(
        Finding("rope", "method", "ok", f"{recipe.rope.method.value}, base -> {recipe.rope.base:g}")
    )
    parallel = recipe.train.parallel
    status, attention = _attention_pick(recipe.train.attention, machine.device)
    picks.append(Finding("train", "attention", status, attention))
    backend = "nccl" if machine.gpus and machine.nccl else "gloo"
    need = parallel.gpus_per_node
    have = len(machine.gpus)
    devices_status: Status = "ok" if machine.gpus and have >= need else "warn"
    picks.append(
        Finding(
            "train",
            "devices",
            devices_status,
            f"{backend} on {machine.device}; recipe wants SP {parallel.sp} x FSDP {parallel.fsdp} "
            f"on {parallel.nodes} node(s) of {need}"
            + ("" if devices_status == "ok" else f", this machine has {have} GPU(s)"),
        )
    )
    runner = recipe.eval.runner
    if runner == "vllm" and not (machine.vllm and machine.gpus):
        picks.append(
            Finding(
                "eval", "runner", "warn", "recipe asks for vllm; use runner = 'transformers' here"
            )
        )
    else:
        picks.append(Finding("eval", "runner", "ok", f"{runner}, judge {recipe.eval.judge}"))
    return picks
