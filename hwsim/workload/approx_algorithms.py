"""Approximate attention algorithms as options on a workload's attention ops.

Each replaces exact softmax attention by an algorithm with its own FLOPs and bytes
(costed by :mod:`hwsim.cost.approx_algorithms`), unlike the research designs of
:mod:`hwsim.workload.pruning`, which keep exact attention over fewer tokens:

- ``topk`` (Gupta et al., "Memory-efficient Transformers via Top-k Attention", 2021):
  every score is computed, each query keeps its ``k`` largest, softmax and values over
  those only.
- ``linformer`` (Wang et al., 2020, arXiv:2006.04768): keys and values projected along
  the sequence to ``rank`` rows (E K, F V); attention against the projections.
- ``performer`` (Choromanski et al., ICLR 2021, FAVOR+): queries and keys mapped to
  ``features`` positive random features; attention as phi(Q) (phi(K)^T V), linear in length.
- ``reformer`` (Kitaev et al., ICLR 2020): ``rounds`` of LSH hashing into ``buckets``
  buckets (random rotations), sort by bucket, attention within each chunk and the previous
  one (chunks of ``kv_len / buckets`` keys).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from hwsim.errors import ConfigError
from hwsim.workload.graph import OperatorGraph, Workload
from hwsim.workload.ops import Attention

#: Each kind's parameters (all positive integers) and their defaults (None: required).
KINDS: dict[str, dict[str, int | None]] = {
    "topk": {"k": None},
    "linformer": {"rank": None},
    "performer": {"features": None},
    "reformer": {"buckets": None, "rounds": 1},
}


@dataclass(frozen=True)
class ApproxAlgorithm:
    """One approximate-attention algorithm and its parameter(s) (module docstring).

    Parameters
    ----------
    kind : {"topk", "linformer", "performer", "reformer"}
    k : int
        top-k: keys kept per query.
    rank : int
        Linformer: rows of the projected keys and values.
    features : int
        Performer: random features per query and key.
    buckets, rounds : int
        Reformer: LSH buckets per round (even: a random rotation to ``buckets / 2``
        dimensions and its negation) and hashing rounds.
    """

    kind: str
    k: int = 0
    rank: int = 0
    features: int = 0
    buckets: int = 0
    rounds: int = 1

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ConfigError([f"attention_approx: {p}" for p in problems])

    def problems(self) -> list[str]:
        """Everything wrong with these settings (empty if nothing)."""
        if self.kind not in KINDS:
            return [f"kind: unknown {self.kind!r}; expected one of {', '.join(KINDS)}"]
        out = []
        for name in KINDS[self.kind]:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                out.append(f"{name}: {self.kind} needs a positive integer, got {value!r}")
        if self.kind == "reformer" and not out and self.buckets % 2:
            out.append(f"buckets: LSH by random rotation needs an even count, got {self.buckets}")
        return out

    def label(self) -> str:
        """Short description for results and cost details."""
        params = ", ".join(f"{n} {getattr(self, n)}" for n in KINDS[self.kind])
        return f"{self.kind} ({params})"


def parse_algorithm(value: Any, source: str = "attention_approx") -> ApproxAlgorithm:
    """An :class:`ApproxAlgorithm` from a mapping such as ``{"kind": "linformer",
    "rank": 256}`` (or an ApproxAlgorithm); anything else is refused, naming ``source``."""
    if isinstance(value, ApproxAlgorithm):
        return value
    if not isinstance(value, dict) or "kind" not in value:
        raise ConfigError([f"{source}: expected a mapping with a 'kind' "
                           f"({', '.join(KINDS)}) and its parameters, got {value!r}"])
    kind = value["kind"]
    if kind not in KINDS:
        raise ConfigError([f"{source}.kind: unknown {kind!r}; expected one of {', '.join(KINDS)}"])
    params = KINDS[kind]
    unknown = sorted(set(value) - {"kind", *params})
    missing = [n for n, default in params.items() if default is None and n not in value]
    problems = [f"{source}.{n}: not a {kind} parameter (it takes {', '.join(params)})" for n in unknown]
    problems += [f"{source}.{n}: {kind} needs it" for n in missing]
    if problems:
        raise ConfigError(problems)
    fields: dict[str, Any] = {n: value.get(n, default) for n, default in params.items()}
    try:
        return ApproxAlgorithm(kind, **fields)
    except ConfigError as exc:
        raise ConfigError([p.replace("attention_approx", source, 1) for p in exc.problems]) from None


def _graph_with(graph: OperatorGraph, algo: ApproxAlgorithm) -> OperatorGraph:
    out = OperatorGraph()
    for name, op in graph.ops():
        if isinstance(op, Attention):
            if op.backward:
                raise ConfigError([f"attention_approx: {name}: {algo.kind} is costed for inference; "
                                   "backward attention is not modelled"])
            if op.window is not None or op.chunk is not None or op.key_density < 1.0 or op.approx:
                raise ConfigError([f"attention_approx: {name}: {algo.kind} replaces the attention "
                                   "pattern; combining it with a window, chunk, block-sparse mask or "
                                   "a research design's pruning is not modelled"])
            op = replace(op, algorithm=algo)
        out.add_op(name, op, list(graph.predecessors(name)))
    return out


def apply_algorithm(workload: Workload, value: Any) -> Workload:
    """``workload`` with every attention op computed by the algorithm ``value`` names
    (a mapping or :class:`ApproxAlgorithm`); its warnings say what is assumed."""
    algo = parse_algorithm(value)
    passes = []
    causal = False
    for p in workload.passes:
        segments = []
        for s in p.segments:
            causal = causal or any(isinstance(op, Attention) and op.is_causal for _, op in s.graph.ops())
            segments.append(replace(s, graph=_graph_with(s.graph, algo)))
        passes.append(replace(p, segments=tuple(segments)))
    notes = [f"attention approximated by {algo.label()}: FLOPs and bytes from the algorithm, "
             "its kernels run in series (no fusion of the approximation's steps is assumed); "
             "runs as lowered, op by op"]
    if causal and algo.kind == "linformer":
        notes.append("linformer under a causal mask: the paper's projection mixes all keys; costed "
                     "as a projected K/V cache updated with each pass's new keys")
    # The replica engine re-lowers exact attention from the spec: drop it (as
    # hwsim.workload.pruning does) so the approximated ops are what runs.
    return replace(workload, passes=tuple(passes), spec=None, lower_args={},
                   params=workload.params | {"attention_approx": algo.label()},
                   warnings=(*workload.warnings, *notes))


__all__ = ["KINDS", "ApproxAlgorithm", "apply_algorithm", "parse_algorithm"]
