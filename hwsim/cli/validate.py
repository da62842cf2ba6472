"""``hwsim validate``: run every shipped validation case and report the agreement.

Accuracy is reported on check rows only (rows no parameter was fitted on); each case's
``role`` (``fit`` or ``check``) is in the table, the JSON and the Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from hwsim.cli.group import main
from hwsim.errors import ConfigError
from hwsim.report import format_table
from hwsim.validation import all_cases, run_validation, summarize
from hwsim.validation.report import CASE_COLUMNS, SUMMARY_COLUMNS, validation_markdown, worst_rows
from hwsim.validation.run import fails

EXIT_THRESHOLD = 1


@main.command("validate")
@click.option("--group", "group_filter", default=None, help="Only groups containing this text.")
@click.option("--all", "show_all", is_flag=True, help="List every case, not only the worst check rows.")
@click.option("--json", "as_json", is_flag=True,
              help="Print every case (with its role) and the summary as JSON.")
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the report as Markdown (docs/validation.md).")
@click.option("--strict", is_flag=True, help="Exit 1 if any group's check rows miss a threshold.")
def validate(group_filter: str | None, show_all: bool, as_json: bool, markdown_path: Path | None,
             strict: bool) -> None:
    """Compare hwsim with measured and published figures: case, role, measured,
    predicted, error. MAPE and thresholds are over check rows only (fit rows reproduce a
    fitted parameter); a group without a threshold is "recorded", one without a check
    row "fit only"."""
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
        click.echo(json.dumps({"summary": json.loads(summary.to_json(orient="records")),
                               "cases": json.loads(frame.to_json(orient="records"))}, indent=1))
    else:
        rows = frame if show_all else worst_rows(frame)
        click.echo(format_table(CASE_COLUMNS, rows[CASE_COLUMNS].values.tolist()))
        click.echo("")
        cols = [c for c in SUMMARY_COLUMNS if c != "worst_case"]
        shown = summary[cols].astype(object).where(summary[cols].notna(), None)  # "-", not nan
        click.echo(format_table(cols, shown.values.tolist()))
    failed = fails(summary)
    if failed:
        click.echo(f"thresholds missed on check rows: {', '.join(failed)}", err=True)
    if strict and failed:
        raise SystemExit(EXIT_THRESHOLD)
