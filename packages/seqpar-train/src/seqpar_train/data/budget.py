"""Optimizer steps from the packing plan: the token budget counts tokens trained.

Rows are fixed-length slots; packing fills a share of each (about 77% with whole samples
at pool-native lengths). Steps = budget / slot tokens would train only that share of the
budget, so the steps are counted row by row on the plan until the planned real tokens
reach the budget. Planning needs token counts only (no rendering); every rank computes the
same plan, and the schedule spans exactly these steps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from seqpar_train.data.loader import RowSource
from seqpar_train.flops import steps_for_budget

MAX_PLANNED_STEPS = 1_000_000
EMPTY_STEPS_CHECKED = 8

log = logging.getLogger("seqpar_train.data")


@dataclass(frozen=True)
class BudgetPlan:
    steps: int
    planned_tokens: int  # real tokens of the rows of those steps
    token_budget: int
    capped: bool  # max_steps ended the plan before the budget was reached

    @property
    def row_fill(self) -> float:
        return self.planned_tokens / max(1, self.steps)


def plan_budget(
    source: RowSource,
    *,
    token_budget: int,
    rows_per_step: int,
    row_length: int,
    max_steps: int | None = None,
) -> BudgetPlan:
    """The steps whose rows hold ``token_budget`` real tokens (the last step may pass it),
    or ``max_steps`` if that comes first."""
    limit = max_steps if max_steps is not None else MAX_PLANNED_STEPS
    tokens, step = 0, 0
    while tokens < token_budget and step < limit:
        for index in range(step * rows_per_step, (step + 1) * rows_per_step):
            tokens += source.row_tokens(index)
        step += 1
        if tokens == 0 and step >= EMPTY_STEPS_CHECKED:
            # Every sample so far was skipped (too long for a row, unreadable): no count of
            # steps spends the budget. Keep the slot rule, and say so loudly.
            slots = steps_for_budget(token_budget, rows_per_step * row_length)
            steps = min(slots, max_steps) if max_steps is not None else slots
            log.warning(
                "the first %d steps' rows hold no tokens (every sample skipped); running "
                "%d steps of empty rows: check max_length against the samples' lengths",
                EMPTY_STEPS_CHECKED,
                steps,
            )
            return BudgetPlan(steps, 0, token_budget, capped=True)
    if tokens < token_budget and max_steps is None:
        raise ValueError(
            f"a token budget of {token_budget} needs more than {MAX_PLANNED_STEPS} steps of "
            f"{rows_per_step} rows ({tokens} tokens planned so far); lower token_budget or "
            "set max_steps"
        )
    return BudgetPlan(step, tokens, token_budget, capped=tokens < token_budget)
