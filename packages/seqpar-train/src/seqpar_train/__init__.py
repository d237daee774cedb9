"""seqpar-train: long-context continued pre-training of Qwen2.5-VL / Qwen3-VL with Ulysses
sequence parallelism, FSDP2 and varlen attention.

    from seqpar_train import TrainerConfig, load_config, train, launch_local
    config = load_config("run.toml", ["parallel.sp=2", "max_steps=40"])
    results = launch_local(config, nproc=2)     # or train(config) under torchrun

The package exports the commands' functions (train, plan, export, flops) and their settings
and result types. Building blocks (attention backends, Ulysses, packing, checkpoints, loss)
are reached by module path, e.g. ``seqpar_train.data.packing``.
"""

from seqpar_train.checkpoint import CheckpointError
from seqpar_train.config import (
    CheckpointSettings,
    DataSettings,
    ModelSettings,
    ParallelSettings,
    SyntheticData,
    TrainerConfig,
    ValidationSettings,
    load_config,
)
from seqpar_train.export import export_hf
from seqpar_train.flops import ArchSpec, estimate, preset_arch
from seqpar_train.planner import Plan, PlanSetup, plan, search_setups
from seqpar_train.trainer import TrainResult, launch_local, train

__version__ = "0.1.0"

__all__ = [
    "ArchSpec",
    "CheckpointError",
    "CheckpointSettings",
    "DataSettings",
    "ModelSettings",
    "ParallelSettings",
    "Plan",
    "PlanSetup",
    "SyntheticData",
    "TrainerConfig",
    "TrainResult",
    "ValidationSettings",
    "__version__",
    "estimate",
    "export_hf",
    "launch_local",
    "load_config",
    "plan",
    "preset_arch",
    "search_setups",
    "train",
]
