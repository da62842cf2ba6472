"""The checks :func:`hwsim.workload.lower.lower` runs on its arguments before lowering:
shapes, names, the precision (and whether a training step is quantization-aware), the
model's phases and the parallelism plan. Every problem is a :class:`ConfigError` naming
the argument."""

from __future__ import annotations

import math
from typing import Any

from hwsim.dtypes import normalize_dtype
from hwsim.errors import ConfigError
from hwsim.workload.encdec import check_encdec
from hwsim.workload.plan import PHASES, Plan
from hwsim.workload.plans import plan_problems
from hwsim.workload.precision import Precision, resolve_precision
from hwsim.workload.qat import check_training_precision
from hwsim.workload.sparsity import sparsity_problem
from hwsim.workload.spec import ModelSpec

#: Largest accepted value of each shape argument: far beyond any real model or batch
#: (the longest contexts are ~1e7 tokens, the deepest models ~1e3 layers), small enough
#: that the arrays and loops an engine sizes by them stay finite.
SHAPE_LIMITS = {"batch": 10**7, "prompt_len": 10**8, "context_len": 10**8, "new_tokens": 10**7,
                "seq_len": 10**8, "n_layers": 10**5, "attention_window": 10**8}


def check_positive(source: str, **values: int) -> None:
    """Each of ``values`` a positive integer within :data:`SHAPE_LIMITS`, else ConfigError."""
    bad = [f"{source}: {key}: must be a positive integer, got {val!r}"
           for key, val in values.items()
           if not isinstance(val, int) or isinstance(val, bool) or val <= 0]
    bad += [f"{source}: {key}: must be at most {SHAPE_LIMITS[key]:.0e}, got {val}"
            for key, val in values.items()
            if isinstance(val, int) and not isinstance(val, bool) and val > SHAPE_LIMITS.get(key, val)]
    if bad:
        raise ConfigError(bad)


def _check_names(source: str, phase: str, attention_impl: str, plan: Plan | None, lm_head: bool,
                 sparsity: Any, moe_capacity_factor: float) -> None:
    if phase not in PHASES:
        raise ConfigError([f"{source}: phase: unknown phase {phase!r}; expected one of {', '.join(PHASES)}"])
    if attention_impl not in ("flash", "naive"):
        raise ConfigError([f"{source}: attention_impl: expected 'flash' or 'naive', got {attention_impl!r}"])
    if plan is not None and not isinstance(plan, Plan):
        raise ConfigError([f"{source}: plan: expected a Plan (hwsim.Plan(tp=...)), got {plan!r}"])
    if not isinstance(lm_head, bool):
        raise ConfigError([f"{source}: lm_head: expected true or false, got {lm_head!r}"])
    problem = sparsity_problem(sparsity)
    if problem:
        raise ConfigError([f"{source}: sparsity: {problem}"])
    factor = moe_capacity_factor
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not (
            math.isfinite(factor) and factor >= 1):
        raise ConfigError([f"{source}: moe_capacity_factor: must be a finite number of at least 1, "
                           f"got {factor!r}"])


def checked_inputs(spec: ModelSpec, phase: str, plan: Plan | None, *, batch: int, prompt_len: int,
                   context_len: int, seq_len: int, n_layers: int | None, dtype: str, attention_impl: str,
                   sparsity: Any, lm_head: bool, moe_capacity_factor: float,
                   precision: str | dict[str, Any] | Precision | None, weight_dtype: str | None,
                   kv_dtype: str | None) -> tuple[ModelSpec, Precision, bool]:
    """(the spec with ``n_layers`` applied, the resolved precision, whether the step is
    quantization-aware training), once every argument is known to be valid.

    Raises
    ------
    ConfigError
        Naming the first argument found invalid, or a combination not modelled.
    """
    source = f"workload {spec.name or '<model>'}"
    _check_names(source, phase, attention_impl, plan, lm_head, sparsity, moe_capacity_factor)
    try:
        dtype = normalize_dtype(dtype)
    except ValueError as exc:
        raise ConfigError([f"{source}: dtype: {exc}"]) from None
    prec = resolve_precision(source, precision, dtype, weight_dtype, kv_dtype)
    qat = check_training_precision(source, prec, phase)
    check_positive(source, batch=batch)
    if n_layers is not None:
        check_positive(source, n_layers=n_layers)
        spec = spec.with_layers(n_layers)
    if spec.is_ssm and phase == "train":
        raise ConfigError([f"{source}: phase: training of state-space (Mamba) layers is not modelled yet; "
                           "prefill, decode and request are"])
    if spec.is_encoder_decoder:
        check_encdec(spec, phase, plan, source)
        if not prec.is_uniform:
            raise ConfigError([f"{source}: precision: per-tensor precisions are not modelled for "
                               "encoder-decoder models; give one dtype"])
    if spec.encoder_only and phase in ("decode", "request"):
        raise ConfigError([f"{source}: phase: encoder-only model has no {phase} phase"])
    if plan is not None:
        shape = {"prompt_len": prompt_len, "context_len": context_len, "seq_len": seq_len}
        problems = plan_problems(spec, phase, plan, batch=batch, **shape)
        if problems:
            raise ConfigError([f"{source}: plan: {p} (plan {plan.label()})" for p in problems])
    return spec, prec, qat
