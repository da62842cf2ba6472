"""Attention approximations of research accelerators, as options on a workload's attention.

Each design keeps only part of an attention's work and pays a selection unit for
choosing what to keep (see :mod:`hwsim.cost.approx_attention` for the costs):

- **SpAtten** (Wang, Zhang, Han, HPCA 2021): *cascade token pruning* (a layer keeps a
  fraction ``token_keep`` of the tokens, and a token pruned once stays pruned, so the
  fractions never rise from layer to layer), *cascade head pruning* (``head_keep``), a
  top-k engine that ranks accumulated attention probabilities (``selection="topk"``), and
  *progressive quantization*: K and V are fetched as ``msb_bits`` first and the
  ``lsb_bits`` re-fetched (and attention recomputed) for a ``refetch_fraction`` of them
  where the softmax is not confident.
- **A3** (Ham et al., HPCA 2020): approximate attention by candidate selection: a greedy
  search over column-sorted keys picks candidates; only a fraction ``score_keep`` of the
  keys is scored exactly (``selection="a3"``; ``search_fraction`` of the keys is walked).
- **ELSA** (Ham et al., ISCA 2021): sign-random-projection hashes (``hash_bits``) and key
  norms estimate every score cheaply; keys under a threshold are filtered out, a fraction
  ``score_keep`` kept (``selection="elsa"``).
- **Sanger** (Lu et al., MICRO 2021): a low-precision (``predict_bits``) prediction of the
  score matrix is thresholded into a sparse mask; ``score_keep`` is the mask's density
  (``selection="sanger"``).

An :class:`AttentionApprox` holds the fractions for a whole model (a fraction or one per
layer); :func:`approximate_attention` attaches each layer's scalar version to that
layer's :class:`~hwsim.workload.ops.Attention` ops. Keeping everything (all fractions 1,
no progressive quantization) leaves the workload exactly as it was.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hwsim.dtypes import dtype_bytes
from hwsim.errors import ConfigError
from hwsim.workload.approx import (  # noqa: F401 - re-exported: the spec and its helpers
    SELECTIONS,
    AttentionApprox,
    _pick,
    cascade_schedule,
    parse_approx,
)
from hwsim.workload.graph import OperatorGraph, Segment, SegmentRole, Workload
from hwsim.workload.ops import Attention


def _with_approx(graph: OperatorGraph, approx_of: Any) -> OperatorGraph:
    """A copy of ``graph`` whose k-th attention op carries ``approx_of(k)``."""
    out = OperatorGraph()
    k = 0
    for name, op in graph.ops():
        if isinstance(op, Attention):
            if op.backward:
                raise ConfigError([f"attention_approx: {name}: approximate attention is an inference "
                                   "technique; backward attention is not modelled"])
            op = replace(op, approx=approx_of(k))
            k += 1
        out.add_op(name, op, list(graph.predecessors(name)))
    return out


def _check_bits(workload: Workload, approx: AttentionApprox) -> None:
    if not approx.msb_bits:
        return
    for p in workload.passes:
        for s in p.segments:
            for _, op in s.graph.ops():
                bits = approx.msb_bits + approx.lsb_bits
                if isinstance(op, Attention) and bits > 8 * dtype_bytes(op.dtype):
                    raise ConfigError([f"attention_approx: msb_bits + lsb_bits = {bits} exceed the "
                                       f"{op.dtype} "
                                       f"K/V elements' {8 * dtype_bytes(op.dtype):g} bits"])


def approximate_attention(workload: Workload, approx: Any) -> Workload:
    """``workload`` with every attention op approximated as ``approx`` says (an
    :class:`AttentionApprox` or a mapping of its fields); per-layer fractions follow the
    layer order of the workload's layer segments.

    The result runs as lowered, op by op (the replica engine would re-lower the model
    from its spec and drop the approximation), so it carries no spec; its warnings say
    so. Token pruning is applied to the attention only: the projections and FFN of
    pruned tokens are still costed, as on an accelerator that runs attention alone.

    Raises
    ------
    ConfigError
        For bad settings, a training workload, a parallelism plan, or per-layer
        fractions whose count differs from the workload's layers.
    """
    approx = parse_approx(approx)
    if approx.is_dense:
        return workload
    if workload.phase == "train":
        raise ConfigError(["attention_approx: training steps are not modelled (inference only)"])
    if workload.plan is not None:
        raise ConfigError(["attention_approx: workloads lowered with a parallelism plan are not modelled; "
                           "approximate a single-chip workload"])
    _check_bits(workload, approx)
    want = approx.n_layers_given()
    passes = []
    for p in workload.passes:
        segments: list[Segment] = []
        layer = 0
        for s in p.segments:
            if s.role is not SegmentRole.LAYER and s.role is not SegmentRole.OP:
                segments.append(s)
                continue
            n_attn = sum(isinstance(op, Attention) for _, op in s.graph.ops())
            span = s.layers if n_attn == s.layers else 1  # layers one repeat stands for
            if want is None:
                segments.append(replace(s, graph=_with_approx(s.graph, lambda _k: approx.at_layer(0))))
            else:
                for r in range(s.repeat):
                    first = layer + r * span
                    if first + span > want:
                        raise ConfigError([f"attention_approx: per-layer fractions give {want} layers; "
                                           f"the workload has more"])
                    graph = _with_approx(s.graph,
                                         lambda k, f=first, n=span: approx.at_layer(f + min(k, n - 1)))
                    segments.append(replace(s, name=f"{s.name}.{r}", graph=graph, repeat=1))
            layer += s.repeat * span
        if want is not None and layer != want:
            raise ConfigError([f"attention_approx: per-layer fractions give {want} layers; "
                               f"pass {p.name} has {layer}"])
        passes.append(replace(p, segments=tuple(segments)))
    note = (f"attention approximated ({approx.label()}): token pruning applied to attention only "
            "(projections and FFN of pruned tokens still costed); runs as lowered, op by op")
    return replace(workload, passes=tuple(passes), spec=None, lower_args={},
                   params=workload.params | {"attention_approx": approx.label()},
                   warnings=(*workload.warnings, note))


__all__ = ["SELECTIONS", "AttentionApprox", "approximate_attention", "cascade_schedule", "parse_approx"]
