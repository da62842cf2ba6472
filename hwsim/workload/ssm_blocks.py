"""Operators of a state-space (Mamba / Mamba-2) mixer on one chip, from its
:class:`~hwsim.workload.layers.SsmSpec`.

As transformers' ``MambaMixer`` / ``Mamba2Mixer`` (and the fused kernels of
``mamba_ssm`` and vLLM) run them:

- Mamba: ``in_proj`` (x and the gate z), the causal conv1d with SiLU, ``x_proj`` (the
  low-rank time step, B and C), Jamba's RMSNorms of dt, B and C, ``dt_proj``, the
  selective scan (with the skip and the gate) and ``out_proj``.
- Mamba-2: one ``in_proj`` (z, x, B, C and dt), the conv1d over x, B and C, the scan
  (chunked SSD for prefill, the recurrent update for decode), the gated RMSNorm
  (``y silu(z)``, then the norm) and ``out_proj``.

Tensor parallel (vLLM's ``MambaMixer``/``MambaMixer2``): ``in_proj`` split by columns,
channels, heads and conv split, ``out_proj`` by rows (its partial sums join the
layer's all-reduce); Mamba's ``x_proj`` is row-parallel and all-reduces its small
output; Mamba-2's B/C groups are split, replicated once tp exceeds them.

The scan (:class:`~hwsim.workload.ops_ssm.SelectiveScan`) is built apart by
:func:`ssm_ops`, so a serving iteration can put one over its own mix of requests
between the same projections, as it does with attention.
"""

from __future__ import annotations

from hwsim.dtypes import dtype_bytes
from hwsim.workload.graph import OperatorGraph
from hwsim.workload.layers import LayerSpec, SsmSpec
from hwsim.workload.ops import Collective, Elementwise, MatMul, Op
from hwsim.workload.ops_ssm import CausalConv1d, SelectiveScan
from hwsim.workload.plan import Plan


def _spec(layer: LayerSpec) -> SsmSpec:
    assert isinstance(layer.mixer, SsmSpec)
    return layer.mixer


def ssm_ops(layer: LayerSpec, plan: Plan, batch: int, q_len: int, kv_len: int,
            dtype: str) -> list[tuple[str, Op]]:
    """The selective scan of one chip for ``batch`` sequences of ``q_len`` new tokens
    whose sequences are ``kv_len`` tokens long with them (a stored state when longer)."""
    s = _spec(layer)
    c, h, g = s.local(plan.tp)
    scan = SelectiveScan(s.kind, batch, q_len, c, h, s.d_state, g, s.chunk, s.state_elements(plan.tp),
                         prior_state=kv_len > q_len, dtype=dtype)
    return [("ssm_scan", scan)]


def add_ssm(g: OperatorGraph, layer: LayerSpec, plan: Plan, after: str, n_tokens: int,
            scan: list[tuple[str, Op]], dtype: str, sparsity: str | None) -> str:
    """Projections, convolution and ``scan`` of a state-space mixer after ``after``;
    returns its ``out_proj``."""
    s, d = _spec(layer), layer.hidden_size
    c, h, groups = s.local(plan.tp)
    conv = s.conv_channels(plan.tp)
    width = 2 * c if s.kind == "mamba" else c + conv + h
    g.add_op("in_proj", MatMul(n_tokens, d, width, dtype, sparsity=sparsity, bias=s.proj_bias), [after])
    g.add_op("conv1d", CausalConv1d(n_tokens, conv, s.d_conv, dtype, bias=s.conv_bias), ["in_proj"])
    prev = "conv1d"
    if s.kind == "mamba":
        low = s.dt_rank + 2 * s.d_state
        g.add_op("x_proj", MatMul(n_tokens, c, low, dtype, sparsity=sparsity), [prev])
        prev = "x_proj"
        if plan.tp > 1:
            size = n_tokens * low * dtype_bytes(dtype)
            g.add_op("x_proj_allreduce", Collective("all_reduce", size, "tp", plan.tp, dtype), [prev])
            prev = "x_proj_allreduce"
        if s.bc_norms:
            g.add_op("dt_bc_norm", Elementwise("rmsnorm", n_tokens, low, dtype), [prev])
            prev = "dt_bc_norm"
        g.add_op("dt_proj", MatMul(n_tokens, s.dt_rank, c, dtype, sparsity=sparsity, bias=True), [prev])
        prev = "dt_proj"
    for name, op in scan:
        g.add_op(name, op, [prev])
        prev = name
    if s.kind == "mamba2":
        g.add_op("gate", Elementwise("silu_mul", n_tokens, c, dtype), [prev])
        g.add_op("gated_norm", Elementwise("rmsnorm", n_tokens, c, dtype), ["gate"])
        prev = "gated_norm"
    g.add_op("out_proj", MatMul(n_tokens, c, d, dtype, sparsity=sparsity, bias=s.proj_bias), [prev])
    return "out_proj"
