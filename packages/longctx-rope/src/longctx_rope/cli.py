"""`longctx-rope` command line: extend, inspect, span, wavelengths."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from longctx_rope import __version__
from longctx_rope.architectures import (
    DEFAULT_MROPE_SECTION,
    Architecture,
    UnsupportedArchitectureError,
    describe_architecture,
)
from longctx_rope.extend import (
    LinkMode,
    VerificationError,
    extend_checkpoint,
    original_theta,
    read_config,
    trained_context,
)
from longctx_rope.loaders import loader_views
from longctx_rope.methods import make_spec
from longctx_rope.span import Span, plot_spans, span_of_path, summarize
from longctx_rope.wavelengths import ROWS, frequency_table, plot_wavelengths, summarize_sections
from mmprolong_runtime.cli_app import fail, option_value, package_app
from mmprolong_schemas import ModelFamily, SchemaError, VisionTokenSpec, parse_tokens
from mmprolong_schemas.io import atomic_path, write_json
from mmprolong_schemas.recipe import RopeMethod
from mmprolong_schemas.vision_tokens import estimate_text_tokens


def _quiet_transformers() -> None:
    # transformers' own loading chatter would drown the tables; errors still show.
    logging.getLogger("transformers").setLevel(logging.ERROR)


app = package_app(
    "longctx-rope",
    __version__,
    help="Extend the (m)RoPE of Qwen2.5-VL / Qwen3-VL checkpoints and analyse position spans.",
    on_start=_quiet_transformers,
    rich_markup_mode="markdown",
)
console = Console()

EXPECTED_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    UnsupportedArchitectureError,
    VerificationError,
    SchemaError,
    ValueError,
)


def _write_png(path: Path, draw: Any) -> None:
    with atomic_path(path) as tmp:
        draw(tmp)


@app.command()
def extend(
    model_dir: Annotated[Path, typer.Argument(help="Checkpoint directory (config.json, weights).")],
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write the extended checkpoint to.")
    ],
    target: Annotated[
        str, typer.Option("--target", help="Target context in tokens, e.g. 131072 or 128K.")
    ] = "128K",
    method: Annotated[
        RopeMethod, typer.Option("--method", help="ntk-base, set-base, linear or yarn.")
    ] = RopeMethod.NTK_BASE,
    base: Annotated[
        float | None,
        typer.Option(
            "--base",
            help="set-base: the new base. ntk-base: the rounded base expected (4e6 checks that "
            "the NTK rule rounds to it).",
        ),
    ] = None,
    original: Annotated[
        str | None,
        typer.Option(
            "--original",
            help="Context the checkpoint was trained at. Default: 32K for Qwen2.5-VL (its "
            "config says 128000 but it was trained at 32K), max_position_embeddings otherwise.",
        ),
    ] = None,
    round_to: Annotated[
        float | None, typer.Option("--round-to", help="ntk-base: round the base to a multiple.")
    ] = None,
    factor: Annotated[
        float | None,
        typer.Option("--factor", help="Stretch factor; default target / original context."),
    ] = None,
    original_max_position: Annotated[
        int | None,
        typer.Option(
            "--original-max-position",
            help="yarn: largest mRoPE position seen in training (see `span`); default --original.",
        ),
    ] = None,
    link: Annotated[
        str, typer.Option("--link", help="How to carry the weights over: symlink, hardlink, copy.")
    ] = "symlink",
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing different extension.")
    ] = False,
) -> None:
    """Write an extended checkpoint: rope settings in both config forms, max_position_embeddings
    and tokenizer model_max_length raised, weights linked (never rewritten), result verified."""
    if link not in ("symlink", "hardlink", "copy"):
        raise typer.BadParameter(f"--link must be symlink, hardlink or copy, not {link!r}")
    try:
        config = read_config(model_dir)
        arch = describe_architecture(config)
        theta = original_theta(config)
        if theta is None:
            raise ValueError(f"{model_dir}/config.json has no rope_theta in either form")
        spec = make_spec(
            method,
            original_base=theta,
            original_context=(
                option_value(parse_tokens, original, "--original")
                if original
                else trained_context(config)
            ),
            target_context=option_value(parse_tokens, target, "--target"),
            head_dim=arch.head_dim,
            base=base,
            round_to=round_to,
            original_max_position=original_max_position,
            factor=factor,
        )
        result = extend_checkpoint(
            model_dir, out, spec, link=cast(LinkMode, link), overwrite=overwrite
        )
    except EXPECTED_ERRORS as error:
        fail(str(error))
    _print_views(result.views, f"{arch.family.value}: {spec.describe()}")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    verb = "already up to date" if result.skipped else "written and verified"
    console.print(f"[green]{out}[/green] {verb}")


def _print_views(views: list[Any], title: str) -> None:
    table = Table(title=title)
    table.add_column("loader", no_wrap=True)
    for column in ("rope type", "theta", "mRoPE", "sections", "factor", "max positions"):
        table.add_column(column)
    for view in views:
        table.add_row(
            view.loader,
            view.rope_type,
            f"{view.theta:.6g}",
            "yes" if view.mrope else "[red]no[/red]",
            str(view.mrope_section),
            "" if view.factor is None else f"{view.factor:g}",
            str(view.max_positions),
        )
    console.print(table)
    for view in views:
        for note in view.notes:
            console.print(f"[yellow]{view.loader}:[/yellow] {note}")


@app.command()
def inspect(
    model_dir: Annotated[Path, typer.Argument(help="Checkpoint directory.")],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the readings as JSON here.")
    ] = None,
) -> None:
    """Print a checkpoint's effective rope settings as transformers 5, transformers 4.x and
    vLLM would read them, and flag disagreements."""
    try:
        config = read_config(model_dir)
        arch = describe_architecture(config)
        views = loader_views(config)
    except EXPECTED_ERRORS as error:
        fail(str(error))
    _print_views(views, f"{model_dir} ({arch.family.value}, head_dim {arch.head_dim})")
    thetas = {view.theta for view in views}
    if len(thetas) > 1:
        console.print(
            "[red]loaders disagree on the base:[/red] "
            + ", ".join(f"{v.loader} {v.theta:.6g}" for v in views)
        )
    if json_out is not None:
        write_json(
            json_out,
            {"model_dir": str(model_dir), "views": [v.as_dict() for v in views]},
            indent=2,
        )
        console.print(f"wrote {json_out}")


@app.command()
def span(
    source: Annotated[
        Path,
        typer.Argument(help="Sample Parquet shards (file or folder) or a docpool pool folder."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for span.json and span.png.")] = Path(
        "span-report"
    ),
    pool: Annotated[
        Path | None,
        typer.Option("--pool", help="docpool pool giving the page sizes of the samples' pages."),
    ] = None,
    family: Annotated[
        ModelFamily, typer.Option("--family", help="Decides the resize factor (28 or 32).")
    ] = ModelFamily.QWEN2_5_VL,
    dpi: Annotated[float, typer.Option("--dpi", help="Page render resolution.")] = 144.0,
    min_pixels: Annotated[
        int | None, typer.Option("--min-pixels", help="Default: the family's preprocessor.")
    ] = None,
    max_pixels: Annotated[
        int | None, typer.Option("--max-pixels", help="Default: the family's preprocessor.")
    ] = None,
    tokenizer: Annotated[
        Path | None,
        typer.Option("--tokenizer", help="Count text with this tokenizer instead of estimating."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Stop after this many.")] = None,
    top: Annotated[int, typer.Option("--top", help="Rows shown in the table.")] = 10,
) -> None:
    """Flattened token length against maximum mRoPE position (T/H/W) and 1-D RoPE position,
    per sample (or per pooled document). Prints a table, writes span.json and span.png."""
    spec = VisionTokenSpec.for_family(family, dpi=dpi, min_pixels=min_pixels, max_pixels=max_pixels)
    count_text = estimate_text_tokens
    if tokenizer is not None:
        from transformers import AutoTokenizer

        loaded = AutoTokenizer.from_pretrained(tokenizer)

        def count_text(text: str) -> int:
            return len(loaded(text, add_special_tokens=False)["input_ids"])

    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("measuring spans", total=None)

        def advance(_: Span) -> None:
            progress.advance(task)

        try:
            run = span_of_path(
                source, spec, pool=pool, count_text=count_text, limit=limit, on_span=advance
            )
        except EXPECTED_ERRORS as error:
            fail(str(error))
    summary = summarize(run.spans)
    table = Table(title=f"span of {run.source} ({family.value}, {dpi:g} DPI)")
    for column in ("sample", "tokens", "pages", "text", "max T", "max H", "max W", "1-D max"):
        table.add_column(column, justify="right" if column != "sample" else "left")
    for item in sorted(run.spans, key=lambda s: s.tokens, reverse=True)[:top]:
        table.add_row(
            item.sample_id[:16],
            f"{item.tokens:,}",
            str(item.pages),
            f"{item.text_tokens:,}",
            f"{item.max_t:,}",
            f"{item.max_h:,}",
            f"{item.max_w:,}",
            f"{item.max_1d:,}",
        )
    console.print(table)
    for key, value in summary.items():
        console.print(
            f"  {key}: {value:,.2f}" if isinstance(value, float) else f"  {key}: {value:,}"
        )
    if run.assumed_pages:
        console.print(
            f"[yellow]{run.assumed_pages} pages had no known size and were taken as US letter; "
            "pass --pool for exact sizes[/yellow]"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "span.json",
        {
            "source": run.source,
            "family": family.value,
            "vision": spec.model_dump(),
            "summary": summary,
            "assumed_pages": run.assumed_pages,
            "spans": [item.as_dict() for item in run.spans],
        },
        indent=2,
    )
    _write_png(out / "span.png", lambda path: plot_spans(run.spans, path, f"span of {source.name}"))
    console.print(f"wrote {out / 'span.json'} and {out / 'span.png'}")


def _row_maxima(span_json: Path | None, default: int) -> dict[str, int]:
    if span_json is None:
        return dict.fromkeys(ROWS, default)
    data = json.loads(span_json.read_text(encoding="utf-8"))
    spans = data.get("spans") or []
    if not spans:
        raise ValueError(f"{span_json} holds no spans")
    return {row: max(int(s[f"max_{row.lower()}"]) for s in spans) for row in ROWS}


@app.command()
def wavelengths(
    base: Annotated[float, typer.Option("--base", help="The (new) rope base to analyse.")],
    model_dir: Annotated[
        Path | None,
        typer.Option("--model", help="Take head_dim, sections and original base from here."),
    ] = None,
    family: Annotated[
        ModelFamily, typer.Option("--family", help="Without --model: the real model's layout.")
    ] = ModelFamily.QWEN2_5_VL,
    original_base: Annotated[
        float | None, typer.Option("--original-base", help="Default: the model's, else 1e6.")
    ] = None,
    trained_max: Annotated[
        str, typer.Option("--trained-max", help="Largest position seen in training.")
    ] = "32K",
    target_max: Annotated[
        str, typer.Option("--target-max", help="Largest position to be served.")
    ] = "128K",
    trained_span: Annotated[
        Path | None,
        typer.Option("--trained-span", help="span.json of the training data: per-row maxima."),
    ] = None,
    target_span: Annotated[
        Path | None,
        typer.Option("--target-span", help="span.json of the target data: per-row maxima."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for wavelengths.json/.png.")] = Path(
        "wavelengths-report"
    ),
) -> None:
    """For each mRoPE section (T/H/W), the wavelength of each frequency at --base against the
    largest positions seen and targeted: which frequencies extrapolate. Table, PNG, JSON."""
    try:
        if model_dir is not None:
            config = read_config(model_dir)
            arch = describe_architecture(config)
            original = original_base or original_theta(config) or 1e6
        else:
            arch = Architecture(
                family=family,
                model_type=family.value,
                head_dim=128,
                mrope_section=DEFAULT_MROPE_SECTION[family],
                interleaved=family is ModelFamily.QWEN3_VL,
            )
            original = original_base or 1e6
        trained = _row_maxima(
            trained_span, option_value(parse_tokens, trained_max, "--trained-max")
        )
        targeted = _row_maxima(target_span, option_value(parse_tokens, target_max, "--target-max"))
        table_rows = frequency_table(arch, base, original, trained, targeted)
    except EXPECTED_ERRORS as error:
        fail(str(error))
    sections = summarize_sections(table_rows)
    title = f"{arch.family.value} head_dim {arch.head_dim}: base {original:.4g} -> {base:.4g}"
    table = Table(title=title)
    columns = ("row", "freqs", "periodic", "in range", "extrapolating")
    for column in (*columns, "worst overshoot", "trained max", "target max", "longest λ"):
        table.add_column(column, justify="right")
    for row in sections:
        table.add_row(
            row["row"],
            str(row["frequencies"]),
            str(row["periodic"]),
            str(row["in-range"]),
            str(row["extrapolating"]),
            "-" if row["max_overshoot"] is None else f"{row['max_overshoot']:.2f}x",
            f"{row['trained_max']:,}",
            f"{row['target_max']:,}",
            f"{row['longest_wavelength']:,.0f}",
        )
    console.print(table)
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "wavelengths.json",
        {
            "family": arch.family.value,
            "head_dim": arch.head_dim,
            "mrope_section": arch.mrope_section,
            "base": base,
            "original_base": original,
            "sections": sections,
            "frequencies": [f.as_dict() for f in table_rows],
        },
        indent=2,
    )
    title = f"{arch.family.value}: base {base:.4g} (x: {original:.4g})"
    _write_png(out / "wavelengths.png", lambda path: plot_wavelengths(table_rows, path, title))
    console.print(f"wrote {out / 'wavelengths.json'} and {out / 'wavelengths.png'}")


if __name__ == "__main__":
    app()
