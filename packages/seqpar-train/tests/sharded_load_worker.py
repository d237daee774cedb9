"""The rank worker of test_sharded_load, in a module of its own: spawned ranks unpickle it by
module name, and pytest's importlib mode gives test files names no child process can import
(the test puts this folder on sys.path, which spawned children inherit)."""

from __future__ import annotations

from unittest import mock

import torch

from mmprolong_schemas.recipe import OptimizerConfig
from seqpar_train import trainer
from seqpar_train.config import (
    CheckpointSettings,
    DataSettings,
    ModelSettings,
    ParallelSettings,
    SyntheticData,
    TrainerConfig,
)
from seqpar_train.modeling import (
    checkpoint_key_candidates,
)
from seqpar_train.parallel_dims import ParallelDims, build_mesh


def sharded_config(model_dir: str, out_dir: str) -> TrainerConfig:
    return TrainerConfig(
        output_dir=out_dir,
        model=ModelSettings(path=model_dir),
        data=DataSettings(synthetic=SyntheticData(docs_per_row=2, prompt_tokens=20), num_workers=0),
        parallel=ParallelSettings(nproc_per_node=2, param_dtype="float32"),
        optimizer=OptimizerConfig(),
        max_length=128,
        global_batch_tokens=256,
        max_steps=1,
        checkpoint=CheckpointSettings(every=1, resume=False),
    )


def sharded_build_worker(model_dir: str, out_dir: str) -> dict[str, object]:
    """One rank's byte accounting of ``trainer._prepare_model`` on a checkpoint."""
    from torch.distributed.tensor import DTensor

    config = sharded_config(model_dir, out_dir)
    mesh = build_mesh(ParallelDims.for_world(2, sp=1, dp_shard=-1), "cpu")
    built: dict[str, int] = {}
    reads: list[tuple[str, int, int]] = []
    build, load = trainer.build_training_model, trainer.load_safetensors_shards

    def counting_build(*args, **kwargs):
        model = build(*args, **kwargs)
        built["real_param_bytes"] = sum(
            p.nbytes for p in model.parameters() if p.device.type != "meta"
        )
        built["buffer_bytes"] = sum(b.nbytes for b in model.buffers())
        return model

    def counting_load(model, source):
        local = {
            n: (p.to_local() if isinstance(p, DTensor) else p).nbytes
            for n, p in model.named_parameters()
        }
        return load(model, source, on_tensor=lambda n, t: reads.append((n, t.nbytes, local[n])))

    with (
        mock.patch.object(trainer, "build_training_model", counting_build),
        mock.patch.object(trainer, "load_safetensors_shards", counting_load),
    ):
        model, _ = trainer._prepare_model(config, torch.device("cpu"), mesh)
    params = dict(model.hf_model.named_parameters())
    held = sum(p.to_local().nbytes for p in params.values())
    full = {checkpoint_key_candidates(n)[0]: p.full_tensor() for n, p in params.items()}
    return {**built, "reads": reads, "held": held, "full": full}
