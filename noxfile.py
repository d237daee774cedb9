"""Every check of the MMProLong toolkit.

    nox                      lint, typecheck, one isolated test session per package, integration
    nox -s demo              the end-to-end demo on the embedded default (CPU, no downloads)
    nox -s bench             benchmarks: JSON under .reports/bench/ and a printed table
    nox -s lmms-eval         the real lmms-eval end to end (slow; .ci/run runs it after nox)
    nox -s gpu               on a CUDA machine only (not a default session): attention kernels in
                             bf16 against float64, training steps at 7B widths, the selfcheck;
                             .reports/gpu/gpu_report.{json,md} (docs/seqpar-train.md)
    nox -s tests-docpool     one package alone, in a virtualenv holding only it, its declared
                             dependencies and the test tools: the proof it installs on its own

Packages are installed from their folders (pip builds each wheel), never editable, so a file
missing from a wheel fails here and not on a user's machine. torch is pinned by
constraints.txt to the CPU build, so no CUDA wheels are downloaded.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
REPORTS = ROOT / ".reports"
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))

# Distribution name -> folder, bottom of the dependency graph first.
PACKAGES: dict[str, Path] = {
    "mmprolong-schemas": ROOT / "packages/schemas",
    "mmprolong-runtime": ROOT / "packages/runtime",
    "docpool": ROOT / "packages/docpool",
    "longctx-rope": ROOT / "packages/longctx-rope",
    "qasynth": ROOT / "packages/qasynth",
    "seqpar-train": ROOT / "packages/seqpar-train",
    "lvlm-judge": ROOT / "packages/lvlm-judge",
    "mmprolong": ROOT / "apps/mmprolong",
}
SHORT_NAMES = {"mmprolong-schemas": "schemas", "mmprolong-runtime": "runtime"}

nox.options.sessions = [
    "lint",
    "typecheck",
    *(f"tests-{SHORT_NAMES.get(name, name)}" for name in PACKAGES),
    "integration",
]
nox.options.error_on_missing_interpreters = True


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.\-]+", requirement)
    assert match, requirement
    return match.group(0).lower().replace("_", "-")


def _workspace_requirements(name: str, extras: tuple[str, ...]) -> set[str]:
    project = tomllib.loads((PACKAGES[name] / "pyproject.toml").read_text())["project"]
    requirements = list(project.get("dependencies", []))
    for extra in extras:
        requirements += project.get("optional-dependencies", {}).get(extra, [])
    return {_requirement_name(r) for r in requirements} & set(PACKAGES)


def _closure(name: str, extras: tuple[str, ...]) -> list[str]:
    """``name`` and every workspace package it needs, in PACKAGES order."""
    needed, todo = set(), [(name, extras)]
    while todo:
        current, current_extras = todo.pop()
        if current in needed:
            continue
        needed.add(current)
        todo += [(dep, ()) for dep in _workspace_requirements(current, current_extras)]
    return [package for package in PACKAGES if package in needed]


def _declared_extras(name: str) -> set[str]:
    project = tomllib.loads((PACKAGES[name] / "pyproject.toml").read_text())["project"]
    return set(project.get("optional-dependencies", {}))


def _console_script(name: str) -> tuple[str, str]:
    """The package's one console script and its ``module:object`` target."""
    project = tomllib.loads((PACKAGES[name] / "pyproject.toml").read_text())["project"]
    ((script, target),) = project["scripts"].items()
    return script, target


def install(session: nox.Session, *names: str, extras: tuple[str, ...] = ("test",)) -> None:
    """Install workspace packages with ``extras`` from their folders, siblings included; a
    package gets only the extras it declares."""
    targets: list[str] = []
    for name in names:
        for package in _closure(name, extras):
            spec = str(PACKAGES[package])
            own = [extra for extra in extras if extra in _declared_extras(package)]
            if package in names and own:
                spec += f"[{','.join(own)}]"
            if spec not in targets and str(PACKAGES[package]) not in targets:
                targets.append(spec)
    session.install(*CONSTRAINTS, *targets)


def pytest(session: nox.Session, report: str, *paths: str) -> None:
    REPORTS.mkdir(exist_ok=True)
    session.run(
        "pytest",
        *paths,
        f"--junitxml={REPORTS / f'{report}.xml'}",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    install(session, *PACKAGES)
    session.install("mypy>=1.10")
    session.run("mypy", *(str(path / "src") for path in PACKAGES.values()))


for _name, _path in PACKAGES.items():

    @nox.session(name=f"tests-{SHORT_NAMES.get(_name, _name)}")
    def _package_tests(session: nox.Session, name: str = _name, path: Path = _path) -> None:
        # First the bare package: with only its declared dependencies it must import and its
        # CLI must answer. Then the test extras, and the tests.
        install(session, name, extras=())
        script, target = _console_script(name)
        session.run("python", "-c", f"import {target.split(':')[0]}")
        session.run(script, "--help", silent=True)
        install(session, name)
        pytest(session, f"tests-{SHORT_NAMES.get(name, name)}", str(path / "tests"))


@nox.session
def integration(session: nox.Session) -> None:
    """All packages together, with their ray extras: the cross-package tests under tests/
    (the Ray executor's equality, kill-a-worker and resume tests among them)."""
    install(session, *PACKAGES, extras=("test", "ray"))
    session.install("build>=1.2")
    pytest(session, "integration", str(ROOT / "tests"))


# lmms-eval with only what the end-to-end test's code path imports (its CLI, evaluator, task
# loader and metrics, and its openai chat model), without its declared dependencies: those pin
# wandb and pull torchvision, which the test does not reach and which has no CPU build on PyPI.
LMMS_EVAL = "lmms-eval==0.7.3"
LMMS_EVAL_NEEDS = (
    "datasets", "evaluate", "sacrebleu", "loguru", "pytablewriter", "tenacity", "filelock<4",
    "openai", "python-dotenv", "pyyaml",
)  # fmt: skip


@nox.session(name="lmms-eval")
def lmms_eval(session: nox.Session) -> None:
    """The real lmms-eval end to end on a local task (a few minutes): not a default session;
    .ci/run runs it after them."""
    install(session, "lvlm-judge")
    session.install(*CONSTRAINTS, *LMMS_EVAL_NEEDS)
    session.install("--no-deps", LMMS_EVAL)
    session.env["LVLM_JUDGE_REQUIRE_LMMS"] = "1"
    pytest(session, "lmms-eval", str(PACKAGES["lvlm-judge"] / "tests/test_lmms_eval_e2e.py"))


@nox.session
def demo(session: nox.Session) -> None:
    """The end-to-end demo on the embedded default: tiny model, generated PDFs, CPU only."""
    install(session, "mmprolong", extras=())
    session.run("mmprolong", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks; results land in .reports/bench/*.json and are printed as a table (with the
    ray extras: bench_scale_out compares the Ray executor with the local one)."""
    install(session, *PACKAGES, extras=("test", "ray"))
    session.run(
        "python", str(ROOT / "benchmarks/run.py"), "--out", str(REPORTS / "bench"), *session.posargs
    )


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """The GPU check, in the interpreter that runs nox: a GPU machine's own torch (with CUDA)
    and our packages installed from wheels (docs/seqpar-train.md). Fails at once, saying so,
    without CUDA; JSON and a table land in .reports/gpu/."""
    session.run(
        "python", "-m", "seqpar_train.gpu_report", "--out", str(REPORTS / "gpu"), *session.posargs
    )
