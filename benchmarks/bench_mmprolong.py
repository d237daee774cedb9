"""mmprolong benchmarks: CLI start-up, planning a finished run, and the demo's wall time.

- `mmprolong --help` must stay fast because the package CLIs are mounted lazily; baseline:
  importing the five packages it composes (what an eager mount would cost).
- Planning a finished run (hashing every stage's config, reading every manifest) is what a
  rerun pays before skipping everything; baseline: validating the recipe alone.
- The demo (`mmprolong run demo-tiny`) end to end, against the issue's 10-minute target on
  2 cores.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import Result, best_of

from mmprolong.orchestrator import Pipeline
from mmprolong.recipes import load_recipe, shipped_recipes
from mmprolong.stages import default_stages

DEMO_TARGET_S = 600.0


def _python(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def run(work: Path) -> list[Result]:
    results: list[Result] = []

    help_s = best_of(lambda: _python("from mmprolong.cli import app; app(['--help'])"), 3)
    imports_s = best_of(
        lambda: _python("import docpool, qasynth, longctx_rope, seqpar_train, lvlm_judge"), 3
    )
    results.append(
        Result(
            name="mmprolong --help (fresh process)",
            value=help_s,
            unit="s",
            baseline=imports_s,
            baseline_name="importing the five composed packages",
            target="well below the baseline (lazy mounts)",
            passed=help_s < imports_s,
        )
    )

    demo_dir = Path(tempfile.mkdtemp(prefix="bench-mmprolong-", dir=work))
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mmprolong.cli", "run", "demo-tiny", "--run-dir", str(demo_dir)],
        check=True,
        capture_output=True,
    )
    demo_s = time.perf_counter() - started
    results.append(
        Result(
            name="demo end to end (mmprolong run demo-tiny)",
            value=demo_s,
            unit="s",
            target=f"<= {DEMO_TARGET_S:.0f} s on 2 CPU cores",
            passed=demo_s <= DEMO_TARGET_S,
        )
    )

    recipe = load_recipe("demo-tiny")
    pipeline = Pipeline(default_stages(), demo_dir)
    plan_s = best_of(lambda: pipeline.plan(recipe), 5)
    text = shipped_recipes()["demo-tiny"]
    parse_s = best_of(lambda: load_recipe("demo-tiny"), 5)
    results.append(
        Result(
            name="plan a finished demo run (what a rerun pays before skipping)",
            value=plan_s,
            unit="s",
            baseline=parse_s,
            baseline_name="parsing and validating the recipe",
            details={"recipe_bytes": len(text)},
        )
    )
    return results
