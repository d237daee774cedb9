"""FSDP2 (fully_shard) per decoder layer and per vision block, then the root.

Gradients are summed, not averaged, across ranks: the trainer divides every rank's loss by
the global count of labelled tokens before backward, so the sum over ranks is the exact
token-weighted mean over the global batch however tokens fall on SP and DP ranks.
"""

from __future__ import annotations

import torch
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import (
    CPUOffloadPolicy,
    FSDPModule,
    MixedPrecisionPolicy,
    OffloadPolicy,
    fully_shard,
)

from seqpar_train.modeling import decoder_layers, vision_blocks


def apply_fsdp(
    model: torch.nn.Module,
    mesh: DeviceMesh,
    *,
    param_dtype: torch.dtype = torch.bfloat16,
    reduce_dtype: torch.dtype = torch.float32,
    cpu_offload: bool = False,
    reshard_after_forward: bool = True,
) -> torch.nn.Module:
    """Shard ``model`` in place. ``cpu_offload`` keeps parameters, gradients and optimizer
    state on the CPU (the optimizer steps there); GPU memory then holds only the layers
    being computed."""
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    offload = CPUOffloadPolicy() if cpu_offload else OffloadPolicy()
    for unit in [*vision_blocks(model), *decoder_layers(model)]:
        fully_shard(
            unit,
            mesh=mesh,
            mp_policy=policy,
            offload_policy=offload,
            reshard_after_forward=reshard_after_forward,
        )
    # The root keeps embeddings, the vision patch embed / mergers, final norm and lm_head;
    # it is not resharded after forward because backward needs it first.
    fully_shard(
        model, mesh=mesh, mp_policy=policy, offload_policy=offload, reshard_after_forward=False
    )
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            # plain SUM collectives: gloo has no PREMUL_SUM
            module.set_force_sum_reduction_for_comms(True)
    return model
