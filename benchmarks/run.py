"""Run the benchmarks and report them as JSON files and one table.

Each ``benchmarks/bench_<package>.py`` defines ``run(work: Path) -> list[Result]``. A result
compares what we measured with a baseline measured in the same run, and says whether the
target holds. Nothing here asserts: a missed target is reported, and the exit code is 0
unless a benchmark could not run at all.

    python benchmarks/run.py --out .reports/bench [--only docpool,qasynth]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import Result

HERE = Path(__file__).parent


def _load(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path(".reports/bench"))
    parser.add_argument("--only", default="", help="Comma-separated package names.")
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    args.out.mkdir(parents=True, exist_ok=True)
    console = Console()
    table = Table(title="MMProLong benchmarks")
    for column in ("benchmark", "measured", "baseline", "ratio", "target", "met"):
        table.add_column(column)
    failures = 0
    for path in sorted(HERE.glob("bench_*.py")):
        package = path.stem.removeprefix("bench_")
        if only and package not in only:
            continue
        console.print(f"[bold]running {path.name}[/bold]")
        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix=f"bench-{package}-") as work:
                results: list[Result] = _load(path).run(Path(work))
        except Exception:
            failures += 1
            console.print(f"[red]{path.name} failed[/red]\n{traceback.format_exc()}")
            continue
        payload = {
            "package": package,
            "seconds": round(time.perf_counter() - started, 2),
            "results": [{**asdict(r), "ratio": r.ratio} for r in results],
        }
        (args.out / f"{package}.json").write_text(json.dumps(payload, indent=2) + "\n")
        for r in results:
            table.add_row(
                f"{package}: {r.name}",
                f"{r.value:.4g} {r.unit}",
                "" if r.baseline is None else f"{r.baseline:.4g} ({r.baseline_name or 'baseline'})",
                "" if r.ratio is None else f"{r.ratio:.3g}x",
                r.target or "report",
                {True: "yes", False: "NO", None: "-"}[r.passed],
            )
    console.print(table)
    console.print(f"JSON results in {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
