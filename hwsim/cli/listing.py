"""``hwsim list archs|systems|models|precisions``: the shipped presets and precision schemes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from hwsim import report
from hwsim.arch.load import list_archs, load_arch
from hwsim.arch.model import Chip
from hwsim.arch.system import list_systems, load_system
from hwsim.cli.group import error_lines, main
from hwsim.cli.options import json_option
from hwsim.errors import HwsimError
from hwsim.workload.precision import SCHEMES, is_weight_only, resolve_precision, weight_bits_per_param
from hwsim.workload.spec import ModelSpec, list_models, load_model_spec


@main.command("list")
@click.argument("what", type=click.Choice(["archs", "systems", "models", "precisions"]))
@json_option
def list_cmd(what: str, as_json: bool) -> None:
    """List the shipped architecture, system or model presets, or the precision schemes."""
    columns: Any
    rows: Any
    if what == "precisions":
        columns = ("scheme", "weights", "activations", "kv_cache", "group_size", "weight_bits")
        rows = []
        for name in SCHEMES:
            p = resolve_precision("list", name)
            bits = weight_bits_per_param(p.weights, p.activations, p.group_size, p.zero_point)
            rows.append((name, p.weights, p.activations, p.kv_cache,
                         p.group_size if is_weight_only(p.weights, p.activations) else "-", f"{bits:g}"))
    elif what == "systems":
        columns, rows = ("name", "chip", "n_chips", "fabrics"), []
        for name in list_systems():
            system = load_system(name)
            fabrics = " + ".join(f"{f.name} ({f.topology} {'x'.join(map(str, f.dims))})"
                                 for f in system.fabrics)
            rows.append((name, system.chip.name, system.n_chips, fabrics or "none"))
    elif what == "archs":
        chips: list[tuple[str, Chip | str]] = [(n, _try(load_arch, n)) for n in list_archs()]
        columns, rows = report.ARCH_COLUMNS, report.arch_rows(chips)
    else:
        specs: list[tuple[str, ModelSpec | str]] = [(n, _try(load_model_spec, n)) for n in list_models()]
        columns, rows = report.MODEL_COLUMNS, report.model_rows(specs)
    if as_json:
        click.echo(json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2))
    else:
        click.echo(report.format_table(columns, rows))


def _try(loader: Callable[[str], Any], name: str) -> Any:
    """The loaded preset, or the first line of why it failed (listed, not fatal)."""
    try:
        return loader(name)
    except HwsimError as exc:
        return error_lines(exc)[0]
