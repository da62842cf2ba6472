"""Collectives as costed operations: alpha-beta closed forms on a system's fabrics.

A :class:`~hwsim.workload.ops.Collective` over ``group_size`` chips at rank ``stride``
is placed with :meth:`~hwsim.arch.system.System.group_levels`; every legal algorithm is
costed in closed form and the fastest is returned (or the one asked for). Each level of
the placement (a switch, a ring, one torus dimension) offers the group:

- a *ring bandwidth* per chip per direction: the port bandwidth into a switch; twice the
  link bandwidth on a ring closed by wraparound (a bidirectional ring sends half the data
  each way); once on an open line (mesh, or part of a torus dimension);
- a hop latency ``alpha``; hops of ``step`` links where interleaved groups share them
  (the bandwidth is then shared ``step`` ways too, as all such groups run at once).

Algorithms (``S`` = ``op.n_bytes``, ``p`` members, ``B`` the ring bandwidth):

- ``ring`` all-reduce ``2(p-1) alpha + 2(p-1)/p S/B``; all-gather and reduce-scatter half that;
- ``tree`` (NCCL double binary tree) ``2 ceil(log2 p) alpha_tree + 2 S/B``; a tree edge may
  cross the group's diameter on a ring or torus;
- ``in_switch`` (a switch that reduces, NVLink SHARP) ``alpha_switch + S/B_reduce``, where
  ``alpha_switch`` is the fabric's ``in_network_reduction_latency_s`` (two hops by default);
- ``dimension_ordered`` (one torus or mesh) / ``hierarchical`` (several fabrics): reduce-
  scatter on each level in turn, the data shrinking by that level's members, the best
  all-reduce on the last, all-gather back; phases add up;
- ``pipelined``: the same phases on chunks, overlapped because each level has its own
  links: latencies add, the busiest level sets the bandwidth term (NCCL's multi-channel
  rings across nodes; [SB-GPU]'s ``max`` over levels);
- ``multi_axis`` (one torus or mesh): the buffer split in one shard per spanned
  dimension, each shard visiting the dimensions in a rotated order, so all dimensions'
  links work at once ([SB-TPU]);
- ``direct`` all-to-all: ``(p-1) alpha`` plus the slowest level's bound: injection on a
  switch, injection or bisection (``p S/4`` bytes cross each way) on a ring, torus or mesh;
- ``p2p`` send/recv between neighbouring pipeline stages: ``alpha + S/B_port`` on the
  slowest level the group spans.

Every call also pays its fabric's ``collective_latency_s`` once (the kernel starting on every
member and its completion: NCCL's base latency), the largest of the spanned levels' where
the group spans several; 0 by default, which leaves the forms above as they are.

Energy is link energy only: bytes times hops times ``energy_pj_per_bit``, all members.

Host transfers (``host_read``, ``host_write``) move one chip's bytes over its own link to
the system's ``external_memory`` (a weight-streaming appliance) or else its ``host``
memory: ``latency + S/B`` at that memory's per-chip bandwidth, ``S`` times its energy
per byte.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from hwsim.arch.system import GroupLevel, System
from hwsim.workload.ops import Collective

_J_PER_PJ_BIT = 8e-12
"""Joules per byte per pJ/bit."""


@dataclass(frozen=True)
class CollectiveCost:
    """Cost of one collective on a system.

    Attributes
    ----------
    latency_s : float
        Time from the first member starting to the last finishing, in s.
    link_bytes : float
        Bytes each member sends over links, in B (a ring all-reduce: ``2(p-1)/p S``).
    energy_j : float
        Link energy of all members together, in J.
    algorithm : str
        The algorithm costed (``none`` for a group of one).
    fabric : str
        Name(s) of the fabric(s) used, innermost first, joined by ``+``.
    """

    latency_s: float
    link_bytes: float
    energy_j: float
    algorithm: str
    fabric: str


class _Part(NamedTuple):
    """An algorithm's or a phase's cost: latency and transfer terms, per-member bytes and J."""

    alpha_s: float
    beta_s: float
    link_bytes: float
    energy_j: float

    @property
    def time_s(self) -> float:
        return self.alpha_s + self.beta_s


@dataclass(frozen=True)
class _Level:
    """What one spanned level offers the group (bandwidths achievable, per direction)."""

    fabric: str
    is_switch: bool
    m: int
    alpha_s: float
    tree_alpha_s: float
    ring_bw: float
    inj_bw: float
    bis_bw: float
    p2p_bw: float
    reduce_bw: float  # in-switch all-reduce bandwidth, 0 when the switch cannot reduce
    hop_j: float  # J per byte over one logical hop
    peer_j: float  # J per byte to an average peer
    call_s: float = 0.0  # fixed time of one collective call on this fabric
    switch_alpha_s: float = 0.0  # fixed time of an in-switch all-reduce beyond the call's


def _level(g: GroupLevel) -> _Level:
    f, m, s = g.fabric, g.members, g.step
    port = f.port_bytes_per_s * f.link.achievable_fraction
    alpha, call = f.link.latency_s, f.collective_latency_s
    j_hop = f.link.energy_pj_per_bit * _J_PER_PJ_BIT
    if g.fabric.topology == "full_mesh":  # own links to each of the m - 1 peers, used at once
        every = (m - 1) * port
        return _Level(f.name, True, m, alpha, alpha, every, every, m // 2 * (m - m // 2) * port, port, 0.0,
                      j_hop, j_hop, call)
    if g.is_switch:  # non-blocking: placement does not matter
        reduce_bw = port * f.in_network_reduction_fraction if f.in_network_reduction else 0.0
        return _Level(f.name, True, m, alpha, alpha, port, port, m // 2 * port, port, reduce_bw, j_hop, j_hop,
                      call, f.in_switch_latency_s)
    closed = g.is_closed_ring
    ways = 2 if closed else 1
    if closed:
        mean_hops = sum(min(d, m - d) for d in range(1, m)) / (m - 1)
        diameter = m // 2
    else:
        mean_hops, diameter = (m + 1) / 3, m - 1
    return _Level(
        f.name, False, m, alpha * s, alpha * s * diameter,
        ring_bw=ways * port / s, inj_bw=(2 if m > 2 else 1) * port / s, bis_bw=ways * port / s,
        p2p_bw=port / s, reduce_bw=0.0, hop_j=j_hop * s, peer_j=j_hop * s * mean_hops, call_s=call,
    )


def _flat(levels: list[_Level]) -> _Level:
    """The group seen as one level: slowest bandwidth, largest hop latency."""
    p = math.prod(lv.m for lv in levels)
    # A ring in rank order crosses level k on a fraction of its edges (the wrap of all below).
    hop_j, below = 0.0, 1
    for k, lv in enumerate(levels):
        share = 1 / below if k == len(levels) - 1 else 1 / below - 1 / (below * lv.m)
        hop_j += share * lv.hop_j
        below *= lv.m
    tree_alpha: dict[str, float] = {}
    for lv in levels:  # a tree edge may cross every dimension of a torus
        tree_alpha[lv.fabric] = tree_alpha.get(lv.fabric, 0.0) + lv.tree_alpha_s
    return _Level(
        _fabric_names(levels), False, p, max(lv.alpha_s for lv in levels), max(tree_alpha.values()),
        min(lv.ring_bw for lv in levels), min(lv.inj_bw for lv in levels),
        min(lv.bis_bw for lv in levels), min(lv.p2p_bw for lv in levels), 0.0, hop_j, hop_j,
        max(lv.call_s for lv in levels),
    )


def _fabric_names(levels: list[_Level]) -> str:
    return "+".join(dict.fromkeys(lv.fabric for lv in levels))


# Single-level algorithms -------------------------------------------------------------


def _ring_half(lv: _Level, n_bytes: float) -> _Part:
    """Ring reduce-scatter or all-gather of ``n_bytes`` (the full buffer) over one level."""
    frac = (lv.m - 1) / lv.m
    sent = frac * n_bytes
    return _Part((lv.m - 1) * lv.alpha_s, sent / lv.ring_bw, sent, sent * lv.hop_j)


def _twice(part: _Part) -> _Part:
    return _Part(*(2 * x for x in part))


def _all_reduce_options(lv: _Level, n_bytes: float) -> dict[str, _Part]:
    options = {
        "ring": _twice(_ring_half(lv, n_bytes)),
        "tree": _Part(2 * math.ceil(math.log2(lv.m)) * lv.tree_alpha_s, 2 * n_bytes / lv.ring_bw,
                      2 * n_bytes, 2 * n_bytes * lv.hop_j),
    }
    if lv.reduce_bw > 0:  # each member sends its buffer once and receives the sum once
        options["in_switch"] = _Part(lv.switch_alpha_s, n_bytes / lv.reduce_bw, n_bytes, n_bytes * lv.hop_j)
    return options


def _fastest(options: dict[str, _Part]) -> tuple[str, _Part]:
    return min(options.items(), key=lambda item: item[1].time_s)  # first wins a tie


# Multi-level compositions -------------------------------------------------------------


def _chain(levels: list[_Level], n_bytes: float, twice: bool, top_all_reduce: bool) -> list[_Part]:
    """Phases of the level-by-level composition: a ring reduce-scatter (and, ``twice``, the
    all-gather back) on each level, the buffer shrinking by each level's members; with
    ``top_all_reduce`` the last level runs its fastest all-reduce instead."""
    parts, size = [], n_bytes
    for k, lv in enumerate(levels):
        if top_all_reduce and k == len(levels) - 1:
            parts.append(_fastest(_all_reduce_options(lv, size))[1])
        else:
            half = _ring_half(lv, size)
            parts.append(_twice(half) if twice else half)
        size /= lv.m
    return parts


def _in_sequence(parts: list[_Part]) -> _Part:
    return _Part(*(sum(col) for col in zip(*parts, strict=True)))


def _pipelined(parts: list[_Part]) -> _Part:
    total = _in_sequence(parts)
    return total._replace(beta_s=max(p.beta_s for p in parts))


def _multi_axis(levels: list[_Level], n_bytes: float, twice: bool) -> _Part:
    n = len(levels)
    beta, alpha, sent, energy = [0.0] * n, 0.0, 0.0, 0.0
    for first in range(n):
        order = [(first + i) % n for i in range(n)]
        parts = _chain([levels[i] for i in order], n_bytes / n, twice, top_all_reduce=False)
        for i, part in zip(order, parts, strict=True):
            beta[i] += part.beta_s
            sent += part.link_bytes
            energy += part.energy_j
        alpha = max(alpha, sum(p.alpha_s for p in parts))
    return _Part(alpha, max(beta), sent, energy)


def _one_torus(levels: list[_Level]) -> bool:
    return len({lv.fabric for lv in levels}) == 1 and not levels[0].is_switch


def _reduction_options(levels: list[_Level], n_bytes: float, all_reduce: bool) -> dict[str, _Part]:
    if len(levels) == 1:
        if all_reduce:
            return _all_reduce_options(levels[0], n_bytes)
        return {"ring": _ring_half(levels[0], n_bytes)}
    flat = _flat(levels)
    options = _all_reduce_options(flat, n_bytes) if all_reduce else {"ring": _ring_half(flat, n_bytes)}
    chain = _chain(levels, n_bytes, twice=all_reduce, top_all_reduce=all_reduce)
    options["dimension_ordered" if _one_torus(levels) else "hierarchical"] = _in_sequence(chain)
    options["pipelined"] = _pipelined(chain)
    if _one_torus(levels):
        options["multi_axis"] = _multi_axis(levels, n_bytes, twice=all_reduce)
    return options


def _all_to_all_options(levels: list[_Level], n_bytes: float) -> dict[str, _Part]:
    p = math.prod(lv.m for lv in levels)

    def bound_s(lv: _Level) -> float:
        injection = (lv.m - 1) / lv.m * n_bytes / lv.inj_bw
        if lv.is_switch:
            return injection
        return max(injection, lv.m * n_bytes / 4 / lv.bis_bw)  # half the data of half the chips

    energy = sum((lv.m - 1) / lv.m * n_bytes * lv.peer_j for lv in levels)
    part = _Part((p - 1) * max(lv.alpha_s for lv in levels), max(bound_s(lv) for lv in levels),
                 (p - 1) / p * n_bytes, energy)
    return {"direct": part}


def _send_recv(levels: list[_Level], n_bytes: float) -> tuple[_Part, str]:
    parts = [
        (_Part(lv.alpha_s, n_bytes / lv.p2p_bw, n_bytes, n_bytes * lv.hop_j), lv.fabric) for lv in levels
    ]
    return max(parts, key=lambda item: item[0].time_s)  # the pipeline runs at its slowest hop


_OPTIONS: dict[str, Callable[[list[_Level], float], dict[str, _Part]]] = {
    "all_reduce": lambda levels, n: _reduction_options(levels, n, all_reduce=True),
    "all_gather": lambda levels, n: _reduction_options(levels, n, all_reduce=False),
    "reduce_scatter": lambda levels, n: _reduction_options(levels, n, all_reduce=False),
    "all_to_all": _all_to_all_options,
}


def _options(system: System, op: Collective, stride: int) -> dict[str, tuple[_Part, str]]:
    levels = [_level(g) for g in system.group_levels(op.group_size, stride)]
    # One call, one kernel on every member: its fixed time is paid once, not per phase or level.
    call_s = max(lv.call_s for lv in levels)
    if op.op_kind == "send_recv":
        part, fabric = _send_recv(levels, op.n_bytes)
        return {"p2p": (part._replace(alpha_s=part.alpha_s + call_s), fabric)}
    names = _fabric_names(levels)
    return {
        name: (part._replace(alpha_s=part.alpha_s + call_s), names)
        for name, part in _OPTIONS[op.op_kind](levels, op.n_bytes).items()
    }


def _cost(name: str, part: _Part, fabric: str, group_size: int) -> CollectiveCost:
    return CollectiveCost(part.time_s, part.link_bytes, part.energy_j * group_size, name, fabric)


def collective_options(system: System, op: Collective, stride: int = 1) -> dict[str, CollectiveCost]:
    """Every legal algorithm for ``op`` on ``system`` and its cost (empty for a group of one)."""
    if op.group_size == 1:
        return {}
    return {
        name: _cost(name, part, fabric, op.group_size)
        for name, (part, fabric) in _options(system, op, stride).items()
    }


def collective_cost(
    system: System, op: Collective, stride: int = 1, algorithm: str | None = None
) -> CollectiveCost:
    """Alpha-beta cost of ``op`` over its group placed at rank ``stride`` on ``system``.

    Parameters
    ----------
    system : System
        Chips and fabrics; the group is placed with :meth:`System.group_levels`.
    op : Collective
        The collective; ``op.n_bytes`` as documented on :class:`Collective`.
    stride : int
        Rank distance between consecutive group members (:attr:`Plan.strides`).
    algorithm : str, optional
        Force one algorithm (see the module docstring); default: the fastest legal one.
        ``hierarchical`` and ``dimension_ordered`` name the same composition.

    Raises
    ------
    ValueError
        If the group does not fit the system, or ``algorithm`` is not legal for it.
    """
    if op.group == "host":
        raise ValueError("a host transfer is not a collective: cost it with hwsim.cost.host.host_cost")
    if op.group_size == 1:
        return CollectiveCost(0.0, 0.0, 0.0, "none", "")
    options = _options(system, op, stride)
    if algorithm is None:
        name = min(options, key=lambda k: options[k][0].time_s)
    else:
        aliases = {"hierarchical": "dimension_ordered", "dimension_ordered": "hierarchical"}
        name = algorithm if algorithm in options else aliases.get(algorithm, algorithm)
        if name not in options:
            raise ValueError(
                f"{op.op_kind} over {op.group_size} chips (stride {stride}) on '{system.name}' cannot use "
                f"algorithm {algorithm!r}; legal: {', '.join(options)}"
            )
    part, fabric = options[name]
    return _cost(name, part, fabric, op.group_size)


def bus_bandwidth_bytes_per_s(op: Collective, cost: CollectiveCost) -> float:
    """NCCL's "bus bandwidth" (nccl-tests convention), in B/s.

    ``S / t`` times ``2(p-1)/p`` for all-reduce, ``(p-1)/p`` for all-gather,
    reduce-scatter and all-to-all, 1 for send/recv; 0 for a free collective.
    """
    if cost.latency_s <= 0:
        return 0.0
    p = op.group_size
    factor = {"all_reduce": 2 * (p - 1) / p, "send_recv": 1.0}.get(op.op_kind, (p - 1) / p)
    return op.n_bytes / cost.latency_s * factor
