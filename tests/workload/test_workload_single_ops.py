"""Single operators as workloads (hwsim.ops): one op each, closed-form FLOP and bytes,
invalid arguments rejected with ConfigError."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.errors import ConfigError
from hwsim.workload import Attention, Elementwise, Embedding, MatMul, Workload
from hwsim.workload.ops import ELEMENTWISE_KINDS, PUBLIC_ELEMENTWISE, Op


def _only_op(w: Workload) -> Op:
    assert w.phase == "op" and len(w.passes) == 1 and len(w.passes[0].segments) == 1
    seg = w.passes[0].segments[0]
    assert seg.repeat == 1 and w.n_ops == 1
    ((_, op),) = list(seg.graph.ops())
    return op


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (128, 128, 128), (7, 4096, 11008), (8192, 8192, 8192)])
def test_gemm_flops_and_bytes(m: int, k: int, n: int) -> None:
    """gemm(m, k, n) is one MatMul with 2mkn FLOP and A + B + C bytes compulsory traffic."""
    w = hwsim.ops.gemm(m, k, n)
    op = _only_op(w)
    assert isinstance(op, MatMul) and op.b_is_weight
    assert w.flops == op.flops == 2.0 * m * k * n
    assert op.min_bytes == (m * k + k * n + m * n) * 2
    assert w.resident_bytes["operands_bytes"] == op.min_bytes


def test_gemm_fp8_writes_bf16() -> None:
    """An fp8 GEMM reads 1-byte operands and writes its result in bf16."""
    op = _only_op(hwsim.ops.gemm(64, 128, 256, dtype="fp8"))
    assert isinstance(op, MatMul)
    assert op.min_bytes == 64 * 128 + 128 * 256 + 64 * 256 * 2


def test_attention_non_causal_flops() -> None:
    """Non-causal attention is 4 x B x H x q x kv x d FLOP (QK^T and PV)."""
    b, h, q, kv, d = 2, 16, 100, 300, 64
    op = _only_op(hwsim.ops.attention(b, h, h, q, kv, d, is_causal=False))
    assert isinstance(op, Attention)
    assert op.flops == 4.0 * b * h * q * kv * d


@pytest.mark.parametrize("q", [1, 2, 127, 2048])
def test_causal_self_attention_computes_lower_triangle(q: int) -> None:
    """Causal attention with q = kv computes exactly q(q+1)/2 query-key pairs."""
    op = _only_op(hwsim.ops.attention(1, 8, 8, q, q, 128, is_causal=True))
    assert isinstance(op, Attention)
    assert op.n_scores == q * (q + 1) / 2
    assert op.flops == 4.0 * 8 * q * (q + 1) / 2 * 128


def test_causal_attention_is_about_half_of_full() -> None:
    """For long sequences causal attention costs ~half the FLOP of non-causal."""
    causal = _only_op(hwsim.ops.attention(1, 32, 32, 8192, 8192, 128, is_causal=True))
    full = _only_op(hwsim.ops.attention(1, 32, 32, 8192, 8192, 128, is_causal=False))
    assert causal.flops / full.flops == pytest.approx(0.5, rel=1e-3)


def test_causal_queries_aligned_to_end_of_cache() -> None:
    """q causal queries after a cache of kv - q keys compute q(kv - q) + q(q+1)/2 pairs."""
    q, kv = 16, 1000
    op = _only_op(hwsim.ops.attention(1, 4, 4, q, kv, 64, is_causal=True))
    assert isinstance(op, Attention)
    assert op.n_scores == q * (kv - q) + q * (q + 1) / 2
    one = _only_op(hwsim.ops.attention(1, 4, 4, 1, kv, 64, is_causal=True))
    assert isinstance(one, Attention) and one.n_scores == kv


def test_attention_bytes_q_k_v_o_once() -> None:
    """Flash attention's compulsory bytes are Q and O (H heads) plus K and V (KV heads)."""
    b, h, kvh, q, kv, d = 2, 32, 8, 64, 512, 128
    op = _only_op(hwsim.ops.attention(b, h, kvh, q, kv, d))
    assert isinstance(op, Attention)
    assert op.min_bytes == (2 * b * h * q * d + 2 * b * kvh * kv * d) * 2


@pytest.mark.parametrize("kind", PUBLIC_ELEMENTWISE)
def test_elementwise_flops_and_bytes(kind: str) -> None:
    """elementwise(kind, (r, c)) is one op with r x c x ops-per-element FLOP and streamed bytes."""
    rows, cols = 300, 700
    op = _only_op(hwsim.ops.elementwise(kind, (rows, cols)))
    assert isinstance(op, Elementwise) and op.op_kind == kind
    n_read, n_write, per_elem = ELEMENTWISE_KINDS[kind]
    assert op.flops == rows * cols * per_elem
    assert op.min_bytes == (n_read + n_write) * rows * cols * 2


def test_add_reads_one_writes_one() -> None:
    """``add`` adds a broadcast operand (bias or scalar): 2 x elements x width bytes; the
    residual add inside models reads two full tensors."""
    op = _only_op(hwsim.ops.elementwise("add", (1024, 1024), dtype="fp32"))
    assert op.min_bytes == 2 * 1024 * 1024 * 4
    assert Elementwise("residual_add", 1024, 1024, "fp32").min_bytes == 3 * 1024 * 1024 * 4


def test_embedding_is_a_gather() -> None:
    """embedding() gathers n_tokens rows: no FLOP, rows read and written, table resident."""
    w = hwsim.ops.embedding(10, 32000, 4096)
    op = _only_op(w)
    assert isinstance(op, Embedding)
    assert op.flops == 0.0
    assert op.min_bytes == 2 * 10 * 4096 * 2
    assert w.resident_bytes["operands_bytes"] == 32000 * 4096 * 2


INVALID_CALLS = {
    "gemm_zero_m": (lambda: hwsim.ops.gemm(0, 4, 4), "m"),
    "gemm_negative_n": (lambda: hwsim.ops.gemm(4, 4, -1), "n"),
    "gemm_float_k": (lambda: hwsim.ops.gemm(4, 2.5, 4), "k"),
    "gemm_bad_dtype": (lambda: hwsim.ops.gemm(4, 4, 4, dtype="fp7"), "dtype"),
    "gemm_bad_sparsity": (lambda: hwsim.ops.gemm(4, 4, 4, sparsity="2-4"), "sparsity"),
    "attention_kv_not_dividing": (lambda: hwsim.ops.attention(1, 8, 3, 1, 16, 64), "n_kv_heads"),
    "attention_zero_heads": (lambda: hwsim.ops.attention(1, 0, 1, 1, 16, 64), "n_heads"),
    "attention_bad_impl": (lambda: hwsim.ops.attention(1, 8, 8, 1, 16, 64, impl="paged"), "impl"),
    "elementwise_unknown_kind": (lambda: hwsim.ops.elementwise("tanh", (4, 4)), "kind"),
    "elementwise_bad_shape": (lambda: hwsim.ops.elementwise("add", (4, 4, 4)), "shape"),
    "elementwise_zero_rows": (lambda: hwsim.ops.elementwise("add", (0, 4)), "rows"),
    "embedding_zero_vocab": (lambda: hwsim.ops.embedding(4, 0, 8), "vocab"),
}


@pytest.mark.parametrize("case", sorted(INVALID_CALLS))
def test_invalid_single_op_raises_config_error(case: str) -> None:
    """Bad single-op arguments raise ConfigError whose line names the argument."""
    call, field = INVALID_CALLS[case]
    with pytest.raises(ConfigError) as info:
        call()
    assert any(f": {field}:" in line for line in info.value.problems), info.value.problems


def test_internal_elementwise_kinds_not_public() -> None:
    """Backward and loss kinds exist internally but are not offered by hwsim.ops.elementwise."""
    with pytest.raises(ConfigError):
        hwsim.ops.elementwise("cross_entropy", (4, 4))
    assert "cross_entropy" in ELEMENTWISE_KINDS
