"""Single operators as workloads: ``gemm``, ``attention``, ``elementwise``, ``embedding``."""

from __future__ import annotations

from hwsim.dtypes import normalize_dtype
from hwsim.errors import ConfigError
from hwsim.workload.graph import OperatorGraph, Pass, Segment, Workload
from hwsim.workload.ops import (
    PUBLIC_ELEMENTWISE,
    Attention,
    Elementwise,
    Embedding,
    MatMul,
    Op,
    sparsity_problem,
)
from hwsim.workload.precision import (
    is_weight_only,
)


def _one_op(name: str, op: Op, tokens: int, resident: float, params: dict[str, object]) -> Workload:
    g = OperatorGraph()
    g.add_op(name, op)
    return Workload(name, "op", (Pass("op", (Segment("op", g),), tokens=tokens),),
                    {"operands_bytes": resident}, params)


def _validate(source: str, dtype: str, **dims: int) -> str:
    problems = [f"{source}: {k}: must be a positive integer, got {v!r}"
                for k, v in dims.items() if not isinstance(v, int) or isinstance(v, bool) or v <= 0]
    try:
        dtype = normalize_dtype(dtype)
    except ValueError as exc:
        problems.append(f"{source}: dtype: {exc}")
    if problems:
        raise ConfigError(problems)
    return dtype


def gemm(m: int, k: int, n: int, dtype: str = "bf16", sparsity: str | None = None, *,
         weight_dtype: str | None = None, group_size: int = 128, zero_point: bool = False,
         emulate: bool = False) -> Workload:
    """One (m x k) @ (k x n) product whose right operand is a weight read from memory.

    ``weight_dtype`` narrower than ``dtype`` stores the weight quantized (one fp16 scale,
    and with ``zero_point`` one zero, per ``group_size`` weights) and dequantizes it in the
    kernel; ``emulate`` runs a ``dtype`` the chip has no math for upcast to its bf16 rate
    (see docs/precision.md)."""
    dtype = _validate("gemm", dtype, m=m, k=k, n=n)
    problem = (sparsity_problem(sparsity) if sparsity is None or isinstance(sparsity, str)
               else f"expected a pattern such as '2:4' or 'unstructured:0.5', got {sparsity!r}")
    if problem:
        raise ConfigError([f"gemm: sparsity: {problem}"])
    w_dtype = None
    if weight_dtype is not None:
        w_dtype = _validate("gemm", weight_dtype)
        if not is_weight_only(w_dtype, dtype):
            raise ConfigError([f"gemm: weight_dtype: {w_dtype} is not narrower than dtype {dtype}"])
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 0:
            raise ConfigError([f"gemm: group_size: must be a non-negative integer, got {group_size!r}"])
    op = MatMul(m, k, n, dtype, sparsity=sparsity, w_dtype=w_dtype, group_size=group_size if w_dtype else 0,
                zero_point=bool(zero_point and w_dtype), emulate=emulate)
    params: dict[str, object] = {"m": m, "k": k, "n": n, "dtype": dtype}
    if w_dtype:
        params["weight_dtype"] = w_dtype
    return _one_op("gemm", op, m, op.min_bytes, params)


def attention(
    batch: int, n_heads: int, n_kv_heads: int, q_len: int, kv_len: int, head_dim: int,
    is_causal: bool = True, dtype: str = "bf16", impl: str = "flash",
) -> Workload:
    """One fused (or ``impl="naive"``) attention kernel; ``n_kv_heads < n_heads`` is GQA."""
    dtype = _validate("attention", dtype, batch=batch, n_heads=n_heads, n_kv_heads=n_kv_heads,
                      q_len=q_len, kv_len=kv_len, head_dim=head_dim)
    if n_heads % n_kv_heads:
        raise ConfigError([f"attention: n_kv_heads: {n_kv_heads} must divide n_heads ({n_heads})"])
    if impl not in ("flash", "naive"):
        raise ConfigError([f"attention: impl: expected 'flash' or 'naive', got {impl!r}"])
    if not isinstance(is_causal, bool):
        raise ConfigError([f"attention: is_causal: expected True or False, got {is_causal!r}"])
    op = Attention(batch, n_heads, n_kv_heads, q_len, kv_len, head_dim, is_causal, dtype, impl)
    params = {"batch": batch, "n_heads": n_heads, "n_kv_heads": n_kv_heads, "q_len": q_len,
              "kv_len": kv_len, "head_dim": head_dim, "is_causal": is_causal, "dtype": dtype}
    return _one_op("attention", op, batch * q_len, op.min_bytes, params)


def elementwise(kind: str, shape: tuple[int, int], dtype: str = "bf16") -> Workload:
    """A memory-bound operator (``add``, ``gelu``, ``silu_mul``, ``softmax``,
    ``layernorm``, ``rmsnorm``) over a (rows, cols) tensor. ``add`` adds a broadcast
    operand (bias or scalar); ``silu_mul`` multiplies silu(gate) by up, both (rows, cols)."""
    if kind not in PUBLIC_ELEMENTWISE:
        known = ", ".join(PUBLIC_ELEMENTWISE)
        raise ConfigError([f"elementwise: kind: unknown kind {kind!r}; expected one of {known}"])
    if not isinstance(shape, tuple | list) or len(shape) != 2:
        raise ConfigError([f"elementwise: shape: expected (rows, cols), got {shape!r}"])
    rows, cols = shape
    dtype = _validate("elementwise", dtype, rows=rows, cols=cols)
    op = Elementwise(kind, rows, cols, dtype)
    return _one_op(kind, op, rows, op.min_bytes, {"kind": kind, "rows": rows, "cols": cols, "dtype": dtype})


def embedding(n_tokens: int, vocab: int, dim: int, dtype: str = "bf16") -> Workload:
    """Gather ``n_tokens`` rows of a ``vocab`` x ``dim`` embedding table."""
    dtype = _validate("embedding", dtype, n_tokens=n_tokens, vocab=vocab, dim=dim)
    op = Embedding(n_tokens, vocab, dim, dtype)
    from hwsim.dtypes import dtype_bytes

    table = vocab * dim * dtype_bytes(dtype)
    return _one_op("embedding", op, n_tokens, table, {"n_tokens": n_tokens, "vocab": vocab, "dim": dim,
                                                         "dtype": dtype})
