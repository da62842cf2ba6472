"""The pieces of an iteration pass (:mod:`hwsim.engine.iteration`): what an iteration
costs, the token grid serving passes are lowered on, a pass's prepared nodes and
invariant sums, and the compiled fast path over them (:mod:`hwsim.engine.compiled`):
compiling a pass from a first full evaluation, running an iteration through it, the
full-clock energies and alternative mappings the power walk picks, and the time folded
layers add."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hwsim.arch.model import Chip
from hwsim.cost.model import OpCost, transfer_time_s
from hwsim.engine.chain import Profile, node_profile
from hwsim.engine.compiled import CompiledPass, full_j
from hwsim.engine.power import PowerState
from hwsim.engine.schedule import Schedule, SegmentRun, _Node
from hwsim.workload.graph import Workload
from hwsim.workload.ops import Attention
from hwsim.workload.ops_ssm import SelectiveScan

Mixer = Attention | SelectiveScan
"""A layer's per-request kernel, costed per iteration: attention, or a state-space
layer's selective scan (its state traffic and chunking depend on each request)."""


@dataclass
class IterationCost:
    """What one iteration of one pipeline stage costs on its ``tp`` chips.

    Attributes
    ----------
    latency_s : float
        Wall time of the stage's pass, including any slowdown by the power limit, in s.
    flops : float
        FLOP over the stage's chips.
    compute_j, link_j : float
        Matrix/vector and interconnect energy over the stage's chips, in J.
    level_bytes, level_j : dict
        Bytes and energy at each memory level (keyed by level name), over the chips.
    time_by_bound_s : dict
        Op time (one chip, folded layers counted) by what bounds each op, in s.
    schedule : Schedule or None
        The op-level schedule of one chip, when asked for (``detail=True``).
    """

    latency_s: float
    flops: float
    compute_j: float
    link_j: float
    level_bytes: dict[str, float]
    level_j: dict[str, float]
    time_by_bound_s: dict[str, float] = field(default_factory=dict)
    schedule: Schedule | None = None

    @property
    def dynamic_j(self) -> float:
        """Energy above idle, in J."""
        return self.compute_j + self.link_j + sum(self.level_j.values())

    def interpolate(self, other: IterationCost, w: float) -> IterationCost:
        """``(1 - w) * self + w * other``, field by field (no schedule)."""
        def mix(a: float, b: float) -> float:
            return (1.0 - w) * a + w * b

        bounds = {key: mix(self.time_by_bound_s.get(key, 0.0), other.time_by_bound_s.get(key, 0.0))
                  for key in {*self.time_by_bound_s, *other.time_by_bound_s}}
        return IterationCost(
            mix(self.latency_s, other.latency_s), mix(self.flops, other.flops),
            mix(self.compute_j, other.compute_j), mix(self.link_j, other.link_j),
            {n: mix(v, other.level_bytes[n]) for n, v in self.level_bytes.items()},
            {n: mix(v, other.level_j[n]) for n, v in self.level_j.items()}, bounds)


#: Token counts up to this are costed exactly; above, on a geometric grid.
GRID_EXACT_TOKENS = 64
#: Grid points per doubling of the token count (4.4 % apart).
GRID_PER_OCTAVE = 16


def grid_bracket(n_tokens: int) -> tuple[int, int, float]:
    """``(lo, hi, w)``: the grid points around ``n_tokens`` and its weight on ``hi``
    (``w = 0`` and ``lo = hi = n_tokens`` when it is costed exactly)."""
    if n_tokens <= GRID_EXACT_TOKENS:
        return n_tokens, n_tokens, 0.0
    j = math.floor(GRID_PER_OCTAVE * math.log2(n_tokens / GRID_EXACT_TOKENS))
    lo = math.ceil(GRID_EXACT_TOKENS * 2 ** (j / GRID_PER_OCTAVE))
    hi = math.ceil(GRID_EXACT_TOKENS * 2 ** ((j + 1) / GRID_PER_OCTAVE))
    while lo > n_tokens:  # float rounding at the boundary
        j -= 1
        lo, hi = math.ceil(GRID_EXACT_TOKENS * 2 ** (j / GRID_PER_OCTAVE)), lo
    while hi <= n_tokens:
        j += 1
        lo, hi = hi, math.ceil(GRID_EXACT_TOKENS * 2 ** ((j + 1) / GRID_PER_OCTAVE))
    if lo == n_tokens:
        return n_tokens, n_tokens, 0.0
    return lo, hi, (n_tokens - lo) / (hi - lo)


@dataclass
class PassPlan:
    """A pass for one ``(T, n_logits)``: its prepared nodes and the sums that do not
    change from iteration to iteration."""

    workload: Workload
    nodes: list[_Node]
    runs: list[SegmentRun]
    mult: np.ndarray  # op instances each node stands for, times chips running it
    attention: list[tuple[int, Mixer]]  # per-request kernels (attention, selective scans)
    static: np.ndarray  # [flops, compute_j, link_j, *level_bytes, *level_j] of the other nodes
    first_of: dict[tuple[int, int, int], int]  # (pass, segment, instance) -> first node
    events: bool  # the pass has concurrent work: SimPy processes, not the direct recurrence
    profiles: list[Profile | None]  # the recurrence's per-node constants (attention: per run)
    groups: list[tuple[int, int, int]]  # (first, stop, folded copies) of each op instance, in order
    energy_j: list[float]  # each node's energy at full clock (attention nodes: per run)
    collective: list[bool]
    alternatives: list[int]  # nodes whose cost has an alternative mapping
    compiled: CompiledPass | None = None  # serving: what changes per iteration, compiled
    static_swaps: np.ndarray | None = None  # totals' change from static nodes' alternatives


def sums(cost: OpCost) -> list[float]:
    """``[flops, compute_j, link_j, *level_bytes, *level_j]`` of one op."""
    return [cost.flops, cost.compute_energy_j, cost.link_energy_j, *(t.bytes for t in cost.traffic),
            *cost.level_energy_j]


def compile_pass(plan: PassPlan, chip: Chip, log: list, energy: list[float], swaps: dict[int, OpCost],
                 power: PowerState | None) -> None:
    """Compile ``plan`` from a full evaluation (see :mod:`hwsim.engine.compiled`)."""
    # Attention changes with the batch, and so does the start of the op after it.
    dynamic = {i for i, _ in plan.attention}
    dynamic |= {i + 1 for i in dynamic if i + 1 < len(plan.nodes)}
    plan.compiled = CompiledPass(plan.nodes, plan.profiles, log, chip, sorted(dynamic), plan.groups,
                                 power.capacity_j if power else 0.0, power.headroom_w if power else 0.0,
                                 list(energy))
    delta = np.zeros_like(plan.static)
    for i, alt in swaps.items():
        if i not in dynamic:
            delta += plan.mult[i] * (np.asarray(sums(alt)) - np.asarray(sums(plan.nodes[i].cost)))
    plan.static_swaps = delta

def run_compiled(plan: PassPlan, chip: Chip, power: PowerState | None,
                 dyn: np.ndarray) -> tuple[float, np.ndarray] | None:
    """One iteration through the compiled pass: its latency (s) and totals (``dyn``
    with the alternatives run); None where it does not apply (the caller then evaluates
    op by op)."""
    compiled = plan.compiled
    assert compiled is not None and plan.static_swaps is not None
    home = chip.memory[chip.home_level]
    for i, _ in plan.attention:
        plan.profiles[i] = node_profile(plan.nodes[i], home)
    out = compiled.run()
    if out is None:
        return None
    end, starts, (c, s, v, ok), swaps = out
    if power is not None:
        if not ok or power.level_j < v:
            return None  # some op slows: the walk op by op decides how
        power.level_j = min(c, power.level_j - s)
    dyn = dyn + plan.static_swaps
    for i, alt in swaps.items():
        dyn += plan.mult[i] * (np.asarray(sums(alt)) - np.asarray(sums(plan.nodes[i].cost)))
    shift = 0.0
    for r in plan.runs:
        if r.simulated < r.repeat:
            a = plan.first_of[(r.pass_index, r.segment_index, 1)]
            b = plan.first_of[(r.pass_index, r.segment_index, 2)]
            shift += (r.repeat - r.simulated) * (starts[b] - starts[a])
    return end + shift, dyn

def full_clock_energies(plan: PassPlan, chip: Chip, log: list) -> tuple[list[float], dict[int, OpCost]]:
    """Each op's energy at full clock, and the ops that run their ``alternative``
    mapping: as the power walk picks, one that fits the op's slot just as well
    (its slot is ``max(duration, duration - busy + its busy)``) and draws less energy."""
    energy = list(plan.energy_j)
    for i, _ in plan.attention:
        energy[i] = full_j(plan.nodes[i].cost)
    swaps: dict[int, OpCost] = {}
    if not plan.alternatives:
        return energy, swaps
    home = chip.memory[chip.home_level]
    bandwidth = home.bandwidth_bytes_per_s * home.achievable_fraction

    def busy_s(cost: OpCost, prefetched: float) -> float:
        home_s = transfer_time_s(home, cost.traffic[-1].bytes) - prefetched / bandwidth
        return cost.overhead_s + max((cost.compute_s, *cost.level_s[:-1], home_s, 0.0))

    for i in plan.alternatives:
        cost = plan.nodes[i].cost
        alt = cost.alternative
        assert alt is not None
        prefetched = log[i][3]
        alt_j = full_j(alt)
        if alt_j < energy[i] and busy_s(alt, prefetched) <= busy_s(cost, prefetched):
            energy[i], swaps[i] = alt_j, alt
    return energy, swaps

def shift_s(plan: PassPlan, log: list) -> float:
    """Time the folded instances of repeated segments add, in s."""
    shift = 0.0
    for r in plan.runs:
        if r.simulated < r.repeat:
            a = plan.first_of[(r.pass_index, r.segment_index, 1)]
            b = plan.first_of[(r.pass_index, r.segment_index, 2)]
            shift += (r.repeat - r.simulated) * (log[b][1] - log[a][1])
    return shift
