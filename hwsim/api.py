"""The public entry points: load a workload, simulate it on an architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hwsim.arch.load import load_arch
from hwsim.arch.model import Chip
from hwsim.cost import OpCost, cost_op
from hwsim.engine.power import apply_power_limit
from hwsim.engine.schedule import run_schedule
from hwsim.mapping.fit import check_fit
from hwsim.result import Result
from hwsim.workload.graph import Workload
from hwsim.workload.lower import lower
from hwsim.workload.ops import Op
from hwsim.workload.spec import load_model_spec


def load_workload(name_or_path: str | Path, phase: str = "decode", **overrides: Any) -> Workload:
    """Load a model (shipped name, HF ``config.json`` or YAML) and lower it for ``phase``.

    Keyword overrides: ``batch``, ``prompt_len``, ``context_len``, ``new_tokens``,
    ``seq_len``, ``n_layers``, ``dtype``, ``attention_impl``, ``sparsity``, ``lm_head``
    (see :func:`hwsim.workload.lower`).
    """
    return lower(load_model_spec(name_or_path), phase, **overrides)


class CostCache:
    """Memoised op costs for one chip; share it across simulations of the same chip."""

    def __init__(self, chip: Chip) -> None:
        self.chip = chip
        self._costs: dict[Op, OpCost] = {}

    def __call__(self, op: Op) -> OpCost:
        cost = self._costs.get(op)
        if cost is None:
            cost = self._costs[op] = cost_op(op, self.chip)
        return cost

    def __len__(self) -> int:
        return len(self._costs)


def simulate(
    workload: Workload, arch: Chip | str | Path, *, fold: bool = True, cache: CostCache | None = None
) -> Result:
    """Simulate ``workload`` on ``arch`` (a :class:`Chip`, preset name or YAML path).

    Raises
    ------
    ConfigError
        If the architecture cannot be loaded.
    MappingError
        If the workload does not fit the chip's memory or uses an unsupported dtype.
    """
    chip = arch if isinstance(arch, Chip) else load_arch(arch)
    check_fit(workload, chip)
    if cache is None or cache.chip is not chip:
        cache = CostCache(chip)
    schedule = apply_power_limit(run_schedule(workload, chip, cache, fold=fold), chip)
    levels = chip.level_names
    flops = 0.0
    level_bytes = dict.fromkeys(levels, 0.0)
    level_j = dict.fromkeys(levels, 0.0)
    compute_j = 0.0
    for rec in schedule.records:
        mult = schedule.multiplicity(rec)
        flops += mult * rec.cost.flops
        compute_j += mult * rec.cost.compute_energy_j
        for t, e in zip(rec.cost.traffic, rec.cost.level_energy_j, strict=True):
            level_bytes[t.level] += mult * t.bytes
            level_j[t.level] += mult * e
    latency = schedule.latency_s
    breakdown = {"compute_j": compute_j, **{f"{k}_j": v for k, v in level_j.items()},
                 "idle_j": chip.idle_power_w * latency}
    ttft = tpot = None
    tokens = sum(p.tokens for p in workload.passes)
    if workload.phase == "request":
        ttft = schedule.pass_end_s[0]
        n_steps = len(workload.passes) - 1
        tpot = (schedule.pass_end_s[-1] - ttft) / n_steps
        tokens = sum(p.tokens for p in workload.passes[1:])
    dtype = str(workload.params.get("dtype", "bf16"))
    return Result(
        arch=chip.name, workload=workload.name, phase=workload.phase, latency_s=latency,
        energy_j=sum(breakdown.values()), energy_breakdown_j=breakdown,
        bytes_by_level={f"{k}_bytes": v for k, v in level_bytes.items()}, flops=flops,
        tokens=tokens, peak_flops_per_s=chip.peak_flops_per_s(dtype), params=dict(workload.params),
        ttft_s=ttft, tpot_s=tpot, schedule=schedule, level_names=levels,
    )
