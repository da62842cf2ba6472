"""``hwsim validate``: run every shipped validation case and report the agreement."""

from __future__ import annotations

from pathlib import Path

import click

from hwsim.cli.group import main
from hwsim.errors import ConfigError
from hwsim.report import format_table
from hwsim.validation import all_cases, run_validation, summarize
from hwsim.validation.report import validation_markdown, worst_rows


@main.command("validate")
@click.option("--group", "group_filter", default=None, help="Only groups containing this text.")
@click.option("--all", "show_all", is_flag=True, help="List every case, not only the worst.")
@click.option("--json", "as_json", is_flag=True, help="Print every case and the summary as JSON.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the report as Markdown (docs/validation.md).")
@click.option("--strict", is_flag=True, help="Exit 1 if any group misses its thresholds.")
def validate(group_filter: str | None, show_all: bool, as_json: bool, markdown_path: Path | None,
             strict: bool) -> None:
    """Compare hwsim with measured and published figures: case, measured, predicted, error."""
    every = all_cases()
    cases = [c for c in every if not group_filter or group_filter in c.group]
    if not cases:
        groups = ", ".join(dict.fromkeys(c.group for c in every))
        raise ConfigError([f"--group: no validation group contains {group_filter!r} (groups: {groups})"])
    frame = run_validation(cases)
    summary = summarize(frame)
    if markdown_path is not None:
        markdown_path.write_text(validation_markdown(frame), encoding="utf-8")
    if as_json:
        click.echo(f'{{"summary": {summary.to_json(orient="records")}, '
                   f'"cases": {frame.to_json(orient="records")}}}')
    else:
        rows = frame if show_all else worst_rows(frame)
        click.echo(format_table(["group", "case", "unit", "measured", "predicted", "error_pct"],
                                rows[["group", "case", "unit", "measured", "predicted",
                                      "error_pct"]].values.tolist()))
        click.echo("")
        cols = ["group", "n_cases", "mape_pct", "max_abs_error_pct", "mape_limit_pct",
                "max_limit_pct", "passes"]
        click.echo(format_table(cols, summary[cols].values.tolist()))
    if strict and not bool(summary["passes"].all()):
        raise SystemExit(1)
