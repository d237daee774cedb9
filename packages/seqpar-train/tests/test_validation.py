"""Validation while training: per-bucket held-out answer loss, checked against the plain HF
forward, on one process and under SP; it leaves the trained result unchanged."""

import pytest
import torch
import torch.nn.functional as F

from seqpar_train.batch import IGNORE_INDEX
from seqpar_train.checkpoint import latest_checkpoint, load_checkpoint
from seqpar_train.config import load_config
from seqpar_train.forward import PackedLossModel
from seqpar_train.metrics import read_metrics
from seqpar_train.trainer import build_training_model, launch_local, train
from seqpar_train.validation import bucket_exponent, bucket_name, held_out_rows


def _config(out, *extra):
    return load_config(
        None,
        [
            f"output_dir={out}",
            "max_length=256",
            "global_batch_tokens=512",
            "max_steps=3",
            "parallel.param_dtype=float32",
            "data.num_workers=0",
            "checkpoint.every=3",
            "schedule.peak_lr=1e-3",
            "schedule.final_lr=1e-4",
            "data.synthetic.docs_per_row=3",
            # single-document held-out samples of 56-74 tokens: the 32-64 and 64-128 buckets
            "data.synthetic.prompt_tokens=60",
            *extra,
        ],
    )


def _hf_answer_loss(model, config):
    """Per bucket (loss sum, answer tokens) of the held-out samples by the model's own HF
    forward (its rope index, its attention, full logits): nothing of our packed path."""
    source, count = held_out_rows(config, model.config)
    sums: dict[str, list[float]] = {}
    model.eval()
    with torch.no_grad():
        for index in range(count):
            row, _ = source.row(index)
            logits = model(
                input_ids=row.input_ids[None],
                pixel_values=row.pixel_values,
                image_grid_thw=row.image_grid_thw,
                # transformers 5 builds mRoPE positions only when told the image tokens
                # (Qwen2_5_VLModel.compute_3d_position_ids); else they are 1-D text positions.
                mm_token_type_ids=(row.input_ids == model.config.image_token_id).int()[None],
                use_cache=False,
            ).logits[0]
            targets = row.labels[1:]
            keep = targets != IGNORE_INDEX
            loss = F.cross_entropy(logits[:-1][keep].double(), targets[keep], reduction="sum")
            entry = sums.setdefault(bucket_name(bucket_exponent(row.num_tokens)), [0.0, 0])
            entry[0] += float(loss)
            entry[1] += int(keep.sum())
    return sums


def _check_record(record, expected):
    assert set(record["buckets"]) == set(expected)
    for name, (loss_sum, tokens) in expected.items():
        bucket = record["buckets"][name]
        assert bucket["label_tokens"] == tokens
        assert bucket["loss"] == pytest.approx(loss_sum / tokens, rel=1e-5)
    total = sum(s for s, _ in expected.values()) / sum(n for _, n in expected.values())
    assert record["loss"] == pytest.approx(total, rel=1e-5)


def test_buckets_are_powers_of_two():
    assert bucket_exponent(64) == 6 and bucket_exponent(65) == 7
    assert bucket_name(bucket_exponent(100_000)) == "64K-128K"
    assert bucket_name(bucket_exponent(131072)) == "64K-128K"
    assert bucket_name(bucket_exponent(131073)) == "128K-256K"
    assert bucket_name(bucket_exponent(8192)) == "4K-8K"


def test_validation_records_equal_the_hf_answer_loss_and_change_no_training(tmp_path):
    config = _config(tmp_path / "val", "validation.every=2", "validation.samples=8")
    result = train(config)
    records = read_metrics(result.metrics_path, kind="validation")
    assert [r["step"] for r in records] == [0, 2, 3]  # start, every 2, and the last step
    assert all(r["samples"] == 8 and r["skipped_samples"] == 0 for r in records)
    assert len(records[0]["buckets"]) == 2
    # Step 0: the initial weights, built as the trainer builds them.
    initial = build_training_model(config, torch.device("cpu"))
    _check_record(records[0], _hf_answer_loss(initial, config))
    # Last step: the trained weights, from the final checkpoint.
    trained = build_training_model(config, torch.device("cpu"))
    load_checkpoint(
        latest_checkpoint(tmp_path / "val" / "checkpoints"), PackedLossModel(trained), None
    )
    _check_record(records[-1], _hf_answer_loss(trained, config))
    assert result.validation_loss["all"] == records[-1]["loss"]
    # Training readers see training records only; the loss plot is drawn with both.
    assert [r["step"] for r in read_metrics(result.metrics_path)] == [1, 2, 3]
    assert result.loss_curve is not None
    # Reporting only: the same run without validation trains exactly the same.
    plain = train(_config(tmp_path / "plain"))
    assert plain.losses == result.losses


def test_validation_needs_held_out_samples_for_mixture_data(tmp_path):
    with pytest.raises(ValueError, match="needs validation.mixture"):
        load_config(
            None,
            [f"data.mixture={tmp_path}", f"data.pool={tmp_path}", "validation.every=10"],
        )
    with pytest.raises(ValueError, match="needs data.pool"):
        load_config(None, [f"validation.mixture={tmp_path}"])


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("sp", [2, 1])  # an SP group of 2; 2 data-parallel ranks, 5 samples
def test_two_ranks_validation_equals_single_process(tmp_path, sp):
    extra = ("validation.every=3", "validation.samples=5")
    single = train(_config(tmp_path / "one", *extra))
    ranks = launch_local(
        _config(
            tmp_path / "two", *extra, f"parallel.sp={sp}", "parallel.activation_checkpointing=false"
        ),
        2,
    )
    one = read_metrics(single.metrics_path, kind="validation")
    two = read_metrics(ranks[0].metrics_path, kind="validation")
    assert [r["step"] for r in two] == [0, 3]
    for a, b in zip(one, two, strict=True):
        assert b["samples"] == a["samples"] == 5
        assert {k: v["label_tokens"] for k, v in b["buckets"].items()} == {
            k: v["label_tokens"] for k, v in a["buckets"].items()
        }
        for name, bucket in a["buckets"].items():
            assert b["buckets"][name]["loss"] == pytest.approx(bucket["loss"], rel=1e-4)
    assert ranks[0].validation_loss == ranks[1].validation_loss


def test_resume_keeps_validation_records_up_to_the_resumed_step(tmp_path):
    from seqpar_train.metrics import MetricsWriter

    path = tmp_path / "metrics.jsonl"
    writer = MetricsWriter(path)
    for step in (1, 2, 3, 4):
        writer.write({"step": step, "loss": 1.0, "lr": 1e-3})
        if step % 2 == 0:
            writer.write({"kind": "validation", "step": step, "loss": 2.0, "buckets": {}})
    writer.close()
    MetricsWriter(path, resume_step=2).close()  # a run resumed from the step-2 checkpoint
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    assert [r["step"] for r in read_metrics(path, kind="validation")] == [2]
    assert [r.get("kind", "train") for r in read_metrics(path, kind=None)] == [
        "train",
        "train",
        "validation",
    ]
