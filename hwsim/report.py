"""Plain-text tables for the command line: results, per-op breakdowns, comparisons.

Every function returns a string; only :mod:`hwsim.cli` prints. Column and metric names
carry their unit (``latency_ms``, ``energy_j``, ``hbm_gb``), by the convention of
``docs/conventions.md``: memory sizes (what a level holds) in binary GiB, data moved and
its rate in decimal GB and GB/s, utilisation as a fraction (0 to 1), percentages only
in names ending ``_pct``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from hwsim.arch.model import Chip
from hwsim.result import Result
from hwsim.workload.spec import ModelSpec

GB = 1e9
MB = 1e6
GIB = 2.0**30
TERA = 1e12
GIGA = 1e9
MISSING = "-"


def fmt(value: Any) -> str:
    """Format one cell: numbers to about four significant digits, without thousands
    separators; ``None`` as ``-``; anything else with ``str``.

    Examples
    --------
    >>> [fmt(x) for x in (0, 8.8723, 901.68, 2.5e-5, 2.2e10, 32, None, "hbm")]
    ['0', '8.872', '901.7', '2.500e-05', '2.200e+10', '32', '-', 'hbm']
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        mag = abs(value)
        if mag == 0:
            return "0"
        if mag >= 1e6 or mag < 1e-3:
            return f"{value:.3e}"
        if mag >= 100:
            return f"{value:.1f}"
        return f"{value:#.4g}"
    return str(value)


def _is_numeric(cells: Sequence[Any]) -> bool:
    values = [c for c in cells if c is not None and c != MISSING]
    return bool(values) and all(isinstance(c, int | float) and not isinstance(c, bool) for c in values)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Align ``rows`` under ``columns``: numbers right-aligned, text left-aligned.

    The last column is not padded, so a long free-text column (a note, a description)
    does not leave trailing blanks.
    """
    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max([len(col)] + [len(r[i]) for r in cells]) for i, col in enumerate(columns)]
    numeric = [_is_numeric([row[i] for row in rows]) for i in range(len(columns))]

    def line(values: Sequence[str]) -> str:
        parts = []
        for i, text in enumerate(values):
            last = i == len(values) - 1
            if numeric[i]:
                parts.append(text.rjust(widths[i]))
            else:
                parts.append(text if last else text.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(columns)), *(line(r) for r in cells)])


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _level_metrics(result: Result, scale: float, unit: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for key, value in result.bytes_by_level.items():
        out.append((f"{key.removesuffix('_bytes')}_{unit}", value / scale))
    for key, value in result.achieved_bytes_per_s.items():
        out.append((f"{key.removesuffix('_bytes_per_s')}_gb_per_s", value / GB))
    return out


def _energy_metrics(result: Result) -> list[tuple[str, Any]]:
    return [(f"energy_{k}", v) for k, v in result.energy_breakdown_j.items()]


def summary_metrics(result: Result) -> list[tuple[str, Any]]:
    """The run's totals as ``(metric_with_unit, value)`` pairs, in display order."""
    rows: list[tuple[str, Any]] = [("latency_ms", result.latency_s * 1e3)]
    if result.ttft_s is not None and result.tpot_s is not None:
        rows += [("ttft_ms", result.ttft_s * 1e3), ("tpot_ms", result.tpot_s * 1e3)]
    rows += [
        ("tokens", result.tokens),
        ("tokens_per_s", result.tokens_per_s),
        ("energy_j", result.energy_j),
        ("energy_per_token_j", result.energy_per_token_j),
        *_energy_metrics(result),
        *_level_metrics(result, GB, "gb"),
        ("gflop", result.flops / GIGA),
        ("achieved_tflops_per_s", result.achieved_flops_per_s / TERA),
        ("peak_tflops_per_s", result.peak_flops_per_s / TERA),
        ("compute_utilization", result.compute_utilization),
        ("bound", result.bound),
    ]
    return rows


def format_summary(result: Result) -> str:
    """A title line and a two-column ``metric``/``value`` table of the totals."""
    title = f"{result.workload} {result.phase} on {result.arch} ({_params_text(result.params)})"
    return title + "\n" + format_table(["metric", "value"], summary_metrics(result))


def op_breakdown(result: Result) -> pd.DataFrame:
    """Op instances aggregated by op name, slowest first.

    Columns: ``op``, ``kind``, ``count``, ``latency_ms`` (summed), ``share_pct`` (of the
    summed op time), ``gflop``, ``<level>_gb``, ``energy_j`` (dynamic), ``bound`` (the
    bound that accounts for most of that op's time).
    """
    frame = result.to_frame()
    levels = [f"{name}_bytes" for name in result.level_names]
    if frame.empty:
        cols = ["op", "kind", "count", "latency_ms", "share_pct", "gflop",
                *(f"{lv}_gb" for lv in result.level_names), "energy_j", "bound"]
        return pd.DataFrame(columns=cols)
    grouped = frame.groupby("op", sort=False)
    agg = grouped.agg(
        kind=("kind", "first"), count=("op", "size"), latency_s=("latency_s", "sum"),
        flops=("flops", "sum"), energy_j=("energy_j", "sum"),
        **{lv: (lv, "sum") for lv in levels},
    )
    by_bound = frame.groupby(["op", "bound"], sort=False)["latency_s"].sum().reset_index()
    dominant = by_bound.sort_values("latency_s", ascending=False, kind="stable").drop_duplicates("op")
    agg["bound"] = dominant.set_index("op")["bound"].reindex(agg.index)
    total = float(agg["latency_s"].sum()) or 1.0
    out = pd.DataFrame({
        "op": agg.index, "kind": agg["kind"].to_numpy(), "count": agg["count"].to_numpy(),
        "latency_ms": agg["latency_s"].to_numpy() * 1e3,
        "share_pct": agg["latency_s"].to_numpy() / total * 100,
        "gflop": agg["flops"].to_numpy() / GIGA,
    })
    for lv in levels:
        out[f"{lv.removesuffix('_bytes')}_gb"] = agg[lv].to_numpy() / GB
    out["energy_j"] = agg["energy_j"].to_numpy()
    out["bound"] = agg["bound"].to_numpy()
    return out.sort_values("latency_ms", ascending=False, kind="stable").reset_index(drop=True)


def format_frame(frame: pd.DataFrame) -> str:
    """A data frame as an aligned table (cells formatted with :func:`fmt`)."""
    rows = [[_py(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return format_table([str(c) for c in frame.columns], rows)


def _py(value: Any) -> Any:
    """numpy scalars to Python ones so :func:`fmt` picks the right format."""
    return value.item() if hasattr(value, "item") else value


def format_ops(result: Result) -> str:
    """The per-op table (see :func:`op_breakdown`)."""
    return format_frame(op_breakdown(result))


def format_single_op(result: Result) -> str:
    """The one-op result of :mod:`hwsim.ops`: latency, FLOP, bytes, bound, mapping."""
    frame = result.to_frame()
    title = f"{result.workload} on {result.arch} ({_params_text(result.params)})"
    if frame.empty:
        return title + "\n" + format_table(["metric", "value"], summary_metrics(result))
    row = frame.iloc[0]
    metrics: list[tuple[str, Any]] = [
        ("op", row["op"]),
        ("kind", row["kind"]),
        ("latency_us", result.latency_s * 1e6),
        ("gflop", result.flops / GIGA),
        ("achieved_tflops_per_s", result.achieved_flops_per_s / TERA),
        ("peak_tflops_per_s", result.peak_flops_per_s / TERA),
        ("compute_utilization", result.compute_utilization),
        ("compute_cycles", _py(row["compute_cycles"])),
        *_level_metrics(result, MB, "mb"),
        ("energy_j", result.energy_j),
        *_energy_metrics(result),
        ("bound", row["bound"]),
        ("mapping", row["detail"]),
    ]
    return title + "\n" + format_table(["metric", "value"], metrics)


def compare_columns(request: bool) -> list[str]:
    """Columns of the comparison table (with ``ttft_ms``/``tpot_ms`` for requests)."""
    cols = ["arch", "latency_ms", "tokens_per_s", "energy_per_token_j", "bound"]
    if request:
        cols[2:2] = ["ttft_ms", "tpot_ms"]
    return cols


def compare_row(result: Result, request: bool) -> list[Any]:
    """One comparison row for a successful run."""
    row: list[Any] = [result.arch, result.latency_s * 1e3, result.tokens_per_s,
                      result.energy_per_token_j, result.bound]
    if request:
        ttft = None if result.ttft_s is None else result.ttft_s * 1e3
        tpot = None if result.tpot_s is None else result.tpot_s * 1e3
        row[2:2] = [ttft, tpot]
    return row


def format_compare(rows: Sequence[tuple[str, Result | str]], request: bool) -> str:
    """``rows`` are ``(arch, result)`` or ``(arch, reason it could not run)``; results
    of multi-chip systems add the ``chips`` and ``plan`` columns."""
    columns = compare_columns(request)
    plans = any(not isinstance(r, str) and "plan" in r.params for _, r in rows)
    if plans:
        columns[1:1] = ["chips", "plan"]
    failed = any(isinstance(r, str) for _, r in rows)
    if failed:
        columns = [*columns, "note"]
    table = []
    for arch, outcome in rows:
        if isinstance(outcome, str):
            table.append([arch, *([MISSING] * (len(columns) - 2)), outcome])
            continue
        row = compare_row(outcome, request)
        if plans:
            row[1:1] = [outcome.params.get("n_chips", 1), outcome.params.get("plan", "")]
        table.append(row + ([""] if failed else []))
    return format_table(columns, table)


def arch_rows(chips: Sequence[tuple[str, Chip | str]]) -> list[list[Any]]:
    """``name``, ``bf16_peak_tflops_per_s``, ``home_memory_gib``, ``description``."""
    rows: list[list[Any]] = []
    for name, chip in chips:
        if isinstance(chip, str):
            rows.append([name, None, None, f"invalid: {chip}"])
            continue
        rows.append([name, chip.peak_flops_per_s("bf16") / TERA,
                     chip.level_capacity_bytes(chip.home_level) / GIB, chip.description])
    return rows


ARCH_COLUMNS = ["name", "bf16_peak_tflops_per_s", "home_memory_gib", "description"]
MODEL_COLUMNS = ["name", "params_b", "layers", "description"]


def model_rows(specs: Sequence[tuple[str, ModelSpec | str]]) -> list[list[Any]]:
    """``name``, ``params_b`` (billions), ``layers``, a short description."""
    rows: list[list[Any]] = []
    for name, spec in specs:
        if isinstance(spec, str):
            rows.append([name, None, None, f"invalid: {spec}"])
            continue
        kind = [spec.model_type or "transformer"]
        if spec.encoder_only:
            kind.append("encoder")
        if spec.is_moe:
            kind.append(f"MoE {spec.num_local_experts}x top-{spec.num_experts_per_tok}")
        if spec.n_kv_heads != spec.num_attention_heads:
            kind.append(f"GQA {spec.num_attention_heads}/{spec.n_kv_heads} heads")
        kind.append(f"hidden {spec.hidden_size}")
        rows.append([name, spec.param_count() / 1e9, spec.num_hidden_layers, ", ".join(kind)])
    return rows


SERVE_LATENCIES = ("ttft", "tpot", "itl", "e2e", "queue")
_SERVE_TOTALS = (
    ("n_requests", "n_requests", 1), ("n_completed", "n_completed", 1), ("duration_s", "duration_s", 1),
    ("requests_per_s", "requests_per_s", 1), ("output_tokens_per_s", "output_tokens_per_s", 1),
    ("total_tokens_per_s", "total_tokens_per_s", 1),
    ("output_tokens_per_s_per_chip", "output_tokens_per_s_per_chip", 1),
    ("goodput_requests_per_s", "goodput_requests_per_s", 1),
    ("goodput_output_tokens_per_s", "goodput_output_tokens_per_s", 1),
    ("slo_attainment_pct", "slo_attainment", 100), ("n_preemptions", "n_preemptions", 1),
    ("batch_size_mean", "batch_size_mean", 1), ("queue_len_mean", "queue_len_mean", 1),
    ("kv_usage_mean_pct", "kv_usage_mean", 100), ("kv_usage_max_pct", "kv_usage_max", 100),
    ("busy_pct", "busy_fraction", 100), ("energy_j", "energy_j", 1),
    ("energy_per_output_token_j", "energy_per_output_token_j", 1), ("average_power_w", "average_power_w", 1),
    ("usd_per_million_output_tokens", "usd_per_million_output_tokens", 1),
)


def serve_latency_rows(metrics: dict[str, Any]) -> list[list[Any]]:
    """``[latency, mean_ms, p50_ms, p90_ms, p99_ms]`` per latency a serving run reports."""
    return [[name, *(_ms(metrics.get(f"{name}_{stat}_s")) for stat in ("mean", "p50", "p90", "p99"))]
            for name in SERVE_LATENCIES]


def _ms(value: Any) -> float | None:
    return None if value is None else float(value) * 1e3


def serve_total_rows(summary: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(metric_with_unit, value)`` of a serving run's totals (keys it lacks are left out),
    the SLO test, and each pool's KV cache."""
    rows: list[tuple[str, Any]] = [(label, float(summary[key]) * scale if scale != 1 else _py(summary[key]))
                                   for label, key, scale in _SERVE_TOTALS if key in summary]
    rows = [(k, int(v) if k.startswith("n_") else v) for k, v in rows]
    if "slo_met" in summary:
        rows.append(("slo_met", bool(summary["slo_met"])))
    for pool in summary.get("config", {}).get("pools", []):
        role = "" if pool["role"] == "both" else f"{pool['role']}_"
        rows.append((f"{role}kv_blocks_per_replica", int(pool["kv_blocks"])))
        rows.append((f"{role}kv_gb_per_chip", pool["kv_bytes_per_chip"] / GB))
    return rows


def format_serve_summary(result: Any) -> str:
    """A serving run (:class:`~hwsim.engine.serve.result.ServeResult`) as two tables:
    latency statistics in ms, then the totals."""
    summary = result.summary()
    latencies = format_table(["latency", "mean_ms", "p50_ms", "p90_ms", "p99_ms"],
                             serve_latency_rows(summary))
    return latencies + "\n\n" + format_table(["metric", "value"], serve_total_rows(summary))
