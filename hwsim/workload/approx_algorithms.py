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

from dataclasses import replace
from typing import Any

from hwsim.errors import ConfigError
from hwsim.workload.approx import KINDS, ApproxAlgorithm, parse_algorithm  # noqa: F401 - re-exported
from hwsim.workload.graph import OperatorGraph, Workload
from hwsim.workload.ops import Attention


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
