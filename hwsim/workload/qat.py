"""Quantization-aware training (QAT): a training step under a quantized precision.

A ``train`` phase whose precision stores layer weights or GEMM inputs narrower than its
``base`` (``w8a8``, ``w4a16``, ``{"scheme": "fp8", "qat": True}``) lowers to the plain
training graph at ``base`` -- GEMMs, weights, gradients and saved activations at the
training dtype, as fake-quant QAT runs (PyTorch's ``torch.ao.quantization`` QAT, LLM-QAT
by Liu et al. 2023, https://arxiv.org/abs/2305.17888) -- plus fake quantization
(:class:`~hwsim.workload.ops_qat.FakeQuant`) before each weight GEMM of the layers:

- of its weights, where the layer's weight dtype is narrower than ``base``: one scale
  per output channel; per ``group_size`` weights along K for weight-only schemes (the
  groups inference will use, :func:`~hwsim.workload.precision.weight_bits_per_param`);
  per block for block-scaled formats (nvfp4, mxfp*);
- of its input, where inference would quantize it
  (:func:`~hwsim.workload.quantize.gemm_formats`): one scale per token
  (``act_scale="per_token"``), else one per tensor; per block for block-scaled formats.

The backward adds the straight-through estimator of each fake-quantized tensor, derived
with the layer's other gradients (:func:`hwsim.workload.train.backward_ops`); full
recompute runs the fake quantization again. The embedding table, the LM head, attention
(QK^T, PV), norms and the residual stream stay unquantized (schemes keep embeddings and
head in ``base``; other choices are refused). :func:`qat_notes` says all of this in the
workload's warnings.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from hwsim.dtypes import FORMATS, dtype_bits
from hwsim.errors import ConfigError
from hwsim.workload.graph import OperatorGraph, Segment, SegmentRole
from hwsim.workload.ops import MatMul
from hwsim.workload.ops_qat import FakeQuant
from hwsim.workload.plan import Plan
from hwsim.workload.precision import Precision, is_weight_only
from hwsim.workload.quantize import gemm_formats


def _narrower(dtype: str, than: str) -> bool:
    return dtype_bits(dtype) < dtype_bits(than) - 1e-9


def fake_quantized(prec: Precision) -> tuple[str, ...]:
    """The formats a training step under ``prec`` fake-quantizes to (layer weights,
    their overrides and GEMM inputs narrower than ``base``), in that order, once each."""
    found = [d for d in (prec.weights, *(d for _, d in prec.layers)) if _narrower(d, prec.base)]
    if _narrower(prec.activations, prec.base):
        found.append(prec.activations)
    return tuple(dict.fromkeys(found))


def check_training_precision(source: str, prec: Precision, phase: str) -> bool:
    """Whether a ``phase`` step under ``prec`` is quantization-aware training.

    Raises
    ------
    ConfigError
        ``qat`` outside training or with nothing to fake-quantize; in training, a KV
        cache, embedding table or LM head in a dtype of its own; a float format (fp8,
        mxfp8, nvfp4...) without ``qat``, whose training could mean real low-precision
        GEMMs (Transformer Engine), which hwsim does not model.
    """
    formats = fake_quantized(prec)
    if phase != "train":
        if prec.qat:
            raise ConfigError([f"{source}: precision: qat: quantization-aware training applies to "
                               f"phase='train', not {phase!r}"])
        return False
    if prec.qat and not formats:
        raise ConfigError([f"{source}: precision: qat: no layer weight or GEMM input is narrower than "
                           f"base {prec.base}; there is nothing to fake-quantize"])
    own = [(key, getattr(prec, key)) for key in ("kv_cache", "embeddings", "lm_head")
           if getattr(prec, key) != prec.base]
    if own:
        why = ("a training step keeps no KV cache" if own[0][0] == "kv_cache" else
               "fake quantization of the embedding table and LM head is not modelled")
        raise ConfigError([f"{source}: precision: {key}: {dt} in training: {why}; keep it at base "
                           f"{prec.base} (weights, activations, gradients and optimizer_state may differ)"
                           for key, dt in own])
    floats = [d for d in formats if not FORMATS[d].is_integer]
    if floats and not prec.qat:
        fmt = "/".join(floats)
        raise ConfigError([f"{source}: precision: {fmt} training: real {fmt} training GEMMs (Transformer "
                           "Engine style fp8 training, MX/NVFP4 training) are not modelled; for "
                           f"fake-quant QAT to {fmt} with GEMMs at {prec.base}, add qat: true (Python: "
                           "precision={'scheme': ..., 'qat': True}; CLI: --precision scheme=...,qat=true)"])
    return bool(formats)


def weight_scales(prec: Precision, weights: str, k: int, n: int) -> int:
    """Scale groups of a ``k`` x ``n`` weight fake-quantized to ``weights``."""
    block = FORMATS[weights].block_size
    if block:
        return n * math.ceil(k / block)
    if is_weight_only(weights, prec.activations) and prec.group_size:
        return n * math.ceil(k / prec.group_size)
    return n  # per output channel


def activation_scales(prec: Precision, rows: int, k: int) -> int:
    """Scale groups of a GEMM input of ``rows`` tokens by ``k`` fake-quantized to the
    activations' format."""
    block = FORMATS[prec.activations].block_size
    if block:
        return rows * math.ceil(k / block)
    return rows if prec.act_scale == "per_token" else 1


def gemm_fake_quants(op: MatMul, prec: Precision, weights: str) -> list[tuple[str, FakeQuant]]:
    """(name suffix, op) of the fake quantizations before weight GEMM ``op`` whose
    layer stores its weights in ``weights``: its input's, then its weights'."""
    out = []
    if gemm_formats(prec, weights)[2]:
        rows = op.batch * op.m
        out.append(("fq_x", FakeQuant(rows, op.k, activation_scales(prec, rows, op.k), prec.activations,
                                      prec.base, "activation")))
    if _narrower(weights, prec.base):
        copies = 1 if op.b_shared else op.batch
        out.append(("fq_w", FakeQuant(copies * op.k, op.n, copies * weight_scales(prec, weights, op.k, op.n),
                                      weights, prec.base, "weight")))
    return out


def fake_quant_graph(g: OperatorGraph, prec: Precision, weights_of: Callable[[str], str]) -> OperatorGraph:
    """``g`` with its weight GEMMs' fake quantizations run just before them (on the
    GEMM's predecessors); ``weights_of(name)``: the weight dtype of op ``name``'s layer."""
    out = OperatorGraph()
    for name, op in g.ops():
        preds = list(g.predecessors(name))
        if isinstance(op, MatMul) and op.b_is_weight:
            for suffix, fq in gemm_fake_quants(op, prec, weights_of(name)):
                out.add_op(f"{name}_{suffix}", fq, preds)
                preds = [f"{name}_{suffix}"]
        out.add_op(name, op, preds)
    return out


def fake_quant_hook(prec: Precision,
                    runs: list[tuple[int, int]]) -> Callable[[OperatorGraph, int], OperatorGraph]:
    """The rewrite :func:`hwsim.workload.train.train_segments` applies to the forward
    graph of run ``k``; ``runs[k]``: (its first layer, layers per period). A period of
    several layers names its ops ``l0.``, ``l1.``... (:func:`~hwsim.workload.parallel.chain_graphs`)."""
    def rewrite(g: OperatorGraph, k: int) -> OperatorGraph:
        first, n_layers = runs[k]
        if n_layers == 1:
            return fake_quant_graph(g, prec, lambda _: prec.layer_weights(first))
        return fake_quant_graph(g, prec, lambda name: prec.layer_weights(first + int(name.split(".")[0][1:])))
    return rewrite


def fake_quant_saved_bytes(segments: tuple[Segment, ...], plan: Plan) -> float:
    """Bytes one chip keeps for the backward from its fake quantizations (outputs and
    masks, :attr:`FakeQuant.saved_bytes`) over the micro-batches in flight (all under
    GPipe, at most ``pp`` under 1F1B, as on the first stage); none under full recompute,
    which keeps only layer inputs."""
    if plan.full_recompute:
        return 0.0
    per_micro = sum(seg.repeat * op.saved_bytes for seg in segments if seg.role is SegmentRole.LAYER
                    for _, op in seg.graph.ops() if isinstance(op, FakeQuant))
    in_flight = plan.microbatches if plan.pipeline_schedule == "gpipe" else min(plan.pp, plan.microbatches)
    return per_micro * in_flight


def qat_notes(prec: Precision, plan: Plan | None) -> list[str]:
    """What a quantization-aware training step assumed, in words."""
    formats = fake_quantized(prec)
    weights = [d for d in (prec.weights, *(d for _, d in prec.layers)) if _narrower(d, prec.base)]
    what = []
    if weights:
        what.append(f"layer weights (to {'/'.join(dict.fromkeys(weights))})")
    if _narrower(prec.activations, prec.base):
        what.append(f"weight-GEMM inputs (to {prec.activations})")
    notes = [
        f"quantization-aware training ({prec.label()}): {' and '.join(what)} are fake-quantized and every "
        f"GEMM, weight, gradient and saved activation stays in the training dtype {prec.base}; the speed "
        f"and memory of real {'/'.join(formats)} GEMMs are not modelled (embeddings, LM head, attention "
        "and norms are not fake-quantized)",
        "fake quantization is unfused: per tensor and step an amax reduction, a scale and a "
        "quantize-dequantize kernel (writing the output and a one-byte straight-through mask, both kept "
        "for the backward), and one straight-through gradient kernel in the backward; a fused kernel, "
        "or quantization fused into the GEMM, would hide part of this cost",
        "fake-quant scales are observed every step (an amax pass per tensor per forward); frozen or "
        "learned scales (LSQ) would skip it",
    ]
    floats = [d for d in formats if not FORMATS[d].is_integer]
    if floats:
        notes.append(f"{'/'.join(floats)} training read as fake-quant QAT (qat: true): real "
                     f"{'/'.join(floats)} training GEMMs (Transformer Engine style) are not modelled")
    if len(floats) < len(formats):
        notes.append("integer formats in training are read as fake-quant QAT; real integer training "
                     "GEMMs are not modelled")
    if plan is not None and plan.pp > 1 and prec.layers:
        notes.append(f"pp={plan.pp} with per-layer weight overrides: stages fake-quantize different layers, "
                     "but every stage is timed as the simulated one (the one with the most weights)")
    if plan is not None and plan.tp > 1:
        notes.append(f"tp={plan.tp}: each rank fake-quantizes its own shard with its own scales (a global "
                     "per-tensor amax's all-reduce over tp is not modelled)")
    return notes
