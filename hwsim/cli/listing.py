"""``hwsim list archs|systems|models|recsys|precisions|datacenters|nodes``: the shipped presets,
precision schemes and datacenter presets."""

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
from hwsim.datacenter import list_datacenters, list_nodes, load_datacenter, load_node
from hwsim.dtypes import dtype_bytes
from hwsim.errors import HwsimError
from hwsim.workload.dlrm import list_dlrm_models, load_dlrm_spec, resolve_dlrm
from hwsim.workload.precision import SCHEMES, is_weight_only, resolve_precision, weight_bits_per_param
from hwsim.workload.spec import ModelSpec, list_models, load_model_spec


@main.command("list")
@click.argument("what", type=click.Choice(["archs", "systems", "models", "recsys", "precisions",
                                           "datacenters", "nodes"]))
@json_option
def list_cmd(what: str, as_json: bool) -> None:
    """List the shipped architecture, system or model presets (``recsys``: the recommendation
    models, docs/embeddings.md), the precision schemes, or the datacenter facilities and
    nodes of ``hwsim compare --serve`` (docs/datacenter.md)."""
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
    elif what == "recsys":
        columns, rows = _recsys_rows()
    elif what in ("datacenters", "nodes"):
        columns, rows = _datacenter_rows(what)
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


def _datacenter_rows(what: str) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    if what == "datacenters":
        facilities = [load_datacenter(n) for n in list_datacenters()]
        return (("name", "pue", "usd_per_kwh", "rack_power_w", "rack_units", "lifetime_years", "utilization",
                 "description"),
                [(d.name, d.pue, d.usd_per_kwh, d.rack_power_w, d.rack_units, d.lifetime_years, d.utilization,
                  d.description) for d in facilities])
    nodes = [load_node(c) for c in list_nodes()]
    return (("chip", "name", "n_chips", "rack_units", "price_usd", "usd_per_chip_hour", "description"),
            [(n.chip, n.name, n.n_chips, n.rack_units, n.price_usd, n.usd_per_chip_hour, n.description)
             for n in nodes])


def _recsys_rows() -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """One row per shipped ``kind: dlrm`` model: its tables, their rows and stored size."""
    rows: list[tuple[Any, ...]] = []
    for name in list_dlrm_models():
        path = resolve_dlrm(name)
        try:
            spec = load_dlrm_spec(path) if path is not None else None
        except HwsimError as exc:
            rows.append((name, error_lines(exc)[0], "", "", "", "", ""))
            continue
        if spec is None:
            continue
        tables = spec.expanded_tables()
        gib = sum(t.rows * t.dim * dtype_bytes(t.dtype or spec.embedding_dtype) for t in tables) / 2**30
        rows.append((name, len(tables), spec.embedding_row_count(), f"{gib:.1f}", spec.interaction,
                     spec.dense_param_count(), spec.embedding_dtype))
    return (("name", "n_tables", "embedding_rows", "embedding_gib", "interaction", "dense_params",
             "embedding_dtype"), rows)


def _try(loader: Callable[[str], Any], name: str) -> Any:
    """The loaded preset, or the first line of why it failed (listed, not fatal)."""
    try:
        return loader(name)
    except HwsimError as exc:
        return error_lines(exc)[0]
