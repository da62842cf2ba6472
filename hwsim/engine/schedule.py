"""The SimPy schedule of one workload on one chip.

Each operator is a small generator process: it waits for its predecessors, takes the
compute units (one kernel at a time, as a GPU stream or a TPU core runs them), takes
the home-memory port for the bytes not already prefetched, and holds the units for the
longest of its compute time and its per-level transfer times. When an op releases the
port before it ends (it is compute bound), a prefetch process streams the *next* op's
weights into the level inside the home level, as far as that buffer has room, until
the next op starts.

Collectives (multi-chip plans) take their parallel group's network instead of the
compute units, so communication overlaps compute wherever the graph allows; a
collective marked ``overlap`` (bucketed gradient all-reduce) does not hold up the
layers after it, only the segment that follows the repeated ones (the optimizer). A
transfer marked ``prefetch`` (weights streamed from host or external memory) starts with
its segment instance and the *next* instance waits for it: a double buffer.

Identical repeated layers are folded: at most three instances of a repeated segment are
simulated; from the second on the schedule is periodic (same state at every layer
boundary), so the remaining instances add whole periods. ``fold=False`` simulates all;
so does a segment with overlapped collectives, whose network backlog is not periodic.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import simpy

from hwsim.arch.model import Chip
from hwsim.cost.model import OpCost, transfer_time_s
from hwsim.engine.chain import LogEntry, Profile, is_chain, op_bound, run_chain
from hwsim.engine.eager import fewest_kernels, host_bound_segments
from hwsim.workload.graph import OperatorGraph, Workload
from hwsim.workload.ops import Collective, Op

#: Instances of a repeated segment that are simulated before folding kicks in.
FOLD_AFTER = 3


@dataclass(frozen=True)
class OpRecord:
    """One simulated operator instance (plain data; the recorder appends these)."""

    pass_index: int
    segment_index: int
    instance: int
    name: str
    op: Op
    cost: OpCost
    start_s: float
    end_s: float
    prefetched_bytes: float
    bound: str


@dataclass(frozen=True)
class SegmentRun:
    """How a segment was simulated: instances simulated, repeat and period."""

    pass_index: int
    segment_index: int
    repeat: int
    simulated: int
    period_s: float


@dataclass(frozen=True)
class Schedule:
    """Output of :func:`run_schedule`: records of simulated instances, folding info and
    the total latency (simulated time plus folded periods)."""

    records: tuple[OpRecord, ...]
    segments: tuple[SegmentRun, ...]
    latency_s: float
    pass_end_s: tuple[float, ...]
    pass_names: tuple[str, ...] = ()
    segment_names: tuple[tuple[str, ...], ...] = ()

    def multiplicity(self, rec: OpRecord) -> int:
        """How many op instances a record stands for (folded layers count here)."""
        if rec.instance != 1:
            return 1
        r = self._runs[(rec.pass_index, rec.segment_index)]
        return 1 + (r.repeat - r.simulated)

    @cached_property
    def _runs(self) -> dict[tuple[int, int], SegmentRun]:
        return {(r.pass_index, r.segment_index): r for r in self.segments}


@dataclass
class _Node:
    key: tuple[int, int, int, str]
    op: Op
    cost: OpCost
    preds: list[int]
    launch_s: float = 0.0
    issue_s: float = 0.0


def _instances(
    workload: Workload, fold: bool, unfolded: frozenset[tuple[int, int]] = frozenset()
) -> tuple[list[_Node], list[SegmentRun]]:
    """Flatten passes and segments into simulated op instances in topological order
    (every instance of the ``(pass, segment)`` pairs in ``unfolded``)."""
    nodes: list[_Node] = []
    runs: list[SegmentRun] = []
    prev_sinks: list[int] = []
    pending: list[int] = []  # overlapped collectives not yet waited for
    for p_i, p in enumerate(workload.passes):
        for s_i, seg in enumerate(p.segments):
            order = list(seg.graph.ops())
            overlapped = [n for n, op in order if _overlapped(op)]
            prefetched = [n for n, op in order if _prefetched(op)]
            chained = _sinks_without(seg.graph, set(overlapped) | set(prefetched))
            # Overlapped collectives may queue up on their network from layer to layer,
            # so a segment with them is not periodic: simulate every repeat.
            folds = fold and not overlapped and (p_i, s_i) not in unfolded
            n_sim = min(seg.repeat, FOLD_AFTER) if folds else seg.repeat
            runs.append(SegmentRun(p_i, s_i, seg.repeat, n_sim, 0.0))
            # A segment run once (the optimizer after the layers) waits for the
            # overlapped collectives still in flight; repeated layers do not.
            joins, pending = (pending, []) if seg.repeat == 1 else ([], pending)
            for inst in range(n_sim):
                index: dict[str, int] = {}
                for name, op in order:
                    preds = [index[d] for d in seg.graph.predecessors(name)]
                    if not preds:
                        preds = list(prev_sinks) + joins
                    index[name] = len(nodes)
                    nodes.append(_Node((p_i, s_i, inst, name), op, None, preds))  # type: ignore[arg-type]
                pending += [index[n] for n in overlapped]
                # What follows waits for the last ops that are not overlapped collectives
                # (or, for a segment of only those, for them), and for the prefetches
                # this instance started for it.
                prev_sinks = ([index[n] for n in chained] or [index[n] for n in overlapped]) + [
                    index[n] for n in prefetched]
    return nodes, runs


def flatten(workload: Workload, fold: bool = True) -> tuple[list[_Node], list[SegmentRun]]:
    """The chip-independent flattening of ``workload`` (op instances, no costs), to pass
    to :func:`prepare_nodes` for many chips."""
    return _instances(workload, fold)


def _overlapped(op: Op) -> bool:
    return isinstance(op, Collective) and op.overlap


def _prefetched(op: Op) -> bool:
    return isinstance(op, Collective) and op.prefetch


def _sinks_without(graph: OperatorGraph, skip: set[str]) -> list[str]:
    """Sinks of ``graph`` once the nodes in ``skip`` are removed."""
    return [n for n, _ in graph.ops() if n not in skip and all(m in skip for m in graph.successors(n))]


Flat = tuple[list[_Node], list[SegmentRun]]


def prepare_nodes(workload: Workload, chip: Chip, cost_of: Callable[..., OpCost], fold: bool = True,
                  flat: Flat | None = None, fewest: frozenset[Op] | set[Op] = frozenset(),
                  unfolded: frozenset[tuple[int, int]] = frozenset()) -> Flat:
    """The flattened op instances of ``workload`` with their costs, launch latencies and
    (eager passes) host issue times, and how each segment is folded. ``flat`` is a
    flattening of ``workload`` made earlier (:func:`flatten`), copied, not re-derived;
    ``fewest``: ops of eager passes that run their mapping with the fewest kernels;
    ``unfolded``: segments simulated in full."""
    if flat is None:
        nodes, runs = _instances(workload, fold, unfolded)
    else:
        nodes = [_Node(n.key, n.op, None, n.preds) for n in flat[0]]  # type: ignore[arg-type]
        runs = flat[1]
    first_of_pass: set[int] = set()
    host_s = 0.0  # when the host has issued everything so far (eager passes)
    for node in nodes:
        if workload.passes[node.key[0]].eager:
            node.cost = cost_of(node.op, node.op in fewest)
            host_s += chip.host_dispatch_s * node.cost.n_kernels
            node.issue_s = host_s
        else:
            node.cost = cost_of(node.op, False)
            if node.key[0] not in first_of_pass:
                node.launch_s = chip.launch_overhead_s
        first_of_pass.add(node.key[0])
    return nodes, runs


def evaluate_nodes(nodes: list[_Node], chip: Chip, events: bool | None = None,
                   profiles: list[Profile | None] | None = None) -> tuple[list[LogEntry], float]:
    """Run prepared nodes: directly when they form a chain, else as SimPy processes.
    Returns the log and the time the last activity ended (s). ``profiles`` caches the
    direct path's per-node constants across calls (see :func:`~hwsim.engine.chain.run_chain`)."""
    if events is None:
        events = not is_chain(nodes)
    if not events:
        run = run_chain(nodes, chip, profiles)
        return run.log, run.now
    env = simpy.Environment()
    sim = _Sim(env, chip, nodes)
    for i in range(len(nodes)):
        env.process(sim.op_process(i))
    env.run()
    return sim.log, env.now


def run_schedule(
    workload: Workload, chip: Chip, cost_of: Callable[[Op, bool], OpCost], fold: bool = True,
    events: bool | None = None,
) -> Schedule:
    """Simulate ``workload`` on ``chip`` with op costs from ``cost_of(op, fewest_kernels)``;
    deterministic.

    A workload whose ops run strictly one after another is evaluated directly
    (:mod:`hwsim.engine.chain`); one with concurrent work (overlapped or prefetched
    collectives, parallel branches) runs as SimPy processes. ``events=True`` forces
    the processes, ``False`` the direct path (for chains only).

    In an eager pass (kernels issued by the host one by one, ``host_dispatch_s`` each) an
    op whose best mapping launches more kernels than it must (split-K) may run as its best
    mapping with the fewest kernels instead: :func:`hwsim.engine.eager.fewest_kernels`
    picks, over the pass, what finishes it first.

    A folded segment of an eager pass whose period comes out shorter than the host's time
    to issue one instance runs on a lead the host built up before it (the device catching
    up on kernels issued during longer ones); the lead runs out, so the period is not the
    segment's. Segments whose kernels take the device less time than the host needs to
    issue them are simulated in full from the start; any other found running on a lead is
    simulated again in full.
    """
    fewest = fewest_kernels(workload, chip, cost_of)
    unfolded = host_bound_segments(workload, chip, cost_of, fewest, FOLD_AFTER)
    while True:
        nodes, runs = prepare_nodes(workload, chip, cost_of, fold, fewest=fewest, unfolded=unfolded)
        log, now = evaluate_nodes(nodes, chip, events)
        schedule = fold_schedule(workload, nodes, runs, log, now)
        draining = _draining_segments(workload, chip, nodes, schedule) - unfolded
        if not draining:
            return schedule
        unfolded |= draining


def _draining_segments(workload: Workload, chip: Chip, nodes: list[_Node], schedule: Schedule
                       ) -> frozenset[tuple[int, int]]:
    """Folded segments of eager passes whose period is shorter than the host's issue time
    of one instance (the device was spending the host's lead, which does not last)."""
    issue_s: dict[tuple[int, int], float] = {}
    for node in nodes:
        p_i, s_i, inst, _ = node.key
        if inst == 1 and workload.passes[p_i].eager:
            issue_s[(p_i, s_i)] = issue_s.get((p_i, s_i), 0.0) + chip.host_dispatch_s * node.cost.n_kernels
    return frozenset(
        (r.pass_index, r.segment_index) for r in schedule.segments
        if r.simulated < r.repeat and r.period_s < issue_s.get((r.pass_index, r.segment_index), 0.0)
        * (1 - 1e-9)
    )


class _Sim:
    """State of one run: resources, completion events and the recorder."""

    def __init__(self, env: simpy.Environment, chip: Chip, nodes: list[_Node]) -> None:
        self.env = env
        self.nodes = nodes
        self.compute = simpy.Resource(env, capacity=1)
        self.port = simpy.Resource(env, capacity=1)
        self.links: dict[str, simpy.Resource] = {}  # one network per parallel group
        self.done = [env.event() for _ in nodes]
        self.any_start = env.event()  # replaced each time an op starts
        self.prefetched = [0.0] * len(nodes)
        home = chip.memory[chip.home_level]
        self.home = home
        self.home_bw = home.bandwidth_bytes_per_s * home.achievable_fraction
        names = chip.level_names
        self.buffer_bytes = chip.level_capacity_bytes(names[-2]) if len(names) > 1 else 0.0
        self.log: list[LogEntry] = []

    def op_process(self, i: int) -> Generator[Any, Any, None]:
        env, node = self.env, self.nodes[i]
        if node.preds:
            yield simpy.AllOf(env, [self.done[p] for p in node.preds])
        if node.issue_s > env.now:  # eager: the host has not issued this kernel yet
            yield env.timeout(node.issue_s - env.now)
        if isinstance(node.op, Collective):
            yield from self._communicate(i)
            return
        with self.compute.request() as unit:
            yield unit
            start = env.now
            self.any_start.succeed()
            self.any_start = env.event()
            with self.port.request() as port:
                yield port  # a prefetch into our buffer yields the port at our start
                cost = node.cost
                # Prefetched bytes came in at full bandwidth; the op still pays the ramp.
                full_s = transfer_time_s(self.home, cost.traffic[-1].bytes)
                home_s = max(0.0, full_s - self.prefetched[i] / self.home_bw)
                inner = max(cost.level_s[:-1], default=0.0)
                busy = max(cost.compute_s, inner, home_s)
                bound = op_bound(cost, home_s, inner, node.launch_s)
                yield env.timeout(node.launch_s + cost.overhead_s + home_s)
            if i + 1 < len(self.nodes) and self.buffer_bytes > 0:
                env.process(self.prefetch(i + 1, cost))
            yield env.timeout(max(0.0, busy - home_s))
            self.log.append((i, start, env.now, self.prefetched[i], bound))
        self.done[i].succeed()

    def _communicate(self, i: int) -> Generator[Any, Any, None]:
        """A collective holds its group's network (not the compute units) for its time."""
        env, node = self.env, self.nodes[i]
        op = node.op
        assert isinstance(op, Collective)
        # Links are full duplex: host reads and writes each have their own direction, on
        # each tier's own path (the host CPU's update holds the CPU, not a link).
        lane = f"{op.tier}:{op.op_kind}" if op.group == "host" else op.group
        link = self.links.setdefault(lane, simpy.Resource(env, capacity=1))
        with link.request() as req:
            yield req
            start = env.now
            yield env.timeout(node.launch_s + node.cost.latency_s)
            self.log.append((i, start, env.now, 0.0, "network"))
        self.done[i].succeed()

    def prefetch(self, j: int, running: OpCost) -> Generator[Any, Any, None]:
        """Stream op ``j``'s weights while the op before it computes; stop as soon as
        any op starts (usually ``j``; on a parallel branch possibly another), so the op
        that runs next never waits for a prefetch."""
        want = self.nodes[j].cost.prefetchable_bytes
        room = self.buffer_bytes - min(self.buffer_bytes, running.footprint_bytes)
        budget = min(want, room)
        stop = self.any_start
        if budget <= 0:
            return
        with self.port.request() as port:
            result = yield port | stop
            if port not in result:
                return
            t0 = self.env.now
            yield self.env.timeout(budget / self.home_bw) | stop
            self.prefetched[j] = min(budget, (self.env.now - t0) * self.home_bw)


def fold_schedule(workload: Workload, nodes: list[_Node], runs: list[SegmentRun], log: list[LogEntry],
                  now_s: float) -> Schedule:
    """Records with start times shifted by the folded periods before them."""
    by_index = {i: (start, end, pre, bound) for i, start, end, pre, bound in log}
    first_start: dict[tuple[int, int, int], float] = {}
    for i, node in enumerate(nodes):
        key = node.key[:3]
        first_start.setdefault(key, by_index[i][0])
    periods = {}
    out_runs = []
    for r in runs:
        period = 0.0
        if r.simulated < r.repeat:
            period = first_start[(r.pass_index, r.segment_index, 2)] - first_start[
                (r.pass_index, r.segment_index, 1)]
        periods[(r.pass_index, r.segment_index)] = period
        out_runs.append(SegmentRun(r.pass_index, r.segment_index, r.repeat, r.simulated, period))
    records = []
    shift = 0.0
    pass_end: dict[int, float] = {}
    run_iter = {(r.pass_index, r.segment_index): r for r in out_runs}
    current = None
    for i, node in enumerate(nodes):
        p_i, s_i, inst, name = node.key
        if current is not None and current != (p_i, s_i):
            prev = run_iter[current]
            shift += (prev.repeat - prev.simulated) * prev.period_s
        current = (p_i, s_i)
        start, end, pre, bound = by_index[i]
        # Instances from the last simulated one on stand for the folded ones too;
        # the last simulated instance is moved to the end of the folded run.
        run = run_iter[(p_i, s_i)]
        extra = (run.repeat - run.simulated) * run.period_s if inst == run.simulated - 1 else 0.0
        records.append(OpRecord(p_i, s_i, inst, name, node.op, node.cost, start + shift + extra,
                                end + shift + extra, pre, bound))
        pass_end[p_i] = max(pass_end.get(p_i, 0.0), end + shift + extra)
    if current is not None:
        last = run_iter[current]
        shift += (last.repeat - last.simulated) * last.period_s
    latency = now_s + shift
    ends = tuple(pass_end[p] for p in sorted(pass_end))
    return Schedule(tuple(records), tuple(out_runs), latency, ends,
                    tuple(p.name for p in workload.passes),
                    tuple(tuple(s.name for s in p.segments) for p in workload.passes))
