"""The device mesh: (dp_replicate, dp_shard, sp), parameters sharded over dp_shard x sp.

As in HSDP, parameters are sharded across the flattened ``dp_shard_sp`` dimension (SP ranks
hold different tokens of the same rows, so they shard parameters like data-parallel ranks)
and replicated across ``dp_replicate``. Data is split across ``dp`` = dp_replicate x dp_shard:
the ranks of one SP group read the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.distributed import ProcessGroup
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh


@dataclass(frozen=True)
class ParallelDims:
    dp_replicate: int
    dp_shard: int
    sp: int

    def __post_init__(self) -> None:
        for name in ("dp_replicate", "dp_shard", "sp"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def for_world(cls, world_size: int, sp: int = 1, dp_shard: int = -1) -> ParallelDims:
        """Fill the world: ``dp_shard=-1`` shards over every rank left after SP; whatever
        does not fit in one shard group becomes ``dp_replicate``."""
        if world_size % sp:
            raise ValueError(f"SP size {sp} does not divide the world size {world_size}")
        data_ranks = world_size // sp
        shard = data_ranks if dp_shard == -1 else dp_shard
        if shard < 1 or data_ranks % shard:
            raise ValueError(
                f"dp_shard {shard} does not divide the {data_ranks} data-parallel ranks "
                f"(world {world_size} / SP {sp})"
            )
        return cls(dp_replicate=data_ranks // shard, dp_shard=shard, sp=sp)

    @property
    def world_size(self) -> int:
        return self.dp_replicate * self.dp_shard * self.sp

    @property
    def dp(self) -> int:
        """Data-parallel degree: how many different rows are processed at once."""
        return self.dp_replicate * self.dp_shard


@dataclass
class Mesh:
    dims: ParallelDims
    mesh: DeviceMesh
    dp_shard_sp: DeviceMesh  # flattened dp_shard x sp: where parameters are sharded
    dp: DeviceMesh  # flattened dp_replicate x dp_shard: where rows are split

    @property
    def sp_group(self) -> ProcessGroup | None:
        return self.mesh["sp"].get_group() if self.dims.sp > 1 else None

    @property
    def fsdp_mesh(self) -> DeviceMesh:
        """1-D (dp_shard_sp) mesh, or 2-D (dp_replicate, dp_shard_sp) for HSDP."""
        if self.dims.dp_replicate > 1:
            return self.mesh["dp_replicate", "dp_shard_sp"]
        return self.dp_shard_sp

    @property
    def dp_rank(self) -> int:
        return int(self.dp.get_local_rank())

    @property
    def sp_rank(self) -> int:
        return int(self.mesh["sp"].get_local_rank())


def build_mesh(dims: ParallelDims, device_type: str) -> Mesh:
    mesh = init_device_mesh(
        device_type,
        (dims.dp_replicate, dims.dp_shard, dims.sp),
        mesh_dim_names=("dp_replicate", "dp_shard", "sp"),
    )
    return Mesh(
        dims,
        mesh,
        dp_shard_sp=mesh["dp_shard", "sp"]._flatten("dp_shard_sp"),
        dp=mesh["dp_replicate", "dp_shard"]._flatten("dp"),
    )
