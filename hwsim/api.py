"""The public entry points: load a workload, simulate it on a chip or a system."""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hwsim.arch.model import Chip
from hwsim.arch.system import System, load_system
from hwsim.caches import CostCache, ServeCache
from hwsim.engine.inference import INFERENCE_PHASES, run_inference
from hwsim.engine.serve.capacity import (
    CapacityResult,
    ReplicaResult,
    check_slo,
    search_capacity,
    search_replicas,
)
from hwsim.engine.serve.deploy import serve_requests
from hwsim.engine.serve.metrics import SLO
from hwsim.engine.serve.options import serve_options
from hwsim.engine.serve.requests import Requests
from hwsim.engine.serve.result import ServeResult, serve_result
from hwsim.engine.step import StepRun, run_step
from hwsim.errors import ConfigError
from hwsim.mapping.fit import check_fit, check_placement, costing_warnings, placement_warnings
from hwsim.mapping.gemm import emulation_dtype
from hwsim.result import Result
from hwsim.workload.dlrm import load_dlrm_spec, resolve_dlrm
from hwsim.workload.dlrm_lower import lower_dlrm
from hwsim.workload.graph import Workload
from hwsim.workload.lower import lower
from hwsim.workload.plan import Plan
from hwsim.workload.precision import Precision, resolve_precision
from hwsim.workload.spec import ModelSpec, load_model_spec


def load_workload(name_or_path: str | Path, phase: str = "decode", **overrides: Any) -> Workload:
    """Load a model (shipped name, HF ``config.json`` or YAML) and lower it for ``phase``.

    Keyword overrides: ``batch``, ``prompt_len``, ``context_len``, ``new_tokens``,
    ``seq_len``, ``n_layers``, ``dtype``, ``attention_impl``, ``sparsity``, ``lm_head``,
    ``plan``, ``precision`` (a scheme such as ``"w4a16"``, ``"fp8-kv"``, ``"nvfp4"`` or a
    mapping of per-tensor dtypes), ``weight_dtype``, ``kv_dtype``, ``attention_window``,
    ``attention_density`` (``docs/precision.md``), and for ``phase="request"``
    ``decoding`` and ``kv_policy`` (a strategy and a KV-cache policy:
    :mod:`hwsim.workload.decoding`, ``docs/decoding.md``); see :func:`hwsim.workload.lower`.
    A recommendation model (``kind: dlrm``, shipped under ``workloads/recsys``) takes
    ``phase="inference"`` or ``"train"`` and ``batch``, ``n_chips``, ``sharding``,
    ``dtype``, ``embedding_dtype`` (:func:`hwsim.workload.dlrm_lower.lower_dlrm`,
    ``docs/embeddings.md``).

    Raises
    ------
    ConfigError
        For an unknown model, an unknown option (with the closest known one) or a bad value.
    """
    dlrm = resolve_dlrm(name_or_path)
    target = lower if dlrm is None else lower_dlrm
    known = [k for k, p in inspect.signature(target).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = [k for k in overrides if k not in known]
    if unknown:
        problems = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append(f"load_workload: {key}: unknown option; {hint}(known: {', '.join(known)})")
        raise ConfigError(problems)
    if dlrm is not None:
        return lower_dlrm(load_dlrm_spec(dlrm), phase, **overrides)
    return lower(load_model_spec(name_or_path), phase, **overrides)


def serve(requests: Requests, arch: Chip | System | str | Path, *,
          model: str | Path | ModelSpec = "llama2-7b", plan: Plan | None = None,
          dtype: str = "bf16", scheduler: str = "vllm", slo: SLO | None = None,
          progress: Callable[[int], None] | None = None,
          precision: str | dict[str, Any] | Precision | None = None, weight_dtype: str | None = None,
          kv_dtype: str | None = None, cache: ServeCache | None = None, **options: Any) -> ServeResult:
    """Serve ``requests`` on ``arch`` with ``model``: requests arrive over time, a scheduler
    batches them iteration by iteration under a paged KV cache, replicas run the batches.

    Parameters
    ----------
    requests : Requests
        ``hwsim.Requests.offline/.poisson/.bursty/.from_csv``.
    arch : Chip, System or str
        Chip or system preset name, YAML path, or object.
    model : str, path or ModelSpec
    plan : Plan, optional
        Each replica's ``tp`` and ``pp``; ``dp`` replicas (default 1) unless
        ``replicas`` is given.
    dtype : str
        Every tensor's dtype, when no ``precision`` is given.
    precision : str, dict or Precision, optional
        Per-tensor-class dtypes, as :func:`load_workload` takes them (``"w4a16"``,
        ``"fp8-kv"``, ``{"scheme": "w4a16", "kv_cache": "fp8"}``): the weights' bytes and
        the KV cache's width set the KV blocks that fit.
    weight_dtype, kv_dtype : str, optional
        Shorthands for the weights' and the KV cache's dtype.
    scheduler : {"vllm", "sarathi", "orca", "static"}
        See :mod:`hwsim.engine.serve.scheduler`.
    slo : SLO, optional
        TTFT/TPOT/E2E limits for goodput.
    progress : callable, optional
        Called with the number of requests that have just completed, as the run goes
        (the CLI's progress bar); it sees nothing else and changes nothing.
    **options
        :class:`~hwsim.engine.serve.options.ServeOptions`: ``max_num_seqs``,
        ``max_num_batched_tokens``, ``block_tokens``, ``memory_fraction``, ``watermark``,
        ``preemption`` ("recompute"/"swap"), ``priority``, ``prefix_caching``, ``replicas``,
        ``router``, ``host_overhead_s``, ``attention_impl``, ``n_layers``, ``pools``
        (disaggregated prefill/decode), ``transfer_bytes_per_s``, ``usd_per_chip_hour``,
        ``decoding`` and ``kv_policy`` (token-generation strategy and KV-cache policy:
        :mod:`hwsim.workload.decoding`; their figures join ``metrics``).

    Returns
    -------
    ServeResult
        ``output_tokens_per_s``, ``requests`` and ``iterations`` frames, ``metrics``,
        ``summary()``, ``to_json()``.
    """
    opts = serve_options(scheduler, options)
    if progress is not None and not callable(progress):
        raise ConfigError([f"serve: progress: expected a callable, got {type(progress).__name__}"])
    if not isinstance(requests, Requests):
        raise ConfigError([f"serve: requests: expected hwsim.Requests, got {type(requests).__name__}"])
    system = load_system(arch)
    spec = model if isinstance(model, ModelSpec) else load_model_spec(model)
    if opts.n_layers is not None:
        spec = spec.model_copy(update={"num_hidden_layers": opts.n_layers})
    if spec.encoder_only:
        raise ConfigError([f"serve: model: {spec.name} is an encoder; it generates no tokens to serve"])
    prec = resolve_precision("serve", precision, dtype, weight_dtype, kv_dtype)
    if prec.qat:
        raise ConfigError(["serve: precision: qat: quantization-aware training applies to phase='train'; "
                           "serving runs inference"])
    costs = ServeCache() if cache is None else cache
    if not isinstance(costs, ServeCache):
        raise ConfigError([f"serve: cache: expected hwsim.ServeCache, got {type(costs).__name__}"])
    run, notes = serve_requests(requests, system, spec, plan, prec, scheduler, opts, costs, progress)
    config = {"options": opts.model_dump(exclude={"pools"}), "plan": (plan or Plan()).label(),
              "precision": prec.label(),
              "pools": [{"role": p.role, "arch": p.system.name, "plan": p.model.plan.label(),
                         "replicas": p.replicas, "kv_blocks": p.kv.n_blocks,
                         "kv_bytes_per_chip": p.kv.kv_bytes, "weights_bytes_per_chip": p.kv.weights_bytes}
                        for p in run.pools]}
    link_pj = system.pool_link.energy_pj_per_bit if system.pool_link is not None else None
    return serve_result(run, requests, scheduler, spec.name, slo, opts.usd_per_chip_hour, config, notes,
                        link_pj)


def find_capacity(arch: Chip | System | str | Path, *, model: str | Path | ModelSpec = "llama2-7b",
                  slo: SLO, n_requests: int = 500, prompt_len: Any = 512, output_len: Any = 128,
                  seed: int = 0, plan: Plan | None = None, dtype: str = "bf16", scheduler: str = "vllm",
                  rel_tol: float = 0.05, max_evals: int = 16, cache: ServeCache | None = None,
                  **options: Any) -> CapacityResult:
    """The highest Poisson arrival rate at which ``arch`` serves ``model`` within ``slo``
    (MLPerf Server's question), by bracketing and bisection below the offline throughput
    bound (:mod:`hwsim.engine.serve.capacity`).

    Parameters
    ----------
    arch, model, plan, dtype, scheduler, **options
        As :func:`serve`.
    slo : SLO
        At least one limit; its ``percentile`` (99 by default) of each limited metric must
        be within the limit.
    n_requests : int
        Requests per evaluated run (more: less noise from the run's start and drain).
    prompt_len, output_len : int, sequence or distribution
        As :meth:`Requests.poisson`; every rate sees the same lengths.
    seed : int
        One seed for every rate: the arrivals at rate ``r`` are those at rate 1 over ``r``.
    rel_tol : float
        Stop when the lowest missed and highest met rates are within this fraction.
    max_evals : int
        Most serving runs, the offline one included.

    Returns
    -------
    CapacityResult
        ``rate_per_s``, ``requests_per_s_per_chip``, every evaluated point
        (``points``, ``to_frame()``) and the run at the capacity (``best``).
    """
    check_slo(slo)
    system = load_system(arch)
    costs = ServeCache() if cache is None else cache
    offline = Requests.offline(n_requests, prompt_len, output_len, seed)
    n_chips: list[int] = []

    def serve_at(rate: float) -> ServeResult:
        reqs = (offline if math.isinf(rate)
                else Requests.poisson(n_requests, rate, prompt_len, output_len, seed))
        res = serve(reqs, system, model=model, plan=plan, dtype=dtype, scheduler=scheduler, slo=slo,
                    cache=costs, **options)
        n_chips.append(res.n_chips)
        return res

    # The offline run comes first and fixes the chips; the search needs them only at the end.
    result = search_capacity(serve_at, slo, 1, rel_tol=rel_tol, max_evals=max_evals)
    return replace(result, n_chips=n_chips[0])


def find_replicas(arch: Chip | System | str | Path, *, rate_per_s: float,
                  model: str | Path | ModelSpec = "llama2-7b", slo: SLO, n_requests: int = 500,
                  prompt_len: Any = 512, output_len: Any = 128,
                  seed: int = 0, plan: Plan | None = None, dtype: str = "bf16", scheduler: str = "vllm",
                  max_replicas: int | None = None, cache: ServeCache | None = None,
                  **options: Any) -> ReplicaResult:
    """The fewest data-parallel replicas of ``plan`` on ``arch`` that serve Poisson
    arrivals at ``rate_per_s`` within ``slo``, by bisection on the count (at most
    ``max_replicas``, default as many as the system's chips hold). Arguments as
    :func:`find_capacity`; ``options`` must not set ``replicas``."""
    check_slo(slo, "find_replicas")
    if "replicas" in options:
        raise ConfigError(["find_replicas: replicas: the search chooses the count; give max_replicas"])
    system = load_system(arch)
    per_replica = (plan or Plan()).tp * (plan or Plan()).pp
    most = max_replicas if max_replicas is not None else max(1, system.n_chips // per_replica)
    reqs = Requests.poisson(n_requests, rate_per_s, prompt_len, output_len, seed)
    costs = ServeCache() if cache is None else cache

    def serve_with(n: int) -> ServeResult:
        return serve(reqs, system, model=model, plan=plan, dtype=dtype, scheduler=scheduler, slo=slo,
                     cache=costs, replicas=n, **options)

    return search_replicas(serve_with, slo, float(rate_per_s), most)


def _with_plan(workload: Workload, plan: Plan | None, system: System) -> Workload:
    if plan is not None and plan != workload.plan:
        if workload.spec is None:
            raise ConfigError([f"plan: {workload.name} is a single operator; a plan needs a model workload"])
        workload = lower(workload.spec, workload.phase, **{**workload.lower_args, "plan": plan})
    used = workload.plan.n_chips if workload.plan else 1
    if workload.plan and workload.plan.offload and system.host is None and system.external_memory is None:
        raise ConfigError([f"{system.name}: plan: {workload.plan.label()} offloads "
                           f"{', '.join(workload.plan.offload)}, but the system has no host or "
                           "external memory"])
    if used > system.n_chips:
        raise ConfigError([f"{system.name}: plan: {workload.plan.label()} needs {used} chips; "
                           f"the system has {system.n_chips}"])
    check_placement(workload, system)
    return workload


def _host_warnings(workload: Workload, system: System) -> tuple[str, ...]:
    """What the run leaves out on the host side: an optimizer step on the host without a
    ``host_cpu`` to time it."""
    plan = workload.plan
    if plan is None or workload.phase != "train" or system.host_cpu is not None:
        return ()
    if "optimizer" in plan.offload or plan.off_chip_shares("optimizer"):
        return (f"{system.name}: the optimizer step on the host is not timed (the system has no host_cpu; "
                "taken as hidden under the next step, ZeRO-Offload's delayed parameter update)",)
    return ()


def simulate(
    workload: Workload, arch: Chip | System | str | Path, *, plan: Plan | None = None,
    fold: bool = True, cache: CostCache | None = None,
) -> Result:
    """Simulate ``workload`` on ``arch`` (a :class:`Chip`, a :class:`System`, or a preset
    name or YAML path of either), optionally split over the system by ``plan``.

    With a plan the result covers the whole system: latency of the step, energy of
    every chip used plus the interconnect, tokens of the global batch. What the run
    simplified or assumed (the workload's own warnings and those found while costing it
    on this chip) is in ``Result.warnings``.

    Raises
    ------
    ConfigError
        If the architecture cannot be loaded or the plan does not fit the system/model.
    MappingError
        If the workload does not fit a chip's memory or uses an unsupported dtype.
    """
    system = load_system(arch)
    workload = _with_plan(workload, plan, system)
    plan = workload.plan
    chip = system.chip
    check_fit(workload, chip)
    # Collectives (plans only) depend on the system and plan; other ops on the chip alone.
    reusable = cache is not None and cache.chip is chip and cache.plan == plan and (
        plan is None or cache.system is system)
    if not reusable:
        cache = CostCache(chip, system, plan)
    assert cache is not None
    warnings = (*workload.warnings, *costing_warnings(workload, chip), *_host_warnings(workload, system),
                *placement_warnings(workload))
    # The replica engine re-lowers decoder-only passes from the spec; an encoder-decoder's
    # passes (encoder, cross-attention) run as lowered, op by op.
    replica = workload.spec is not None and not workload.spec.is_encoder_decoder
    if workload.phase in INFERENCE_PHASES and replica and fold:
        run = run_inference(workload, system, cache)
    else:
        run = run_step(workload, system, cache, fold)
    return _result(workload, system, run, warnings)


def _result(workload: Workload, system: System, run: StepRun, warnings: tuple[str, ...]) -> Result:
    """The :class:`Result` of a run (every chip of the plan): totals, tokens, TTFT/TPOT."""
    chip, plan = system.chip, workload.plan
    n_chips = plan.n_chips if plan else 1
    latency = run.latency_s
    breakdown = {"compute_j": run.compute_j, **{f"{k}_j": v for k, v in run.level_j.items()},
                 "interconnect_j": run.link_j, "idle_j": chip.idle_power_w * latency * n_chips}
    if not plan:
        breakdown.pop("interconnect_j")
    ttft = tpot = None
    tokens = sum(p.tokens for p in workload.passes)
    if workload.phase == "request":
        tokens = workload.params["batch"] * workload.params["new_tokens"]
        ttft = run.first_token_s or 0.0
        tpot = (latency - ttft) / workload.params["new_tokens"]
    dtype = str(workload.params.get("dtype", "bf16"))
    if workload.precision is not None and not chip.peak_flops_per_s(dtype):
        dtype = emulation_dtype(chip.compute_units, dtype) or dtype  # emulated: the rate it runs at
    params = dict(workload.params) | run.stats
    if plan:
        params |= {"plan": plan.label(), "n_chips": n_chips}
    return Result(
        arch=system.name if plan else chip.name, workload=workload.name, phase=workload.phase,
        latency_s=latency, energy_j=sum(breakdown.values()), energy_breakdown_j=breakdown,
        bytes_by_level={f"{k}_bytes": v for k, v in run.level_bytes.items()}, flops=run.flops,
        tokens=tokens, peak_flops_per_s=chip.peak_flops_per_s(dtype) * n_chips, params=params,
        ttft_s=ttft, tpot_s=tpot, schedule_fn=run.schedule_fn, level_names=chip.level_names,
        time_by_bound_s=run.time_by_bound_s, warnings=warnings,
    )
