"""Bad input at any CLI gets one clear line: every subcommand of every toolkit CLI, run with a
bad value and with a wrong folder, exits with code 2 and one line on stderr naming the input,
and no traceback; with ``--debug`` a toolkit error shows its traceback too.

The subcommands are enumerated from the apps themselves, so a new command fails
``test_every_subcommand_has_cases`` until it gets its two cases here."""

from __future__ import annotations

import contextlib
import importlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from mmprolong_schemas import cli as schemas_cli

TYPER_CLIS = {
    "mmprolong-runtime": "mmprolong_runtime.cli",
    "docpool": "docpool.cli",
    "qasynth": "qasynth.cli",
    "longctx-rope": "longctx_rope.cli",
    "seqpar-train": "seqpar_train.cli",
    "lvlm-judge": "lvlm_judge.cli",
    "mmprolong": "mmprolong.cli",
}

# mmprolong's pool/synth/rope/train/eval hand their arguments to the package CLIs above; they
# are run through it (as `mmprolong pool ...`) in FORWARDED below.
FORWARDING = {"pool", "synth", "rope", "train", "eval"}

WRONG = "{wrong}"
"""An existing folder that is no pool, run, model or checkpoint: it holds one notes.txt."""
NOTES = "{wrong}/notes.txt"
"""A text file that is no manifest, config, table or record file."""
# "{run}": a qasynth run folder whose (empty) segments.jsonl lets `generate` read its options.


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    names: str
    """What the error line must name (placeholders filled in)."""
    exit_code: int = 2


def bad(*args: str, names: str) -> Case:
    return Case(args, names)


CASES: dict[tuple[str, str], tuple[Case, Case]] = {
    # (cli, command): (bad value, wrong folder)
    ("mmprolong-schemas", "json-schema"): (
        bad("json-schema", "NoSuchRecord", names="NoSuchRecord"),
        bad("json-schema", "Document", "--out", NOTES, names=NOTES),
    ),
    ("mmprolong-schemas", "validate"): (
        bad("validate", NOTES, "--model", "NoSuchRecord", names="NoSuchRecord"),
        bad("validate", WRONG, "--model", "Document", names=WRONG),
    ),
    ("mmprolong-runtime", "manifest"): (
        bad("manifest", NOTES, names=NOTES),
        bad("manifest", WRONG, names=WRONG),
    ),
    ("mmprolong-runtime", "validate"): (
        bad("validate", "{tmp}/missing", names="{tmp}/missing"),
        bad("validate", WRONG, names=WRONG),
    ),
    ("mmprolong-runtime", "json-schema"): (
        # It reads nothing, so both cases name the --out that is not a folder.
        bad("json-schema", "--out", NOTES, names=NOTES),
        bad("json-schema", "--out", NOTES + "/schemas", names=NOTES),
    ),
    ("docpool", "ingest"): (
        bad("ingest", WRONG, "--out", "{tmp}/pool", "--layout", "5X", names="5X"),
        bad("ingest", "{tmp}/missing", "--out", "{tmp}/pool", names="{tmp}/missing"),
    ),
    ("docpool", "stats"): (
        bad("stats", WRONG, "--family", "5X", names="5X"),
        bad("stats", WRONG, names=WRONG),
    ),
    ("docpool", "render"): (
        bad("render", WRONG, "abc", "--pages", "5X", names=WRONG),
        bad("render", WRONG, "abc", names=WRONG),
    ),
    ("docpool", "hash"): (
        bad("hash", "{tmp}/missing", names="{tmp}/missing"),
        bad("hash", WRONG, "--out", WRONG, names=WRONG),
    ),
    ("docpool", "make-corpus"): (
        bad("make-corpus", "{tmp}/corpus", "--langs", "5X", names="5X"),
        bad("make-corpus", NOTES, names=NOTES),
    ),
    ("qasynth", "segment"): (
        bad("segment", WRONG, "{tmp}/run", "--max-length", "5X", names="5X"),
        bad("segment", WRONG, "{tmp}/run", names=WRONG),
    ),
    ("qasynth", "generate"): (
        bad("generate", WRONG, "{run}", "--tasks", "5X", names="5X"),
        bad("generate", WRONG, WRONG, names=WRONG),
    ),
    ("qasynth", "assemble"): (
        bad("assemble", WRONG, "{tmp}/run", "--max-length", "5X", names="5X"),
        bad("assemble", WRONG, WRONG, names=WRONG),
    ),
    ("qasynth", "mix"): (
        bad("mix", "{tmp}/mix", WRONG, "--budget", "5X", names="5X"),
        bad("mix", "{tmp}/mix", WRONG, names=WRONG),
    ),
    ("qasynth", "review"): (
        bad("review", WRONG, WRONG, "-n", "5X", names="'-n'"),
        bad("review", WRONG, WRONG, names=WRONG),
    ),
    ("qasynth", "stats"): (
        bad("stats", NOTES, names=NOTES),
        bad("stats", WRONG, names=WRONG),
    ),
    ("longctx-rope", "extend"): (
        bad("extend", WRONG, "--out", "{tmp}/out", "--link", "5X", names="5X"),
        bad("extend", WRONG, "--out", "{tmp}/out", "--target", "256K", names=WRONG),
    ),
    ("longctx-rope", "inspect"): (
        bad("inspect", NOTES, names=NOTES),
        bad("inspect", WRONG, names=WRONG),
    ),
    ("longctx-rope", "span"): (
        bad("span", NOTES, names=NOTES),
        bad("span", WRONG, names=WRONG),
    ),
    ("longctx-rope", "wavelengths"): (
        bad("wavelengths", "--base", "5X", names="'--base'"),
        bad("wavelengths", "--base", "1000000", "--model", WRONG, names=WRONG),
    ),
    ("seqpar-train", "train"): (
        bad("train", NOTES, names=NOTES),
        bad("train", WRONG, names=WRONG),
    ),
    ("seqpar-train", "flops"): (
        bad("flops", "--seq-len", "5X", names="5X"),
        bad("flops", "--model", WRONG, names=WRONG),
    ),
    ("seqpar-train", "plan"): (
        bad("plan", "--seq-len", "5X", names="5X"),
        bad("plan", "--model", WRONG, names=WRONG),
    ),
    ("seqpar-train", "export"): (
        bad("export", NOTES, "--out", "{tmp}/out", names=NOTES),
        bad("export", WRONG, "--out", "{tmp}/out", names=WRONG),
    ),
    ("seqpar-train", "selfcheck"): (
        bad("selfcheck", "--sp", "5X", names="'--sp'"),
        bad("selfcheck", "--family", WRONG, names=WRONG),
    ),
    ("lvlm-judge", "run"): (
        bad("run", "--model", "m", "--data", NOTES, "--lengths", "5X", names="5X"),
        bad("run", "--model", "m", "--data", WRONG, names=WRONG),
    ),
    ("lvlm-judge", "extend"): (
        bad("extend", NOTES, "--tokenizer", WRONG, names=NOTES),
        bad("extend", WRONG, "--tokenizer", WRONG, names=WRONG),
    ),
    ("lvlm-judge", "render-tsv"): (
        bad("render-tsv", NOTES, "--image-root", "{tmp}/images", "--dpi", "5X", names="'--dpi'"),
        bad("render-tsv", WRONG, "--image-root", "{tmp}/images", names=WRONG),
    ),
    ("lvlm-judge", "report"): (
        bad("report", NOTES, names=NOTES),
        bad("report", WRONG, names=WRONG),
    ),
    ("lvlm-judge", "score"): (
        bad("score", NOTES, "--out", "{tmp}/out", names=NOTES),
        bad("score", WRONG, "--out", "{tmp}/out", names=WRONG),
    ),
    ("lvlm-judge", "suite"): (
        bad("suite", WRONG, "--groups", "5X", names="5X"),
        bad("suite", WRONG, "--niah-data", WRONG, names=WRONG),
    ),
    ("lvlm-judge", "import-lmms-eval"): (
        bad("import-lmms-eval", NOTES, "--checkpoint", "c", "--out", "{tmp}/o", names=NOTES),
        bad("import-lmms-eval", WRONG, "--checkpoint", "c", "--out", "{tmp}/o", names=WRONG),
    ),
    ("mmprolong", "run"): (
        bad("run", "no-such-recipe-5X", names="no-such-recipe-5X"),
        bad("run", WRONG, names=WRONG),
    ),
    ("mmprolong", "launch-train"): (
        bad("launch-train", WRONG, "--stage", "5X", names="5X"),
        bad("launch-train", WRONG, names=WRONG),
    ),
    ("mmprolong", "status"): (
        bad("status", NOTES, names=NOTES),
        bad("status", WRONG, names=WRONG),
    ),
    ("mmprolong", "recipes"): (
        bad("recipes", "no-such-recipe-5X", names="no-such-recipe-5X"),
        bad("recipes", WRONG, names=WRONG),
    ),
    ("mmprolong", "sweep"): (
        bad("sweep", "no-such-sweep-5X", names="no-such-sweep-5X"),
        bad("sweep", "ablation-ratio", "--base", WRONG, names=WRONG),
    ),
    ("mmprolong", "doctor"): (
        bad("doctor", "--recipe", "no-such-recipe-5X", names="no-such-recipe-5X"),
        bad("doctor", "--recipe", WRONG, names=WRONG),
    ),
    ("mmprolong", "demo"): (
        # Any folder is a fine new run directory, so both cases name a file.
        bad("demo", "--run-dir", NOTES, names=NOTES),
        bad("demo", "--run-dir", NOTES + "/run", names=NOTES),
    ),
}

FORWARDED = {
    # `mmprolong NAME ARGS` reports what the package CLI reports.
    name: CASES[(cli, command)]
    for name, (cli, command) in {
        "pool": ("docpool", "stats"),
        "synth": ("qasynth", "mix"),
        "rope": ("longctx-rope", "inspect"),
        "train": ("seqpar-train", "export"),
        "eval": ("lvlm-judge", "report"),
    }.items()
}


def _typer_commands(cli: str) -> list[str]:
    group = get_command(importlib.import_module(TYPER_CLIS[cli]).app)
    return sorted(group.commands)  # type: ignore[attr-defined]


def _schemas_commands() -> list[str]:
    subparsers = schemas_cli.parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    return sorted(subparsers.choices)


def test_every_subcommand_has_cases() -> None:
    found = {("mmprolong-schemas", command) for command in _schemas_commands()}
    for cli in TYPER_CLIS:
        found |= {
            (cli, command)
            for command in _typer_commands(cli)
            if not (cli == "mmprolong" and command in FORWARDING)
        }
    assert found == set(CASES)
    assert set(FORWARDED) == set(_typer_commands("mmprolong")) & FORWARDING


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("cli-errors")
    wrong = tmp / "wrong"
    wrong.mkdir()
    (wrong / "notes.txt").write_text("not a pool, run, model, config or record file\n")
    run = tmp / "run-segmented"
    run.mkdir()
    (run / "segments.jsonl").touch()
    return {"tmp": str(tmp), "wrong": str(wrong), "run": str(run)}


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stderr: str
    stdout: str


def _run(cli: str, args: list[str], cwd: Path) -> Outcome:
    with contextlib.chdir(cwd):  # commands with default output folders write under tmp
        if cli == "mmprolong-schemas":
            err, out = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                try:
                    code = schemas_cli.main(args)
                except SystemExit as stop:
                    code = int(stop.code or 0)
            return Outcome(code, err.getvalue(), out.getvalue())
        result = CliRunner().invoke(
            importlib.import_module(TYPER_CLIS[cli]).app, args, prog_name=cli
        )
        # An uncaught exception is a bug: fail with it rather than compare exit codes.
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.stderr, result.stdout)


def _fill(case: Case, folders: dict[str, str]) -> tuple[list[str], str]:
    return [arg.format(**folders) for arg in case.args], case.names.format(**folders)


def _check_one_line(outcome: Outcome, names: str, expected_exit: int, label: str) -> None:
    # Progress lines a command printed before it met the bad input may come first; the error
    # is the one last line, and nothing is drawn around it.
    lines = outcome.stderr.strip().splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert outcome.exit_code == expected_exit, f"{label}: exit {outcome.exit_code}\n{lines}"
    assert errors == lines[-1:], f"{label}: the error is not one last line\n{outcome.stderr}"
    assert "Traceback" not in outcome.stderr + outcome.stdout, label
    assert not set("│╭╰") & set(outcome.stderr), f"{label}: a panel\n{outcome.stderr}"
    assert names in errors[0], f"{label}: {names!r} not in {errors[0]!r}"


def _all_cases() -> list[tuple[str, str, str, Case]]:
    return [
        (cli, command, kind, case)
        for (cli, command), pair in sorted(CASES.items())
        for kind, case in zip(("bad-value", "wrong-folder"), pair, strict=True)
    ]


@pytest.mark.parametrize(
    ("cli", "command", "kind", "case"),
    _all_cases(),
    ids=[f"{cli}-{command}-{kind}" for cli, command, kind, _ in _all_cases()],
)
def test_bad_input_gets_one_line(
    cli: str, command: str, kind: str, case: Case, folders: dict[str, str]
) -> None:
    args, names = _fill(case, folders)
    cwd = Path(folders["tmp"])
    plain = _run(cli, args, cwd)
    _check_one_line(plain, names, case.exit_code, f"{cli} {' '.join(args)}")
    debug = _run(cli, ["--debug", *args], cwd)
    assert debug.exit_code == case.exit_code, debug.stderr
    assert "Traceback" in debug.stderr, f"{cli} --debug {' '.join(args)}\n{debug.stderr}"
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("name", sorted(FORWARDED))
def test_forwarded_commands_report_one_line(name: str, folders: dict[str, str]) -> None:
    for case in FORWARDED[name]:
        args, names = _fill(case, folders)
        outcome = _run("mmprolong", [name, *args], Path(folders["tmp"]))
        _check_one_line(outcome, names, case.exit_code, f"mmprolong {name} {' '.join(args)}")
        assert outcome.stderr.strip().splitlines()[-1].startswith(f"mmprolong {name}: error: ")
        debug = _run("mmprolong", ["--debug", name, *args], Path(folders["tmp"]))
        assert debug.exit_code == case.exit_code and "Traceback" in debug.stderr, debug.stderr
