"""Operator graphs and workloads.

An :class:`OperatorGraph` is a networkx DAG whose nodes are op names carrying an ``op``
attribute (a frozen operator from :mod:`hwsim.workload.ops`). A transformer repeats one
layer many times, so a :class:`Workload` is kept compact: a list of :class:`Pass` es
(prefill, each decode step, a training step), each a list of :class:`Segment` s, each a
small graph with a repeat count. :meth:`Workload.to_graph` expands it into the full DAG.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from hwsim.workload.ops import Op


class OperatorGraph(nx.DiGraph):  # type: ignore[type-arg]
    """A DAG of operators; node ``name`` has attribute ``op``."""

    def add_op(self, name: str, op: Op, after: tuple[str, ...] | list[str] = ()) -> str:
        """Add operator ``op`` as node ``name`` depending on the nodes in ``after``."""
        if name in self:
            raise ValueError(f"duplicate op name {name!r}")
        self._order: list[tuple[str, Op]] | None = None
        self.add_node(name, op=op)
        for dep in after:
            if dep not in self:
                raise ValueError(f"op {name!r} depends on unknown op {dep!r}")
            self.add_edge(dep, name)
        return name

    def ops(self) -> Iterator[tuple[str, Op]]:
        """(name, op) in a deterministic topological order (insertion order breaks ties)."""
        order = getattr(self, "_order", None)
        if order is None:
            order = [(n, self.nodes[n]["op"])
                     for n in nx.lexicographical_topological_sort(self, key=self._order_key)]
            self._order = order
        return iter(order)

    def _order_key(self, name: str) -> int:
        return int(self._insertion[name]) if hasattr(self, "_insertion") else 0

    def add_node(self, node_for_adding: Any, **attr: Any) -> None:  # keep insertion order
        if not hasattr(self, "_insertion"):
            self._insertion: dict[str, int] = {}
        self._insertion.setdefault(node_for_adding, len(self._insertion))
        self._order = None
        super().add_node(node_for_adding, **attr)

    def add_edge(self, u_of_edge: Any, v_of_edge: Any, **attr: Any) -> None:
        self._order = None
        super().add_edge(u_of_edge, v_of_edge, **attr)

    @property
    def sources(self) -> list[str]:
        return [n for n, _ in self.ops() if self.in_degree(n) == 0]

    @property
    def sinks(self) -> list[str]:
        return [n for n, _ in self.ops() if self.out_degree(n) == 0]


class SegmentRole(enum.Enum):
    """What a segment is in its pass; the public API times and scales segments by role
    (the embedding runs on the first pipeline stage only, the layers on every stage...).
    The values are the names users see for the one-segment-per-role models."""

    EMBED = "embed"
    LAYER = "layer"
    HEAD = "head"
    LOSS = "loss"
    LAYER_BWD = "layer_bwd"
    EMBED_BWD_OPTIMIZER = "embed_bwd_optimizer"
    OP = "op"


@dataclass(frozen=True)
class Segment:
    """A graph executed ``repeat`` times back to back (e.g. one decoder layer x 32).

    A segment of ``role`` :attr:`SegmentRole.LAYER` may hold several consecutive layers
    (one period of a local/global or dense/MoE pattern): ``layers`` is then the number
    of model layers one repeat stands for.
    """

    name: str
    graph: OperatorGraph
    repeat: int = 1
    role: SegmentRole = SegmentRole.OP
    layers: int = 1


@dataclass(frozen=True)
class Pass:
    """One forward pass, decode step or training step: segments run in order."""

    name: str
    segments: tuple[Segment, ...]
    tokens: int = 0
    """Tokens this pass processes (prefill: B x P, decode: B, train: B x S)."""
    eager: bool = False
    """Kernels are issued one by one by the host (no graph capture), so none starts
    before the host has issued it (see ``Chip.host_dispatch_s``)."""


@dataclass(frozen=True)
class Workload:
    """A lowered workload: passes run in order, plus what must stay resident in memory.

    Attributes
    ----------
    name : str
        Model or operator name.
    phase : str
        ``prefill``, ``decode``, ``request``, ``train`` or ``op``.
    passes : tuple of Pass
        Executed in order; a request is a prefill pass then one pass per decode step.
    resident_bytes : dict
        Bytes that must stay in the outermost memory (``weights_bytes``,
        ``kv_cache_bytes``, ``activations_bytes``, ``gradients_bytes``,
        ``optimizer_state_bytes``).
    params : dict
        The parameters it was lowered with (batch, lengths, dtype, n_layers...).
    spec, lower_args : optional
        The model spec and keyword arguments it was lowered from, so that it can be
        lowered again under another parallelism plan.
    plan : Plan, optional
        The parallelism plan: the passes are then what *one chip* runs (one pipeline
        stage's layers for one micro-batch when ``plan.pp > 1``).
    """

    name: str
    phase: str
    passes: tuple[Pass, ...]
    resident_bytes: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    spec: Any = None
    lower_args: dict[str, Any] = field(default_factory=dict)
    plan: Any = None
    precision: Any = None
    """The :class:`~hwsim.workload.precision.Precision` its graphs were quantized with
    (``None``: one dtype for every tensor, ``params["dtype"]``)."""
    warnings: tuple[str, ...] = ()
    """What was simplified or assumed while lowering (printed by the CLI; ``--strict`` refuses)."""
    iteration_cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    """The engine's memo of this model's lowered iteration passes (chip-independent), so
    simulating one workload on many chips lowers each pass once."""

    @property
    def n_ops(self) -> int:
        """Operators in the fully expanded workload."""
        return sum(s.repeat * s.graph.number_of_nodes() for p in self.passes for s in p.segments)

    @property
    def flops(self) -> float:
        """Total FLOP of the expanded workload."""
        return sum(
            s.repeat * sum(op.flops for _, op in s.graph.ops())
            for p in self.passes
            for s in p.segments
        )

    def to_graph(self) -> OperatorGraph:
        """Expand every pass and segment repeat into one DAG (names get ``/pass/i``)."""
        full = OperatorGraph()
        prev_sinks: list[str] = []
        for p in self.passes:
            for seg in p.segments:
                for i in range(seg.repeat):
                    prefix = f"{p.name}/{seg.name}" + (f"{i}" if seg.repeat > 1 else "")
                    for name, op in seg.graph.ops():
                        preds = [f"{prefix}/{d}" for d in seg.graph.predecessors(name)]
                        if seg.graph.in_degree(name) == 0:
                            preds = list(prev_sinks)
                        full.add_op(f"{prefix}/{name}", op, preds)
                    prev_sinks = [f"{prefix}/{n}" for n in seg.graph.sinks]
        return full
