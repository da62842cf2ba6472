"""From a system, a model, a plan and options to the pools a serving run uses, and the
run itself (what :func:`hwsim.serve` does below its argument handling).

- One pool by default: ``replicas`` (the plan's ``dp`` unless given) replicas of ``tp *
  pp`` chips each. A plan that uses fewer chips than the system holds leaves the rest
  idle, and the result says so; those chips are not counted per chip or in energy.
- Disaggregated serving: a ``prefill`` and a ``decode`` pool, each with its own chips,
  plan and replicas, on one system (sharing its chips) or each on its own; KV crosses
  between them at ``transfer_bytes_per_s`` (default: the chip's first fabric link, one
  per tensor-parallel rank).
- A mixed system (``System.pools``: a prefill pool of one chip kind, a decode pool of
  another) gives each pool its own system; pool options without an ``arch`` take the
  system's pool of their role, and with no pool options each pool runs one replica per
  chip (``tp = 1``) of its system. KV crosses at the system's ``pool_link``.
- Every request is checked up front: one whose prompt and output can never fit a
  replica's KV cache is refused with the numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hwsim.arch.system import System, load_system
from hwsim.cost.attention_batch import APPROXIMATION as ATTENTION_APPROXIMATION
from hwsim.cost.model import OpCost
from hwsim.engine.decoding import DecodingModel
from hwsim.engine.iteration import GRID_EXACT_TOKENS, GRID_PER_OCTAVE, ReplicaModel
from hwsim.engine.serve.decoding import decoding_capacity, decoding_notes
from hwsim.engine.serve.options import ServeOptions
from hwsim.engine.serve.requests import Requests
from hwsim.engine.serve.run import Pool, Role, ServeRun, kv_capacity, run_serving
from hwsim.engine.serve.scheduler import SchedulerConfig
from hwsim.engine.serve.table import RequestTable
from hwsim.errors import ConfigError
from hwsim.mapping.fit import precision_warnings
from hwsim.units import GIB
from hwsim.workload.decoding import FullKV, Greedy, shared_prompt_tokens
from hwsim.workload.plan import Plan
from hwsim.workload.precision import Precision
from hwsim.workload.spec import ModelSpec

CostFactory = Callable[[System, Plan], Callable[..., OpCost]]


def _replica_plan(plan: Plan, where: str) -> Plan:
    """The plan of one replica (its tp and pp); dp says how many replicas."""
    problems = []
    if plan.ep > 1:
        problems.append(f"{where}: plan: ep={plan.ep}: expert parallelism across replicas is not modelled in "
                        "serving; split experts with tp")
    if plan.cp > 1:
        problems.append(f"{where}: plan: cp={plan.cp}: context parallelism is not modelled in serving")
    if "kv_cache" in plan.offload or plan.off_chip_shares("kv_cache"):
        problems.append(f"{where}: plan: an offloaded KV cache is not modelled in serving")
    if plan.off_chip_shares("activations") or plan.off_chip_shares("optimizer"):
        problems.append(f"{where}: plan: placement of activations or optimizer state is for training only")
    if problems:
        raise ConfigError(problems)
    return plan.model_copy(update={"dp": 1, "microbatches": 1, "zero_stage": 0, "recompute": False})


def _pool(role: Role, system: System, spec: ModelSpec, plan: Plan, replicas: int, precision: Precision,
          opts: ServeOptions, costs: CostFactory) -> Pool:
    replica_plan = _replica_plan(plan, f"{system.name} ({role})")
    missing = [f"{system.name} ({role}): plan: placement.{item}.{tier}: the system has no tier {tier!r} "
               f"(has: {', '.join(['device', *system.tier_names])})"
               for item, shares in replica_plan.placement for tier, _ in shares
               if tier != "device" and system.tier(tier) is None]
    if missing:
        raise ConfigError(missing)
    model = ReplicaModel(spec, system.chip, replica_plan, costs(system, replica_plan), dtype=precision.base,
                         attention_impl=opts.attention_impl, token_grid=True, precision=precision)
    budget = opts.scheduler_config("vllm").max_num_batched_tokens
    kv = kv_capacity(model, opts.memory_fraction, opts.block_tokens, min(budget, 1 << 20))
    if kv.n_blocks <= 0:
        raise ConfigError([
            f"{system.name}: {spec.name} ({replica_plan.label()}) leaves no memory for a KV cache: "
            f"{kv.weights_bytes / GIB:.1f} GiB of weights + {kv.activations_bytes / GIB:.1f} GiB of "
            f"activations + {kv.workspace_bytes / GIB:.1f} GiB of workspace per chip exceed "
            f"{opts.memory_fraction:g} x {kv.memory_bytes / GIB:.1f} GiB"])
    decoding = None
    if not (isinstance(opts.decoding, Greedy) and opts.kv_policy == FullKV()):
        decoding = DecodingModel(opts.decoding, opts.kv_policy, model, model.cost_of, opts.block_tokens)
        kv = decoding_capacity(kv, decoding, opts.memory_fraction)
        if kv.n_blocks <= 0:
            raise ConfigError([f"{system.name}: serve: decoding: {opts.decoding.label()} leaves no memory "
                               f"for a KV cache beside the draft's weights ({kv.weights_bytes / GIB:.1f} GiB "
                               "of weights in all)"])
    return Pool(system, model, replicas, role, kv, decoding)


def build_pools(system: System, spec: ModelSpec, plan: Plan | None, precision: Precision, opts: ServeOptions,
                costs: CostFactory) -> tuple[list[Pool], list[str]]:
    """The pools of a run and the notes to pass on as warnings (formats a pool's chip
    emulates among them)."""
    pools, notes = _build_pools(system, spec, plan, precision, opts, costs)
    for chip in {id(p.model.chip): p.model.chip for p in pools}.values():
        notes += precision_warnings(precision, chip)
    return pools, notes


def _build_pools(system: System, spec: ModelSpec, plan: Plan | None, dtype: Precision, opts: ServeOptions,
                 costs: CostFactory) -> tuple[list[Pool], list[str]]:
    notes: list[str] = []
    if not opts.pools and system.pools:
        pools = [_pool(role, sub, spec, Plan(), sub.n_chips, dtype, opts, costs)
                 for role, sub in sorted(system.pools.items(), key=lambda kv: kv[0] != "prefill")]
        return pools, notes
    if not opts.pools:
        plan = plan or Plan()
        replicas = opts.replicas or plan.dp
        pool = _pool("both", system, spec, plan, replicas, dtype, opts, costs)
        _check_chips(system, [pool], notes)
        return [pool], notes
    pools = []
    for p in opts.pools:
        sys_p = (system.pools.get(p.role, system) if p.arch is None else load_system(p.arch))
        plan_p = p.plan if isinstance(p.plan, Plan) else Plan(**(p.plan or {}))
        pools.append(_pool(p.role, sys_p, spec, plan_p, p.replicas, dtype, opts, costs))
    for sub in {id(p.system): p.system for p in pools}.values():
        if sub is system or sub in system.pools.values():
            _check_chips(sub, [p for p in pools if p.system is sub], notes)
    return pools, notes


def _check_chips(system: System, pools: list[Pool], notes: list[str]) -> None:
    used = sum(p.n_chips for p in pools)
    if used > system.n_chips:
        what = " + ".join(f"{p.replicas} x {p.model.plan.tp * p.model.plan.pp} ({p.role})" for p in pools)
        raise ConfigError([f"{system.name}: serving needs {what} = {used} chips; "
                           f"the system has {system.n_chips}"])
    if used < system.n_chips:
        notes.append(f"{system.name}: the replicas use {used} of its {system.n_chips} chips; the other "
                     f"{system.n_chips - used} are idle and not counted (raise replicas or the plan's dp)")


def check_lengths(requests: Requests, max_model_len: int, config: SchedulerConfig, model: str) -> None:
    """Refuse requests longer than the model's context (vLLM refuses them too) and, for a
    scheduler that runs whole prompts, ones whose prompt and output (all of it is fed
    again after a preemption by recompute) exceed the token budget."""
    total = requests.prompt_len + requests.output_len
    lines = []
    for i in (total > max_model_len).nonzero()[0][:5].tolist():
        lines.append(f"{requests.source}: row {i + 1}: {requests.prompt_len[i]} prompt + "
                     f"{requests.output_len[i]} output tokens exceed {model}'s context of "
                     f"{max_model_len} (max_model_len; Requests.with_max_len caps them)")
    if not config.chunks and config.policy != "static":
        budget = config.max_num_batched_tokens
        for i in (total > budget).nonzero()[0][:5].tolist():
            lines.append(f"{requests.source}: row {i + 1}: {total[i]} tokens do not fit one "
                         f"{config.policy} iteration of max_num_batched_tokens={budget} (raise it or "
                         "use scheduler='sarathi')")
    if lines:
        raise ConfigError(lines)


def check_requests(requests: Requests, pools: list[Pool], block_tokens: int) -> None:
    """Refuse requests that can never fit a replica's KV cache (with the numbers)."""
    smallest = min(p.kv.n_blocks for p in pools)
    layout = max((p.kv.layout for p in pools), key=lambda lay: lay.block_bytes)
    n_seq = max(p.decoding.n_sequences if p.decoding is not None else 1 for p in pools)
    slots = shared_prompt_tokens(requests.prompt_len, requests.output_len, n_seq, block_tokens)
    need = np.asarray(layout.blocks(np.asarray(slots)))
    bad = [int(i) for i in (need > smallest).nonzero()[0]]
    if bad:
        lines = [f"{requests.source}: row {i + 1}: request of {requests.prompt_len[i]} prompt + "
                 f"{requests.output_len[i]} output tokens needs {need[i]} KV blocks of "
                 f"{block_tokens} tokens; the cache holds {smallest}" for i in bad[:5]]
        if len(bad) > 5:
            lines.append(f"{requests.source}: ... and {len(bad) - 5} more requests that can never fit")
        raise ConfigError(lines)


def transfer_bandwidth(pools: list[Pool], given: float | None) -> float:
    """Bytes per second one request's KV moves between pools."""
    if given is not None:
        return given
    rates = []
    for pool in pools:
        if not pool.system.fabrics:
            continue
        fabric = pool.system.fabrics[0]
        rates.append(fabric.port_bytes_per_s * fabric.link.achievable_fraction * pool.model.plan.tp)
    if not rates:
        raise ConfigError(["serve: transfer_bytes_per_s: the pools' systems have no fabric between chips; "
                           "give the bandwidth between the pools"])
    return min(rates)


def serve_requests(requests: Requests, system: System, spec: ModelSpec, plan: Plan | None, dtype: Precision,
                   scheduler: str, opts: ServeOptions, costs: CostFactory,
                   progress: Callable[[int], None] | None = None) -> tuple[ServeRun, list[str]]:
    """Build the pools, check the requests, run; return the run and its notes.
    ``progress`` is called with the number of requests that have just finished."""
    if spec.is_encoder_decoder:
        raise ConfigError([f"serve: model: {spec.name or spec.model_type}: serving encoder-decoder models "
                           f"({spec.model_type.upper()}: an encoder pass per request, a cross-attention "
                           "cache of its source) is not modelled yet; simulate its prefill, decode and "
                           "request phases with hwsim.simulate"])
    if spec.is_ssm and opts.prefix_caching:
        raise ConfigError([f"serve: prefix_caching: {spec.name or 'the model'} has state-space (Mamba) "
                           "layers, whose state at a prefix's end is not cached; prefix caching is not "
                           "modelled for them"])
    pools, notes = build_pools(system, spec, plan, dtype, opts, costs)
    longest = int((requests.prompt_len + requests.output_len).max())
    max_model_len = opts.max_model_len or spec.context_limit or longest
    config = opts.scheduler_config(scheduler, max_model_len)
    check_lengths(requests, max_model_len, config, spec.name)
    check_requests(requests, pools, config.block_tokens)
    table = RequestTable(requests.arrival_s, requests.prompt_len, requests.output_len, requests.prefix_id,
                         _prefix_len(requests), on_finish=progress)
    latency = 0.0
    if len(pools) > 1 and opts.transfer_bytes_per_s is None and system.pool_link is not None:
        link = system.pool_link  # a mixed system's own link between its pools
        bandwidth, latency = link.bandwidth_bytes_per_s * link.achievable_fraction, link.latency_s
    else:
        bandwidth = transfer_bandwidth(pools, opts.transfer_bytes_per_s) if len(pools) > 1 else 0.0
    run = run_serving(table, pools, config, opts.router, opts.host_overhead_s, bandwidth, latency)
    return run, notes + approximations(run, spec, opts) + decoding_notes(pools[-1].decoding)


def approximations(run: ServeRun, spec: ModelSpec, opts: ServeOptions) -> list[str]:
    """What the run's iteration costs simplified, one line each."""
    notes = []
    iterations = run.log
    if any(prefill + decode > GRID_EXACT_TOKENS for _, _, _, prefill, decode, *_ in iterations):
        gap_pct = 100 * (2 ** (1 / GRID_PER_OCTAVE) - 1)
        notes.append(f"iterations of more than {GRID_EXACT_TOKENS} new tokens: their linear ops are "
                     f"interpolated between exactly costed token counts {gap_pct:.1f} % apart "
                     "(within 1 % of exact)")
    if any(spec.layer(i).attention is not None for i in range(spec.num_hidden_layers)):
        notes.append("attention of a batch mixing lengths: " + ATTENTION_APPROXIMATION)
    if spec.is_ssm:
        notes.append("state-space layers: each request's conv and SSM state is counted in whole KV "
                     "blocks of the cache, in the cache dtype")
    if spec.is_mla:
        notes.append("MLA: iterations mixing lengths run every request in the absorbed form "
                     "(vLLM runs prefill chunks expanded)")
    if opts.prefix_caching and (run.table.prefix_id >= 0).any():
        notes.append("prefix caching: the requests of one prefix_id share the group's shortest prompt")
    return notes


def _prefix_len(requests: Requests) -> np.ndarray:
    """Tokens each request shares with its ``prefix_id`` group: the group's shortest prompt
    (a trace that names a prefix but not its length)."""
    out = np.zeros(len(requests), dtype=np.int64)
    ids = requests.prefix_id
    for pid in np.unique(ids[ids >= 0]).tolist():
        members = ids == pid
        out[members] = int(requests.prompt_len[members].min())
    return out


