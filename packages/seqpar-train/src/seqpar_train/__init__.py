"""seqpar-train: long-context continued pre-training of Qwen2.5-VL / Qwen3-VL with Ulysses
sequence parallelism, FSDP2 and varlen attention.

    from seqpar_train import TrainConfig, load_config, train, launch_local
    config = load_config("run.toml", ["parallel.sp=2", "max_steps=40"])
    results = launch_local(config, nproc=2)     # or train(config) under torchrun
"""

from seqpar_train.attention import available_backends, resolve_backend, varlen_attention
from seqpar_train.batch import IGNORE_INDEX, PackedRow, shard_row, shift_labels
from seqpar_train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    load_model_weights,
)
from seqpar_train.config import (
    CheckpointSettings,
    DataSettings,
    ModelSettings,
    ParallelSettings,
    SyntheticData,
    TrainConfig,
    load_config,
)
from seqpar_train.data.packing import min_rows_bound, pack_cut, pack_ffd, packing_stats
from seqpar_train.distributed import spawn_local
from seqpar_train.export import export_hf, extend_rope
from seqpar_train.flops import ArchSpec, estimate, preset_arch, training_flops
from seqpar_train.forward import PackedLossModel, row_loss
from seqpar_train.loss import labelled_cross_entropy
from seqpar_train.optim import lr_at, steps_for_budget
from seqpar_train.parallel_dims import ParallelDims, build_mesh
from seqpar_train.trainer import TrainResult, launch_local, train
from seqpar_train.ulysses import install_attention, plan_heads, ulysses_attention

__version__ = "0.1.0"

__all__ = [
    "IGNORE_INDEX",
    "ArchSpec",
    "CheckpointError",
    "CheckpointSettings",
    "DataSettings",
    "ModelSettings",
    "PackedLossModel",
    "PackedRow",
    "ParallelDims",
    "ParallelSettings",
    "SyntheticData",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "available_backends",
    "build_mesh",
    "estimate",
    "export_hf",
    "extend_rope",
    "install_attention",
    "labelled_cross_entropy",
    "latest_checkpoint",
    "launch_local",
    "load_checkpoint",
    "load_config",
    "load_model_weights",
    "lr_at",
    "min_rows_bound",
    "pack_cut",
    "pack_ffd",
    "packing_stats",
    "plan_heads",
    "preset_arch",
    "resolve_backend",
    "row_loss",
    "shard_row",
    "shift_labels",
    "spawn_local",
    "steps_for_budget",
    "train",
    "training_flops",
    "ulysses_attention",
    "varlen_attention",
]
