"""A run checkpointed on N ranks resumes on M: the train state goes through DCP."""

import pytest

from seqpar_train.config import load_config
from seqpar_train.trainer import launch_local


def _config(out, *extra):
    return load_config(
        None,
        [
            f"output_dir={out}",
            "max_length=256",
            "global_batch_tokens=1024",  # 4 rows: 2 per rank on 2 ranks, 1 on 4
            "max_steps=4",
            "parallel.param_dtype=float32",
            "data.num_workers=0",
            "checkpoint.every=2",
            "schedule.peak_lr=1e-3",
            "schedule.final_lr=1e-4",
            "data.synthetic.docs_per_row=2",
            "data.synthetic.prompt_tokens=16",
            *extra,
        ],
    )


@pytest.mark.slow
@pytest.mark.distributed
def test_checkpoint_on_2_ranks_resumes_on_4_and_back_with_the_unbroken_loss(tmp_path):
    unbroken = launch_local(_config(tmp_path / "whole"), 2)[0].losses
    for first, then in ((2, 4), (4, 2)):
        out = tmp_path / f"{first}to{then}"
        stopped = launch_local(_config(out, "stop_after_steps=2"), first)[0]
        assert stopped.stopped_early and stopped.steps_done == 2
        resumed = launch_local(_config(out), then)[0]
        assert resumed.steps_done == 4 and len(resumed.losses) == 2
        # FSDP over another number of ranks sums in another order: equal to float noise.
        assert stopped.losses + resumed.losses == pytest.approx(unbroken, rel=1e-4)
