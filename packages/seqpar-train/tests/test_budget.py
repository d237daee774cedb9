"""The token budget counts trained tokens: steps come from the packing plan."""

import pytest

from seqpar_train.config import SyntheticData, load_config
from seqpar_train.data.budget import plan_budget
from seqpar_train.metrics import read_metrics
from seqpar_train.trainer import train


def _config(out, *extra):
    return load_config(
        None,
        [
            f"output_dir={out}",
            "max_length=256",
            "global_batch_tokens=512",
            "parallel.param_dtype=float32",
            "data.num_workers=0",
            "checkpoint.every=100",
            "schedule.peak_lr=1e-3",
            "schedule.final_lr=1e-4",
            "data.synthetic.docs_per_row=3",
            "data.synthetic.prompt_tokens=20",
            *extra,
        ],
    )


class _Rows:
    def __init__(self, lengths):
        self.lengths = lengths

    def row_tokens(self, index):
        return self.lengths[index % len(self.lengths)]


def test_steps_are_counted_on_the_plan_until_the_budget_is_trained():
    # Rows of a 100-token slot holding 77 real tokens: a 1000-token budget needs 13 rows.
    rows = _Rows([77])
    plan = plan_budget(rows, token_budget=1000, rows_per_step=2, row_length=100)
    assert (plan.steps, plan.planned_tokens, plan.capped) == (7, 14 * 77, False)
    # The old rule, budget / (rows x slot) = 5 steps, would train 770 tokens.
    capped = plan_budget(rows, token_budget=1000, rows_per_step=2, row_length=100, max_steps=3)
    assert (capped.steps, capped.capped) == (3, True)
    with pytest.raises(ValueError, match="lower token_budget or set max_steps"):
        plan_budget(_Rows([1]), token_budget=10**9, rows_per_step=1, row_length=100)


def test_rows_that_hold_nothing_keep_the_slot_rule_with_a_warning(caplog):
    # Every sample skipped (e.g. all longer than a row): no step count spends the budget.
    with caplog.at_level("WARNING", logger="seqpar_train.data"):
        plan = plan_budget(_Rows([0]), token_budget=1000, rows_per_step=2, row_length=100)
    assert (plan.steps, plan.planned_tokens) == (5, 0)
    assert "hold no tokens" in caplog.text


def test_synthetic_row_tokens_match_the_built_rows():
    from longctx_rope.tiny import tiny_config
    from seqpar_train.data.synthetic import SyntheticRows

    source = SyntheticRows(tiny_config("qwen2.5-vl"), SyntheticData(), 256, seed=3)
    assert [source.row_tokens(i) for i in range(6)] == [
        source.row(i)[0].num_tokens for i in range(6)
    ]


def test_a_run_trains_its_budget_in_real_tokens_and_the_schedule_spans_it(tmp_path):
    config = _config(tmp_path, "token_budget=700")
    result = train(config)
    records = read_metrics(tmp_path / "metrics.jsonl")
    trained = [r["tokens_trained"] for r in records]
    # Rows of 256 slots hold about 95 tokens: 4 steps of 2 rows, not 700 / 512 = 2 steps.
    assert result.steps_done == len(records) == 4
    assert trained[-1] == result.tokens_trained >= 700 > trained[-2]
    assert all(r["token_budget"] == 700 for r in records)
    assert records[-1]["lr"] == pytest.approx(1e-4)  # cosine reaches final_lr on the last step
    # A CPU has no known peak: no MFU rather than a made-up one.
    assert records[0]["mfu_causal"] is None and records[0]["mfu_veomni"] is None
    given = train(_config(tmp_path / "peak", "token_budget=200", "peak_tflops=0.5"))
    record = read_metrics(tmp_path / "peak" / "metrics.jsonl")[0]
    assert given.steps_done == 2
    assert 0 < record["mfu_causal"] < record["mfu_veomni"]
    assert 0 < record["vision_flops_share"] < 1
