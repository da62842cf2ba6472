"""Enumerating the parallelism plans of a system size, each legal or with its reason.

The search space is every ``(tp, pp, dp, ep, cp, microbatches, recompute, zero)`` with
``tp * pp * dp * cp`` equal to the system size: tp and pp range over the divisors of the
chips left to them, so a 256-chip system yields about a thousand plans and ranking them
(by simulation, elsewhere) stays cheap. Structural rules follow Megatron-LM: tp divides
the attention heads and the FFN width, and tp and the KV heads divide one another (KV
heads are replicated when tp exceeds them); pp is at most the layers (uneven stages: the
first ``layers % pp`` stages take one layer more, and the busiest is simulated); dp
divides the batch and the micro-batches divide each replica's share;
ep divides the experts of an MoE model. Options that change nothing are skipped rather
than listed: inference with recompute, ZeRO, or micro-batches without a pipeline;
ZeRO with ``dp = 1``; a schedule other than the first without a pipeline.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from hwsim.errors import ConfigError
from hwsim.workload.memory import ChipMemory, memory_per_chip, workspace_allowance_bytes
from hwsim.workload.memory_fit import fit_problems, host_fit_problems
from hwsim.workload.plan import PHASES, OffloadTarget, Plan
from hwsim.workload.spec import ModelSpec

SHAPE_KEYS = ("prompt_len", "context_len", "new_tokens", "seq_len", "dtype", "attention_impl",
               "workspace_bytes")
_SHAPE_DEFAULTS = {"prompt_len": 512, "context_len": 2048, "new_tokens": 128, "seq_len": 2048}

PlanChoice = tuple[Plan, str | None]


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def _check_shape(shape: dict[str, Any]) -> None:
    unknown = sorted(set(shape) - set(SHAPE_KEYS))
    if unknown:
        raise TypeError(f"unknown shape arguments {', '.join(unknown)}; "
                        f"expected some of {', '.join(SHAPE_KEYS)}")


def _cp_tokens(phase: str, shape: dict[str, Any]) -> tuple[int, str]:
    """The tokens context parallelism splits, and their name."""
    key = {"train": "seq_len", "decode": "context_len"}.get(phase, "prompt_len")
    return int(shape.get(key, _SHAPE_DEFAULTS[key])), key


def _ssm_problems(spec: ModelSpec, tp: int) -> list[str]:
    """tp splits a state-space mixer's channels (Mamba) or heads (Mamba-2)."""
    if spec.ssm_kind == "mamba" and spec.ssm_d_inner and spec.ssm_d_inner % tp:
        return [f"tp={tp} does not divide the {spec.ssm_d_inner} Mamba channels"]
    if spec.ssm_kind == "mamba2" and spec.ssm_n_heads % tp:
        return [f"tp={tp} does not divide the {spec.ssm_n_heads} Mamba-2 heads"]
    return []


def plan_problems(spec: ModelSpec, phase: str, plan: Plan, *, batch: int, **shape: Any) -> list[str]:
    """Why ``plan`` cannot split ``spec`` for ``phase`` (empty if it can); no memory check."""
    _check_shape(shape)
    out = []
    heads, kv, tp = spec.num_attention_heads, spec.n_kv_heads, plan.tp
    out += _ssm_problems(spec, tp)
    if spec.is_ssm and not spec.ssm_layers:
        pass  # every layer a state-space mixer: no attention heads, no FFN to split
    elif heads % tp:
        out.append(f"tp={tp} does not divide {heads} attention heads")
    elif kv % tp and tp % kv:
        out.append(f"tp={tp} and {kv} KV heads: neither divides the other")
    elif spec.ffn_size % tp:
        out.append(f"tp={tp} does not divide the FFN width {spec.ffn_size}")
    if plan.pp > spec.num_hidden_layers:
        out.append(f"pp={plan.pp} exceeds the {spec.num_hidden_layers} layers (a stage needs at least one)")
    if batch % plan.dp:
        out.append(f"batch {batch} is not divisible by dp={plan.dp}")
    else:
        replica = batch // plan.dp
        if plan.microbatches > replica:
            out.append(f"microbatches={plan.microbatches} exceed the per-replica batch {replica}")
        elif replica % plan.microbatches:
            out.append(f"microbatches={plan.microbatches} do not divide the per-replica batch {replica}")
    if plan.ep > 1 and not spec.is_moe:
        out.append(f"ep={plan.ep} needs an MoE model")
    elif spec.is_moe and spec.num_local_experts % plan.ep:
        out.append(f"ep={plan.ep} does not divide {spec.num_local_experts} experts")
    tokens, key = _cp_tokens(phase, shape)
    if tokens % plan.cp:
        out.append(f"cp={plan.cp} does not divide {key} {tokens}")
    if phase == "request" and plan.pp > 1:
        out.append(f"pp={plan.pp}: pipelined requests are not modelled; use prefill and decode")
    return out


def _pointless(phase: str, pp: int, dp: int, mb: int, recompute: bool, zero: int,
               first_schedule: bool) -> bool:
    """Combinations that only duplicate another plan (skipped, not listed)."""
    if phase != "train":
        return recompute or zero > 0 or (mb > 1 and pp == 1) or not first_schedule
    return (zero > 0 and dp == 1) or (pp == 1 and not first_schedule)


def enumerate_plans(
    spec: ModelSpec,
    phase: str,
    n_chips: int,
    *,
    batch: int,
    microbatch_options: Sequence[int] = (1, 2, 4, 8, 16, 32),
    recompute_options: Sequence[bool] = (False, True),
    zero_options: Sequence[int] = (0, 1),
    sequence_parallel: bool | None = None,
    ep_options: Sequence[int] | None = None,
    cp_options: Sequence[int] = (1,),
    schedule_options: Sequence[str] = ("1f1b",),
    offload_options: Sequence[tuple[OffloadTarget, ...]] = ((),),
    **shape: Any,
) -> list[PlanChoice]:
    """Every plan filling ``n_chips``, paired with ``None`` if legal or the reason it is not.

    Parameters
    ----------
    spec : ModelSpec
    phase : {"prefill", "decode", "request", "train"}
    n_chips : int
        System size; every plan's ``n_chips`` equals it.
    batch : int
        Global batch (sequences).
    microbatch_options, recompute_options, zero_options : sequences
        Values tried for ``Plan.microbatches``, ``recompute`` and ``zero_stage``.
    sequence_parallel : bool, optional
        Force sequence parallelism on or off for ``tp > 1``; by default on for training
        (Megatron's recommendation with tp) and off for inference.
    ep_options : sequence of int, optional
        Expert-parallel sizes; by default every divisor of dp for an MoE model, 1 otherwise.
        Sizes that do not divide dp are skipped (a :class:`Plan` cannot express them).
    cp_options, schedule_options, offload_options : sequences
        Context-parallel sizes, pipeline schedules and offload choices tried.
    **shape
        ``prompt_len``, ``context_len``, ``new_tokens``, ``seq_len`` (and ``dtype``,
        ``attention_impl``, ``workspace_bytes``, used by :func:`memory_rejections`).

    Returns
    -------
    list of (Plan, str or None)
        Sorted by (tp, pp, dp, ep, cp, microbatches, recompute, zero, schedule, offload);
        several reasons are joined by ``"; "``.
    """
    _check_shape(shape)
    if phase not in PHASES:
        raise ConfigError([f"plans: phase: unknown phase {phase!r}; expected one of {', '.join(PHASES)}"])
    if spec.encoder_only and phase in ("decode", "request"):
        raise ConfigError([f"plans: phase: encoder-only model has no {phase} phase"])
    if n_chips < 1 or batch < 1:
        raise ConfigError([f"plans: n_chips and batch must be positive, got {n_chips} and {batch}"])
    found: dict[Plan, str | None] = {}
    for cp in (c for c in cp_options if n_chips % c == 0):
        for tp in _divisors(n_chips // cp):
            for pp in _divisors(n_chips // (cp * tp)):
                dp = n_chips // (cp * tp * pp)
                eps = ep_options if ep_options is not None else (_divisors(dp) if spec.is_moe else (1,))
                sp = (phase == "train") if sequence_parallel is None else sequence_parallel
                for ep, mb, rc, zero, schedule, offload in itertools.product(
                    [e for e in eps if dp % e == 0], microbatch_options, recompute_options, zero_options,
                    schedule_options, offload_options,
                ):
                    if _pointless(phase, pp, dp, mb, rc, zero, schedule == schedule_options[0]):
                        continue
                    plan = Plan(tp=tp, pp=pp, dp=dp, ep=ep, cp=cp, sequence_parallel=sp and tp > 1,
                                microbatches=mb, recompute=rc, zero_stage=zero,
                                pipeline_schedule=schedule, offload=offload)
                    problems = plan_problems(spec, phase, plan, batch=batch, **shape)
                    found[plan] = "; ".join(problems) or None
    order = ("tp", "pp", "dp", "ep", "cp", "microbatches", "recompute", "zero_stage",
             "pipeline_schedule", "offload")
    return sorted(found.items(), key=lambda item: tuple(getattr(item[0], k) for k in order))


def memory_rejections(
    plans: Iterable[PlanChoice],
    spec: ModelSpec,
    phase: str,
    capacity_bytes: float,
    level: str,
    *,
    batch: int,
    host_capacity_bytes: float | None = None,
    **shape: Any,
) -> list[PlanChoice]:
    """``plans`` with each structurally legal one that does not fit given its reason.

    ``capacity_bytes`` is the on-chip memory level ``level`` (e.g. ``"hbm"``);
    ``host_capacity_bytes``, if given, the host memory each chip may offload to.
    """
    _check_shape(shape)
    shape.setdefault("workspace_bytes", workspace_allowance_bytes(capacity_bytes))
    out: list[PlanChoice] = []
    for plan, reason in plans:
        if reason is None:
            mem = memory_per_chip(spec, phase, plan, batch=batch, **shape)
            reason = memory_reason(mem, plan, capacity_bytes, level, host_capacity_bytes)
        out.append((plan, reason))
    return out


def memory_reason(mem: ChipMemory, plan: Plan, capacity_bytes: float, level: str,
                  host_capacity_bytes: float | None = None) -> str | None:
    """Why ``mem`` does not fit the chip's ``level`` (or the host memory), or None."""
    problems = fit_problems(mem, capacity_bytes, level, plan)
    if host_capacity_bytes is not None:
        problems += host_fit_problems(mem, host_capacity_bytes, plan)
    return "; ".join(problems) or None
