"""Physics as properties (Hypothesis): roofline lower bounds, monotonicity, determinism."""

from __future__ import annotations

import functools

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hwsim
from hwsim.arch import Chip, with_overrides
from hwsim.workload.ops import PUBLIC_ELEMENTWISE, Op

PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ROOFLINE_ARCHS = ("h100-sxm", "tpu-v4", "systolic-128")
TENSOR_CORE_ARCHS = ("h100-sxm", "a100-sxm")
SYSTOLIC_ARCHS = ("tpu-v4", "tpu-v5e", "systolic-128")

#: GEMM sides: small and ragged sizes as often as large ones.
dims = st.one_of(st.integers(1, 64), st.integers(1, 8192))
scales = st.floats(1.0, 16.0, allow_nan=False)


@st.composite
def attentions(draw: st.DrawFn) -> hwsim.Workload:
    """A random (grouped-query) attention kernel."""
    n_kv_heads = draw(st.sampled_from([1, 2, 4, 8]))
    q_len = draw(st.integers(1, 512))
    return hwsim.ops.attention(
        batch=draw(st.integers(1, 4)), n_heads=n_kv_heads * draw(st.sampled_from([1, 2, 4, 8])),
        n_kv_heads=n_kv_heads, q_len=q_len, kv_len=draw(st.integers(q_len, 8192)),
        head_dim=draw(st.sampled_from([64, 128])), is_causal=draw(st.booleans()),
    )


@functools.cache
def chip(name: str) -> Chip:
    return hwsim.load_arch(name)


def scale_bandwidth(arch: Chip, s: float) -> Chip:
    """``arch`` with every memory level's bandwidth multiplied by ``s``."""
    return with_overrides(arch, {f"memory.{name}.bandwidth_bytes_per_s": level.bandwidth_bytes_per_s * s
                                 for name, level in arch.memory.items()})


def scale_units(arch: Chip, s: int) -> Chip:
    """``arch`` with ``s`` times the matrix units. Per-unit memories come with the units
    (their capacity and bandwidth are per unit); shared levels stay as they are."""
    return with_overrides(arch, {"compute_units.count": arch.compute_units.count * s})


def latency(workload: hwsim.Workload, arch: Chip) -> float:
    return hwsim.simulate(workload, arch).latency_s


def at_least(value: float, bound: float) -> bool:
    """``value >= bound`` up to float rounding (a time equal to its bound may land a bit under)."""
    return value >= bound * (1 - 1e-12)


def not_slower(faster: float, base: float) -> bool:
    """``faster <= base`` up to float rounding (equal times may differ in the last bit)."""
    return faster <= base * (1 + 1e-12)


def _op(workload: hwsim.Workload) -> Op:
    """The single operator of a ``hwsim.ops`` workload."""
    ((_, op),) = workload.passes[0].segments[0].graph.ops()
    return op


# Roofline lower bounds ----------------------------------------------------------------------

@pytest.mark.parametrize("arch_name", ROOFLINE_ARCHS)
@PROPERTY
@given(m=dims, k=dims, n=dims, data=st.data())
def test_gemm_latency_at_least_roofline(arch_name: str, m: int, k: int, n: int, data: st.DataObject) -> None:
    """A GEMM takes at least its FLOPs at the dense peak and its compulsory bytes at the home
    level's full bandwidth."""
    arch = chip(arch_name)
    dtype = data.draw(st.sampled_from(arch.supported_dtypes), label="dtype")
    workload = hwsim.ops.gemm(m, k, n, dtype=dtype)
    op = _op(workload)
    home = arch.memory[arch.home_level]
    bound = max(op.flops / arch.peak_flops_per_s(dtype), op.min_bytes / home.bandwidth_bytes_per_s)
    result = hwsim.simulate(workload, arch)
    assert at_least(result.latency_s, bound)
    assert result.bytes_by_level[f"{arch.home_level}_bytes"] >= op.min_bytes * (1 - 1e-12)


@pytest.mark.parametrize("arch_name", ROOFLINE_ARCHS)
@PROPERTY
@given(kind=st.sampled_from(PUBLIC_ELEMENTWISE), rows=dims, cols=dims,
       dtype=st.sampled_from(["bf16", "fp32", "fp8"]))
def test_elementwise_latency_at_least_roofline(arch_name: str, kind: str, rows: int, cols: int,
                                               dtype: str) -> None:
    """An element-wise op takes at least its ops at the vector units' peak and its compulsory
    bytes at the home level's full bandwidth."""
    arch = chip(arch_name)
    workload = hwsim.ops.elementwise(kind, (rows, cols), dtype=dtype)
    op = _op(workload)
    home = arch.memory[arch.home_level]
    bound = max(op.flops / arch.vector_units.peak_ops_per_s, op.min_bytes / home.bandwidth_bytes_per_s)
    assert at_least(latency(workload, arch), bound)


@pytest.mark.parametrize("arch_name", ROOFLINE_ARCHS)
@PROPERTY
@given(workload=attentions())
def test_attention_latency_at_least_roofline(arch_name: str, workload: hwsim.Workload) -> None:
    """An attention kernel takes at least its FLOPs at the dense peak and Q, K, V, O moved once
    at the home level's full bandwidth."""
    arch = chip(arch_name)
    op = _op(workload)
    home = arch.memory[arch.home_level]
    bound = max(op.flops / arch.peak_flops_per_s("bf16"), op.min_bytes / home.bandwidth_bytes_per_s)
    assert at_least(latency(workload, arch), bound)


# More bandwidth / more units are never slower ---------------------------------------------



@pytest.mark.parametrize(
    "arch_name",
    ["h100-sxm",
     "tpu-v4", "systolic-128"],
)
@PROPERTY
@given(m=dims, k=dims, n=dims, s=scales)
@example(m=4255, k=402, n=740, s=2.0)
def test_more_bandwidth_never_slower_gemm(arch_name: str, m: int, k: int, n: int, s: float) -> None:
    """Scaling every memory level's bandwidth by s >= 1 never makes a GEMM slower."""
    arch = chip(arch_name)
    workload = hwsim.ops.gemm(m, k, n)
    assert not_slower(latency(workload, scale_bandwidth(arch, s)), latency(workload, arch))


MQA_DECODE = hwsim.ops.attention(batch=1, n_heads=32, n_kv_heads=1, q_len=1, kv_len=8192, head_dim=128,
                                 is_causal=False)


@pytest.mark.parametrize(
    "arch_name",
    ["h100-sxm",
     "tpu-v4", "systolic-128"],
)
@PROPERTY
@given(workload=attentions(), s=scales)
@example(workload=MQA_DECODE, s=2.0)
def test_more_bandwidth_never_slower_attention(arch_name: str, workload: hwsim.Workload, s: float) -> None:
    """Scaling every memory level's bandwidth by s >= 1 never makes an attention kernel slower."""
    arch = chip(arch_name)
    assert not_slower(latency(workload, scale_bandwidth(arch, s)), latency(workload, arch))


@pytest.mark.parametrize("arch_name", ["h100-sxm", "tpu-v4"])
@PROPERTY
@given(batch=st.integers(1, 32), context_len=st.integers(1, 4096), s=scales)
def test_more_bandwidth_never_slower_decode(arch_name: str, batch: int, context_len: int, s: float) -> None:
    """Scaling every memory level's bandwidth by s >= 1 never makes a (2-layer) decode step slower."""
    arch = chip(arch_name)
    workload = hwsim.load_workload("llama2-7b", phase="decode", batch=batch, context_len=context_len,
                                   n_layers=2)
    assert not_slower(latency(workload, scale_bandwidth(arch, s)), latency(workload, arch))


@pytest.mark.parametrize("arch_name", SYSTOLIC_ARCHS)
@PROPERTY
@given(m=dims, k=dims, n=dims, s=st.integers(2, 8))
def test_more_units_never_slower_systolic(arch_name: str, m: int, k: int, n: int, s: int) -> None:
    """s times more systolic arrays never make a GEMM slower."""
    arch = chip(arch_name)
    workload = hwsim.ops.gemm(m, k, n)
    assert not_slower(latency(workload, scale_units(arch, s)), latency(workload, arch))


@pytest.mark.parametrize("arch_name", TENSOR_CORE_ARCHS)
@PROPERTY
@given(m=dims, k=dims, n=dims, s=st.integers(2, 8))
@example(m=546, k=3878, n=1292, s=4)
@example(m=2568, k=4961, n=111, s=2)
def test_more_units_never_slower_tensor_core(arch_name: str, m: int, k: int, n: int, s: int) -> None:
    """s times more SMs (each with its own shared memory) never make a GEMM slower."""
    arch = chip(arch_name)
    workload = hwsim.ops.gemm(m, k, n)
    assert not_slower(latency(workload, scale_units(arch, s)), latency(workload, arch))


# Determinism --------------------------------------------------------------------------------

@PROPERTY
@given(arch_name=st.sampled_from(ROOFLINE_ARCHS), batch=st.integers(1, 16),
       context_len=st.integers(1, 4096), n_layers=st.integers(1, 5))
def test_same_input_same_frame(arch_name: str, batch: int, context_len: int, n_layers: int) -> None:
    """Simulating the same decode twice gives identical frames and JSON."""
    workload = hwsim.load_workload("llama2-7b", phase="decode", batch=batch, context_len=context_len,
                                   n_layers=n_layers)
    first = hwsim.simulate(workload, arch_name)
    second = hwsim.simulate(workload, chip(arch_name))
    pd.testing.assert_frame_equal(first.to_frame(), second.to_frame(), check_exact=True)
    assert first.to_json() == second.to_json()
