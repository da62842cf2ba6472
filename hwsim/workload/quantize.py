"""Applying a :class:`~hwsim.workload.precision.Precision` to lowered operator graphs.

Graphs are built in the precision's ``base`` dtype; this pass then gives each weight
GEMM its math and weight formats, puts a dynamic-quantization op before each GEMM whose
activations are narrower than ``base`` (and, with ``smoothing``, an explicit scaling op
before each quantized GEMM whose smoothing scale no op before it absorbs), and gives
attention its KV-cache dtype. A
uniform precision leaves graphs untouched (the results of the single-dtype path).
"""

from __future__ import annotations

from dataclasses import replace

from hwsim.dtypes import dtype_bits
from hwsim.workload.graph import OperatorGraph
from hwsim.workload.ops import Attention, Collective, Elementwise, MatMul, Op
from hwsim.workload.precision import Precision, is_weight_only, weight_bits_per_param
from hwsim.workload.smoothing import smooth_op, smoothing_sites


def gemm_formats(prec: Precision, weights: str) -> tuple[str, str | None, bool]:
    """(math dtype, stored weight dtype if it differs, quantize the input first) of a
    weight GEMM whose weights are stored in ``weights``.

    Weights wider than the activations (a layer kept in bf16 under ``fp8``) run
    unquantized in their own format; otherwise the math is in the activations' format,
    weight-only when the weights are narrower still.
    """
    if dtype_bits(weights) > dtype_bits(prec.activations) + 1e-9:
        return weights, None, False
    math_dtype = prec.activations
    stored = weights if is_weight_only(weights, math_dtype) else None
    return math_dtype, stored, dtype_bits(math_dtype) < dtype_bits(prec.base) - 1e-9


def quant_kind(prec: Precision, math_dtype: str) -> str:
    """The element-wise kind that quantizes a ``base`` tensor to ``math_dtype``."""
    ratio = dtype_bits(math_dtype) / dtype_bits(prec.base)
    suffix = {"per_token": "", "per_tensor": "_tensor", "static": "_static"}[prec.act_scale]
    return ("quantize4" if ratio <= 0.3 else "quantize8") + suffix


def _quantized_matmul(op: MatMul, prec: Precision, weights: str) -> tuple[MatMul, str | None]:
    math_dtype, stored, quantize_input = gemm_formats(prec, weights)
    new = replace(op, dtype=math_dtype, w_dtype=stored, emulate=prec.on_unsupported == "emulate",
                  group_size=prec.group_size if stored else 0, zero_point=prec.zero_point and bool(stored))
    return new, (quant_kind(prec, math_dtype) if quantize_input else None)


def quantize_graph(g: OperatorGraph, prec: Precision, weights: str | None = None) -> OperatorGraph:
    """``g`` with ``prec`` applied; ``weights``: the stored dtype of its weight GEMMs
    (default ``prec.weights``; a layer's override, the embeddings' or LM head's)."""
    if prec.is_uniform:
        return g
    weights = weights or prec.weights
    explicit = {s.gemm for s in smoothing_sites(g, prec.smoothing) if s.outcome == "explicit"}
    out = OperatorGraph()
    for name, op in g.ops():
        preds = list(g.predecessors(name))
        new: Op = op
        if isinstance(op, MatMul) and op.b_is_weight:
            new, kind = _quantized_matmul(op, prec, weights)
            if name in explicit and (kind is not None or new.w_dtype is not None):
                # Scaled before it is quantized (SmoothQuant: X diag(s)^-1, then quantize).
                out.add_op(f"{name}_smooth", smooth_op(op, prec.base), preds)
                preds = [f"{name}_smooth"]
            if kind is not None:
                rows = op.batch * op.m
                out.add_op(f"{name}_quant", Elementwise(kind, rows, op.k, prec.base), preds)
                preds = [f"{name}_quant"]
        elif isinstance(op, Attention) and prec.kv_cache != op.dtype:
            new = replace(op, kv_dtype=prec.kv_cache)
        elif isinstance(op, Collective) and name in _RESCALED:
            # Built at the base width: streamed weights and moved KV at their own.
            stored = (weight_bits_per_param(weights, prec.activations, prec.group_size, prec.zero_point)
                      if _RESCALED[name] == "weights" else dtype_bits(prec.kv_cache))
            new = replace(op, n_bytes=op.n_bytes * stored / dtype_bits(prec.base))
        out.add_op(name, new, preds)
    return out


#: Transfers a layer graph sizes at the base width, and which stored tensor they move.
_RESCALED = {"weights_stream": "weights", "kv_stream": "kv", "kv_writeback": "kv", "cp_kv_gather": "kv"}
