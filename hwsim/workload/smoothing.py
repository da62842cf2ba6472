"""Per-input-channel smoothing scales (SmoothQuant, AWQ): where they go and what they cost.

Smoothing divides a GEMM's input by a per-channel scale ``s`` and multiplies the weights'
rows by it (``X W = (X diag(s)^-1) (diag(s) W)``), so activation outliers move into the
weights before quantization. The weights absorb ``s`` offline; the input's ``1/s`` costs
nothing at run time when the op producing that input can absorb it too ("folded"):

- a norm with a per-channel weight (SmoothQuant's ``smooth_ln_fcs``: ``ln.weight /= s``);
- a linear producing exactly those channels (AWQ's ``scale_fc_fc``: ``v_proj`` into
  ``o_proj`` when their shapes match, i.e. without grouped-query attention; ``up_proj``
  into ``down_proj``, since ``silu(gate) * up`` is linear in ``up``).

Otherwise the input is multiplied by ``1/s`` explicitly: one element-wise pass on the
vector units reading the input and the scale vector and writing the scaled input (AWQ's
``ScaledActivation`` after a GELU, which has no such linear), or the GEMM is left
unsmoothed. The schemes (``Precision.smoothing``):

- ``smoothquant``: as mit-han-lab/smoothquant ``smoothquant/smooth.py`` ``smooth_lm``
  (commit c61476d): only the GEMMs a norm feeds (q/k/v, gate/up, the MoE router and
  experts); ``o_proj`` and ``down_proj`` stay unsmoothed (quantized as they are).
- ``awq``: as mit-han-lab/llm-awq ``awq/quantize/auto_scale.py`` ``auto_scale_block``
  and ``apply_scale`` (commit d6e797a): the norm-fed GEMMs folded; ``o_proj`` folded
  into ``v_proj`` when ``v_proj`` and ``o_proj`` have one shape (multi-head attention)
  and unsmoothed otherwise (llm-awq PR #67); ``down_proj`` folded into ``up_proj``
  after a gated activation, explicitly scaled (``ScaledActivation``) after a plain one.
- ``smoothquant-full``: hwsim's name for smoothing every quantized GEMM of a layer:
  folded where a source above folds, an explicit multiply everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.dtypes import dtype_bits, dtype_bytes
from hwsim.workload.graph import OperatorGraph, SegmentRole, Workload
from hwsim.workload.ops import Attention, Elementwise, MatMul, Op
from hwsim.workload.precision import SMOOTHINGS

__all__ = ["SMOOTHINGS", "SMOOTH_KIND", "SmoothingSite", "smooth_op", "smoothing_note", "smoothing_notes",
           "smoothing_sites"]

#: The element-wise kind of an explicit smoothing multiply (:data:`~hwsim.workload.ops.ELEMENTWISE_KINDS`).
SMOOTH_KIND = "smooth_scale"

#: Layer GEMMs whose input a norm produces (the norm's weight absorbs ``1/s``), with
#: that norm where it is an op of the layer graph's own.
_NORM_FED = {"qkv_proj": "", "q_proj": "", "q_down": "", "kv_down": "", "up_proj": "",
             "shared_up_proj": "", "expert_up_proj": "", "router": "", "shared_gate": "",
             "in_proj": "", "cross_q_proj": "", "q_up": "q_norm", "kv_up": "kv_norm"}
#: GEMMs fed by attention (its values' projection may absorb ``1/s``): the attention op.
_ATTENTION_FED = {"o_proj": "attention", "cross_o_proj": "cross_attention"}
#: GEMMs fed by the FFN activation: the activation op and the up projection before it.
_ACTIVATION_FED = {"down_proj": ("activation", "up_proj"),
                   "shared_down_proj": ("shared_activation", "shared_up_proj"),
                   "expert_down_proj": ("activation", "expert_up_proj")}
#: Other layer GEMMs: no op before them that a source folds a scale into.
_OTHER = ("q_absorb", "v_absorb", "x_proj", "dt_proj", "out_proj", "cross_kv_proj")
_GATED = ("silu_mul", "sigmoid_mul")


@dataclass(frozen=True)
class SmoothingSite:
    """What smoothing does to one GEMM's input.

    Attributes
    ----------
    gemm : str
        The GEMM's op name.
    outcome : {"folded", "explicit", "unsmoothed"}
        Folded into the op before it (no run-time cost), scaled by an explicit
        element-wise multiply, or left unsmoothed.
    why : str
        The op it was folded into, or why it was scaled or left alone.
    """

    gemm: str
    outcome: str
    why: str


def _op(g: OperatorGraph, name: str) -> Op | None:
    return g.nodes[name]["op"] if name in g else None


def _mha(op: Op | None) -> bool:
    """Whether attention ``op`` has one value head per query head (``v_proj`` and
    ``o_proj`` of one shape, AWQ's condition for folding), not MLA's latent values."""
    return (isinstance(op, Attention) and op.n_kv_heads == op.n_heads and not op.latent_kv
            and not op.variant.startswith("mla"))


def _site(g: OperatorGraph, full: str, scheme: str) -> SmoothingSite | None:
    """The site of layer GEMM ``full`` (``l1.o_proj`` in a chained period: the ops it
    looks at share its prefix) under ``scheme`` (``None``: not a layer GEMM)."""
    prefix, _, name = full.rpartition(".")
    prefix = f"{prefix}." if prefix else ""
    site = _layer_site(g, prefix, name, scheme)
    return None if site is None else SmoothingSite(full, site[0], site[1])


def _layer_site(g: OperatorGraph, prefix: str, name: str, scheme: str) -> tuple[str, str] | None:
    fallback = "explicit" if scheme == "smoothquant-full" else "unsmoothed"
    if name in _NORM_FED:
        return ("folded", _NORM_FED[name] or "the norm before it")
    if scheme == "smoothquant" and (name in _ATTENTION_FED or name in _ACTIVATION_FED or name in _OTHER):
        return ("unsmoothed", "SmoothQuant smooths only the GEMMs a norm feeds")
    if name in _ATTENTION_FED:
        if _mha(_op(g, prefix + _ATTENTION_FED[name])):
            return ("folded", "the value projection (qkv_proj's v columns)")
        return (fallback, "grouped-query or latent attention: v_proj and o_proj differ in shape")
    if name in _ACTIVATION_FED:
        act, up = _ACTIVATION_FED[name]
        act_op = _op(g, prefix + act)
        kind = act_op.op_kind if isinstance(act_op, Elementwise) else ""
        if kind in _GATED:
            return ("folded", f"{up} (the gated product is linear in it)")
        # hwsim costs every plain activation as GELU: a ReLU (OPT), which AWQ folds into
        # fc1 since relu(x / s) = relu(x) / s, is scaled explicitly here too.
        return ("explicit", f"after a plain {kind or 'activation'}: AWQ's ScaledActivation; "
                "a ReLU would fold, hwsim does not tell them apart")
    if name in _OTHER:
        return (fallback, "no source folds a scale into the op before it")
    return None


def smoothing_sites(g: OperatorGraph, scheme: str) -> list[SmoothingSite]:
    """Where ``scheme`` (one of :data:`SMOOTHINGS`) puts each layer GEMM's scale, in
    graph order; embedding projections and the LM head are never smoothed."""
    if scheme == "none":
        return []
    sites = (_site(g, name, scheme) for name, op in g.ops() if isinstance(op, MatMul) and op.b_is_weight)
    return [s for s in sites if s is not None]


def smooth_op(op: MatMul, base: str) -> Elementwise:
    """The explicit multiply scaling ``op``'s input (``batch * m`` rows of ``k``, in
    ``base``) by its scale vector: one pass, one operation per element, the vector of
    ``k`` scales (stored in ``base``, as AWQ's ``ScaledActivation.scales`` parameter) read
    once per distinct weight matrix."""
    copies = 1 if op.b_shared else op.batch
    return Elementwise(SMOOTH_KIND, op.batch * op.m, op.k, base,
                       vector_bytes=copies * op.k * dtype_bytes(base))


def smoothing_note(scheme: str, sites: list[SmoothingSite]) -> str:
    """One line saying where ``scheme`` put each scale (for a workload's warnings)."""
    source = {"smoothquant": "mit-han-lab/smoothquant smooth.py",
              "awq": "mit-han-lab/llm-awq auto_scale.py"}.get(scheme, "every quantized layer GEMM")
    parts = []
    groups = (("folded", "folded, no run-time cost"),
              ("explicit", "an explicit per-channel multiply on the vector units"),
              ("unsmoothed", "left unsmoothed"))
    for outcome, words in groups:
        by_why: dict[str, list[str]] = {}
        for site in sites:
            if site.outcome == outcome and site.gemm not in by_why.setdefault(site.why, []):
                by_why[site.why].append(site.gemm)
        said = [f"{', '.join(gemms)} into {why}" if outcome == "folded" else f"{', '.join(gemms)} ({why})"
                for why, gemms in by_why.items() if gemms]
        if said:
            parts.append(f"{words}: {'; '.join(said)}")
    return f"smoothing {scheme} ({source}): " + " | ".join(parts)


def smoothing_notes(workload: Workload) -> list[str]:
    """The workload's smoothing, said once (``[]`` without smoothing): the sites of its
    layers' quantized GEMMs (weights or inputs narrower than the precision's base)."""
    prec = workload.precision
    if prec is None or prec.smoothing == "none":
        return []
    base_bits = dtype_bits(prec.base)
    sites = []
    for p in workload.passes:
        for seg in p.segments:
            if seg.role is not SegmentRole.LAYER:
                continue
            quantized = {name for name, op in seg.graph.ops() if isinstance(op, MatMul)
                         and (op.w_dtype is not None or dtype_bits(op.dtype) < base_bits - 1e-9)}
            sites += [SmoothingSite(s.gemm.rpartition(".")[2], s.outcome, s.why)
                      for s in smoothing_sites(seg.graph, prec.smoothing) if s.gemm in quantized]
    return [smoothing_note(prec.smoothing, sites)] if sites else []
