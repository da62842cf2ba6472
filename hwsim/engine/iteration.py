"""One iteration of a model replica: its time, energy and traffic from the batch composition.

An iteration is one forward pass over a batch of requests, each bringing ``q_i`` new
tokens (a prompt chunk, or one decode token) that attend to ``k_i`` keys (its cache plus
those tokens). What it costs decomposes as SERVING.md says:

- every linear operator (projections, norms, FFN or experts, embedding, collectives)
  depends only on the total new tokens ``T = sum(q_i)``, and the LM head on the number
  of requests that sample a token: the flattened op instances of a pass for ``(T,
  n_logits)`` are built and costed once and memoised (:class:`ReplicaModel`);
- each layer's attention depends on the list of ``(q_i, k_i)``: one varlen kernel,
  costed vectorised (:func:`hwsim.cost.attention_batch.attention_batch_cost`); so does
  a state-space layer's selective scan (each request's state read and written, its
  prompt chunked), through the same slot (:func:`hwsim.cost.ssm.mixer_batch_cost`);
- the ops then run one after another on each chip (with next-op weight prefetch),
  evaluated directly (:mod:`hwsim.engine.chain`) with repeated layers folded; a pass with
  concurrent work falls back to SimPy processes;
- the power limit (:mod:`hwsim.engine.power`) runs each iteration through the chip's
  energy bucket, carried from iteration to iteration and refilled by idle time, so clock
  throttling is part of simulated time.

A replica is ``tp * pp`` chips running one model copy under a :class:`Plan`; every chip
of a pipeline stage runs the same ops in lockstep, so one chip's timeline stands for the
stage and its energy and bytes are multiplied by ``tp``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from hwsim.arch.model import Chip
from hwsim.cost.model import OpCost, make_cost, streaming_traffic
from hwsim.cost.ssm import mixer_batch_cost
from hwsim.engine.chain import is_chain
from hwsim.engine.compiled import full_j
from hwsim.engine.passplan import (
    GRID_EXACT_TOKENS,
    GRID_PER_OCTAVE,
    IterationCost,
    Mixer,
    PassPlan,
    compile_pass,
    full_clock_energies,
    grid_bracket,
    run_compiled,
    shift_s,
    sums,
)
from hwsim.engine.power import PowerState, apply_power_limit
from hwsim.engine.schedule import (
    Schedule,
    evaluate_nodes,
    flatten,
    fold_schedule,
    prepare_nodes,
)
from hwsim.workload.blocks import MlaForm, attention_ops, mla_form
from hwsim.workload.graph import OperatorGraph, Pass, Segment, SegmentRole, Workload
from hwsim.workload.layers import LayerSpec, group_layers, stage_bounds
from hwsim.workload.lower import head_weights, run_name
from hwsim.workload.ops import Attention, Collective, Op, Sparsity
from hwsim.workload.parallel import (
    chain_graphs,
    host_streams,
    layer_graph,
    period_graph,
    sharded_embedding,
    sharded_head,
)
from hwsim.workload.plan import Plan
from hwsim.workload.precision import Precision
from hwsim.workload.quantize import quantize_graph
from hwsim.workload.spec import ModelSpec

StageRuns = list[list[tuple[int, tuple[LayerSpec, ...], int]]]


def _stage_runs(spec: ModelSpec, plan: Plan, precision: Precision | None = None,
                ) -> tuple[StageRuns, tuple[LayerSpec, ...]]:
    """Each stage's layers as ``(first, period, repeat)`` runs (layers with another
    weight dtype under ``precision`` apart), and the MLA layer kinds."""
    runs: StageRuns = []
    mla: set[LayerSpec] = set()
    for first, end in stage_bounds(spec.num_hidden_layers, plan.pp):
        specs = tuple(spec.layer(i) for i in range(first, end))
        keys: tuple[Any, ...] = specs
        if precision is not None and precision.layers:
            keys = tuple((s, precision.layer_weights(i)) for i, s in enumerate(specs, first))
        mla |= {layer for layer in specs if layer.mixer.mla is not None}
        runs.append([(f, specs[f - first:f - first + period], repeat)
                     for f, period, repeat in group_layers(keys, first)])
    return runs, tuple(mla)


def _batch_template(op: Mixer) -> Mixer:
    """``op`` without the batch shape its batch cost ignores, so the two grid passes
    around an iteration's token count (whose templates differ only there) share one
    attention cost."""
    if isinstance(op, Attention):
        return replace(op, batch=1, q_len=1, kv_len=1)
    return replace(op, batch=1, q_len=1, prior_state=False)


class ReplicaModel:
    """Iteration costs of one model replica on one kind of chip (memoised).

    Parameters
    ----------
    spec : ModelSpec
    chip : Chip
    plan : Plan
        ``tp`` and ``pp`` (and ``ep``) of the replica; ``dp`` and ``microbatches`` do not
        apply to one iteration.
    cost_of : callable
        Op costs (a shared :class:`hwsim.caches.CostCache`).
    dtype, attention_impl, sparsity : str
        As :func:`hwsim.workload.lower`.
    per_shape : bool
        Lower every batch shape on its own instead of reusing the pass of its token
        count (needed where more than attention depends on the lengths: context
        parallelism, an offloaded KV cache); batches must then be uniform.
    capacity_factor : float
        MoE expert buffers padded to this multiple of the mean load (see lowering).
    lowering : dict, optional
        Where lowered passes are kept, keyed by shape; pass the same dict to models of
        the same model, plan and kernels on other chips (a workload's
        ``iteration_cache``) and each pass is lowered once.
    token_grid : bool
        Cost the linear ops of an iteration of ``T > GRID_EXACT_TOKENS`` tokens by linear
        interpolation between the two nearest points of a geometric grid
        (``GRID_PER_OCTAVE`` per doubling) instead of at ``T`` itself: serving runs see
        thousands of distinct ``T``, and each new one costs every linear op afresh.
    """

    def __init__(self, spec: ModelSpec, chip: Chip, plan: Plan, cost_of: Callable[..., OpCost],
                 dtype: str = "bf16", attention_impl: str = "flash", sparsity: Sparsity = None,
                 per_shape: bool = False, token_grid: bool = False, capacity_factor: float = 1.0,
                 lowering: dict[Any, Any] | None = None, precision: Precision | None = None) -> None:
        self.spec, self.chip, self.plan, self.cost_of = spec, chip, plan, cost_of
        if precision is not None and precision.is_uniform:
            dtype, precision = precision.base, None
        elif precision is not None:
            dtype = precision.base  # graphs are built in base, then quantized
        self.precision = precision
        self.capacity_factor = capacity_factor
        self._lowering: dict[Any, Any] = {} if lowering is None else lowering
        # Each stage's layers as runs of repeated periods (chip-independent: kept with
        # the lowered passes).
        runs_key = ("stage runs", spec.num_hidden_layers, plan.pp, precision)
        if runs_key not in self._lowering:
            self._lowering[runs_key] = _stage_runs(spec, plan, precision)
        self._stage_runs, mla = self._lowering[runs_key]
        self._mla_layers = mla  # one MLA layer of each kind chooses the form
        self.dtype, self.attention_impl, self.sparsity = dtype, attention_impl, sparsity
        self.per_shape, self.token_grid = per_shape, token_grid
        self._passes: dict[tuple[int, ...], PassPlan] = {}
        self._levels = chip.level_names

    @property
    def kv_dtype(self) -> str:
        """The KV cache's dtype."""
        return self.precision.kv_cache if self.precision is not None else self.dtype

    def _quantized(self, graph: OperatorGraph, weights: str | None = None) -> OperatorGraph:
        return graph if self.precision is None else quantize_graph(graph, self.precision, weights)

    @property
    def n_stages(self) -> int:
        return self.plan.pp

    def stage_layers(self, stage: int) -> int:
        """Layers pipeline stage ``stage`` runs (the first stages one more when ``pp``
        does not divide the layers)."""
        first, end = stage_bounds(self.spec.num_hidden_layers, self.plan.pp)[stage]
        return end - first

    def _workload(self, n_tokens: int, n_logits: int, stage: int,
                  shape: tuple[int, int, int] | None) -> Workload:
        """The pass of ``stage`` over ``n_tokens`` new tokens; with ``shape = (batch, q,
        k)`` lowered for exactly that uniform batch, else with placeholder attention
        that every iteration costs for its own requests."""
        spec, plan, dtype = self.spec, self.plan, self.dtype
        if shape is not None:
            n_tokens = shape[0] * -(-shape[1] // plan.cp)
        segments = []
        if stage == 0:
            embed = sharded_embedding(spec, plan, n_tokens, dtype)
            emb_dtype = self.precision.embeddings if self.precision else None
            segments.append(Segment("embed", self._quantized(embed, emb_dtype), role=SegmentRole.EMBED))
        runs = self._stage_runs[stage]
        for index, (first, period, repeat) in enumerate(runs):
            graph = self._period(period, n_tokens, shape, first)
            segments.append(Segment(run_name(runs, index), graph, repeat, SegmentRole.LAYER, len(period)))
        if stage == plan.pp - 1 and not spec.encoder_only and n_logits > 0:
            head = sharded_head(spec, plan, n_tokens, n_logits, dtype)
            weights = None if self.precision is None else head_weights(spec, self.precision)
            segments.append(Segment("head", self._quantized(head, weights), role=SegmentRole.HEAD))
        passes = (Pass("iteration", tuple(segments), tokens=n_tokens),)
        return Workload(spec.name, "iteration", passes, {}, {"dtype": dtype})

    def _period(self, period: tuple[LayerSpec, ...], n_tokens: int,
                shape: tuple[int, int, int] | None, first: int = 0) -> OperatorGraph:
        """One period of layers; per-iteration attention when ``shape`` is None (MLA in
        its absorbed form, which a mixed batch's decodes use)."""
        plan, dtype, impl = self.plan, self.dtype, self.attention_impl
        cf = self.capacity_factor
        if shape is not None:
            return period_graph(period, plan, *shape, dtype, impl, self.sparsity, capacity_factor=cf,
                                precision=self.precision, first_layer=first)
        graphs: list[OperatorGraph] = []
        for layer in period:
            form: MlaForm | None = "absorbed" if layer.mixer.mla is not None else None
            ops = attention_ops(layer, plan, n_tokens, 1, 1, dtype, impl, form)
            graph = layer_graph(layer, plan, n_tokens, ops, dtype, self.sparsity, capacity_factor=cf)
            host_streams(graph, layer, plan, n_tokens, 1, 1, dtype)  # weights (a streamed KV is per shape)
            prec = self.precision
            graphs.append(self._quantized(graph, prec.layer_weights(first + len(graphs)) if prec else None))
        return chain_graphs(graphs)

    def _pass(self, n_tokens: int, n_logits: int, stage: int,
              shape: tuple[int, int, int] | None = None) -> PassPlan:
        key = (n_tokens, n_logits, stage, *(shape or ()))
        plan = self._passes.get(key)
        if plan is not None:
            return plan
        low_key = (self.plan, self.dtype, self.attention_impl, self.sparsity, self.capacity_factor,
                   self.precision, key)
        lowered = self._lowering.get(low_key)
        if lowered is None:
            workload = self._workload(n_tokens, n_logits, stage, shape)
            lowered = self._lowering[low_key] = (workload, flatten(workload))
        workload, flat = lowered
        # The layers' attention is costed per iteration: a placeholder here (costing
        # a placeholder of T sequences would be wasted work).
        nodes, runs = prepare_nodes(workload, self.chip, self.cost_of if shape else self._cost_or_skip,
                                    flat=flat)
        folded = {(r.pass_index, r.segment_index): r.repeat - r.simulated for r in runs}
        mult = np.array([(1 + folded[n.key[:2]] if n.key[2] == 1 else 1) * self.plan.tp for n in nodes],
                        dtype=np.float64)
        attention = [] if shape else [(i, _batch_template(n.op)) for i, n in enumerate(nodes)
                                      if isinstance(n.op, Mixer)]
        skip = {i for i, _ in attention}
        static = np.zeros(3 + 2 * len(self._levels))
        for i, n in enumerate(nodes):
            if i not in skip:
                static += mult[i] * np.asarray(sums(n.cost))
        first_of: dict[tuple[int, int, int], int] = {}
        for i, n in enumerate(nodes):
            first_of.setdefault(n.key[:3], i)
        groups: list[tuple[int, int, int]] = []
        for i, n in enumerate(nodes):
            copies = folded[n.key[:2]] if n.key[2] == 1 else 0
            if copies and groups and groups[-1][2] and nodes[groups[-1][0]].key[:3] == n.key[:3]:
                groups[-1] = (groups[-1][0], i + 1, copies)
            else:
                groups.append((i, i + 1, copies))
        energy = [full_j(n.cost) for n in nodes]
        collective = [isinstance(n.op, Collective) for n in nodes]
        alternatives = [i for i, n in enumerate(nodes)
                        if n.cost.alternative is not None and not collective[i]]
        plan = self._passes[key] = PassPlan(workload, nodes, runs, mult, attention, static, first_of,
                                             not is_chain(nodes), [None] * len(nodes), groups, energy,
                                             collective, alternatives)
        return plan

    def _cost_or_skip(self, op: Op, fewest_kernels: bool = False) -> OpCost:
        if isinstance(op, Mixer):
            if self._placeholder is None:
                self._placeholder = make_cost(self.chip, flops=0.0, compute_cycles=0.0, compute_s=0.0,
                                              traffic=streaming_traffic(self.chip, 0.0, 0.0), n_kernels=1,
                                              compute_energy_j=0.0)
            return self._placeholder
        return self.cost_of(op, fewest_kernels)

    _placeholder: OpCost | None = None

    def _expanded_mla(self, q_len: int, kv_len: int) -> bool:
        """Whether some layer runs MLA, in the expanded form, for this uniform shape."""
        return any(layer.mixer.mla is not None and mla_form(layer.mixer, q_len, kv_len) == "expanded"
                   for layer in self._mla_layers)

    def run(self, q: np.ndarray, k: np.ndarray, n_logits: int, stage: int = 0,
            power: PowerState | None = None, detail: bool = False) -> IterationCost:
        """Cost of one iteration of pipeline ``stage``.

        Parameters
        ----------
        q, k : numpy.ndarray of int
            New tokens and attended keys of every request in the batch.
        n_logits : int
            Requests that sample a token in this iteration (the LM head's rows).
        power : PowerState, optional
            The stage's power-limit bucket, updated in place (None: no limit applied).
        detail : bool
            Also return the op-level schedule of one chip.
        """
        n_tokens = int(np.sum(q))
        shape = None
        uniform = bool((q == q[0]).all() and (k == k[0]).all())
        if self.per_shape and not uniform:
            raise ValueError("a per-shape replica model runs uniform batches only")
        if self.per_shape or (uniform and self._expanded_mla(int(q[0]), int(k[0]))):
            # MLA's expanded form up-projects every cached key: more than attention
            # depends on the lengths, so the pass is lowered for this shape.
            shape = (int(q.size), int(q[0]), int(k[0]))
        attention: dict[Mixer, OpCost] = {}
        lo, hi, w = grid_bracket(n_tokens) if self.token_grid and not detail and shape is None else (
            n_tokens, n_tokens, 0.0)
        if w == 0.0:
            return self._run_pass(q, k, n_tokens, n_logits, stage, power, detail, shape, attention)
        # Between two grid points: run both passes (same attention) and interpolate.
        p_lo = None if power is None else replace(power)
        a = self._run_pass(q, k, lo, n_logits, stage, p_lo, False, None, attention)
        b = self._run_pass(q, k, hi, n_logits, stage, power, False, None, attention)
        if power is not None and p_lo is not None:
            power.level_j = (1 - w) * p_lo.level_j + w * power.level_j
        return a.interpolate(b, w)

    def _run_pass(self, q: np.ndarray, k: np.ndarray, n_tokens: int, n_logits: int, stage: int,
                  power: PowerState | None, detail: bool, shape: tuple[int, int, int] | None,
                  costs: dict[Mixer, OpCost]) -> IterationCost:
        plan = self._pass(n_tokens, n_logits, stage, shape)
        nodes = plan.nodes
        dyn = plan.static.copy()
        for i, template in plan.attention:
            cost = costs.get(template)
            if cost is None:
                cost = costs[template] = mixer_batch_cost(self.chip, template, q, k)
            nodes[i].cost = cost
            plan.profiles[i] = None
            dyn += plan.mult[i] * np.asarray(sums(cost))
        fast = self.token_grid and not detail and shape is None and not plan.events
        if fast and plan.compiled is not None:
            done = run_compiled(plan, self.chip, power, dyn)
            if done is not None:
                return self._cost(done[0], done[1], {}, None)
        log, now = evaluate_nodes(nodes, self.chip, plan.events, plan.profiles)
        at_full_clock = True
        energy: list[float] = plan.energy_j
        swaps: dict[int, OpCost] = {}
        if power is not None and not detail:
            # Most iterations never empty the bucket: walk plain numbers, no schedule.
            energy, swaps = full_clock_energies(plan, self.chip, log)
            span = [end - start for _, start, end, _, _ in log]
            at_full_clock = power.walk_at_full_clock(energy, span, plan.collective, plan.groups)
            for i, alt in swaps.items():
                dyn += plan.mult[i] * (np.asarray(sums(alt)) - np.asarray(sums(nodes[i].cost)))
        if fast and at_full_clock and plan.compiled is None and not any(n.issue_s for n in nodes):
            compile_pass(plan, self.chip, log, energy, swaps, power)
        if detail or not at_full_clock:
            schedule = fold_schedule(plan.workload, nodes, plan.runs, log, now)
            if power is not None:
                schedule = apply_power_limit(schedule, self.chip, power)
            return self._from_schedule(schedule, detail)
        bounds = self._bounds(plan, log) if not self.token_grid else {}
        return self._cost(now + shift_s(plan, log), dyn, bounds, None)

    def _bounds(self, plan: PassPlan, log: list) -> dict[str, float]:
        out: dict[str, float] = {}
        tp = self.plan.tp
        for (_, start, end, _, bound), m in zip(log, plan.mult, strict=True):
            out[bound] = out.get(bound, 0.0) + m / tp * (end - start)
        return out

    def _cost(self, latency: float, dyn: np.ndarray, bounds: dict[str, float],
              schedule: Schedule | None) -> IterationCost:
        n = len(self._levels)
        return IterationCost(
            latency_s=latency, flops=float(dyn[0]), compute_j=float(dyn[1]), link_j=float(dyn[2]),
            level_bytes=dict(zip(self._levels, map(float, dyn[3:3 + n]), strict=True)),
            level_j=dict(zip(self._levels, map(float, dyn[3 + n:]), strict=True)),
            time_by_bound_s=bounds, schedule=schedule)

    def _from_schedule(self, schedule: Schedule, detail: bool) -> IterationCost:
        """Totals of a (power-limited) schedule of one chip, over the stage's chips."""
        dyn = np.zeros(3 + 2 * len(self._levels))
        bounds: dict[str, float] = {}
        tp = self.plan.tp
        for rec in schedule.records:
            m = schedule.multiplicity(rec)
            dyn += m * tp * np.asarray(sums(rec.cost))
            bounds[rec.bound] = bounds.get(rec.bound, 0.0) + m * (rec.end_s - rec.start_s)
        return self._cost(schedule.latency_s, dyn, bounds, schedule if detail else None)


__all__ = ["GRID_EXACT_TOKENS", "GRID_PER_OCTAVE", "IterationCost", "Mixer", "ReplicaModel", "grid_bracket"]
