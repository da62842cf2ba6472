"""Fixed per-call collective latency and the in-switch reduction's own latency."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hwsim.arch import load_arch
from hwsim.arch.system import Fabric, Link, System, load_system
from hwsim.cost.collective import collective_cost, collective_options
from hwsim.workload.ops import Collective

CHIP = load_arch("systolic-128")
GB = 1e9
HOP_S = 1e-6


def _switch(
    p: int = 8, *, call_s: float = 0.0, switch_s: float | None = None, reduce: bool = True, name: str = "sw",
) -> Fabric:
    return Fabric(
        name=name, topology="switch", dims=(p,), link=Link(bandwidth_bytes_per_s=10 * GB, latency_s=HOP_S),
        links_per_neighbor=2, in_network_reduction=reduce, in_network_reduction_fraction=0.5,
        in_network_reduction_latency_s=switch_s, collective_latency_s=call_s,
    )


def _ring(p: int, *, call_s: float = 0.0, name: str = "ring") -> Fabric:
    link = Link(bandwidth_bytes_per_s=10 * GB, latency_s=3 * HOP_S)
    return Fabric(name=name, topology="ring", dims=(p,), link=link, collective_latency_s=call_s)


def _system(*fabrics: Fabric) -> System:
    return System(name="test", chip=CHIP, fabrics=fabrics)


def _op(kind: str, n_bytes: float, p: int) -> Collective:
    return Collective(op_kind=kind, n_bytes=n_bytes, group="tp", group_size=p)


def test_ring_all_reduce_closed_form_with_call_latency() -> None:
    """Ring all-reduce = c + 2(p-1) alpha + 2(p-1)/p S / B on a switch (B = 2 links x 10 GB/s)."""
    p, n, c = 8, 1e6, 7e-6
    cost = collective_cost(_system(_switch(p, call_s=c)), _op("all_reduce", n, p), algorithm="ring")
    assert cost.latency_s == pytest.approx(c + 2 * (p - 1) * HOP_S + 2 * (p - 1) / p * n / (20 * GB))


def test_in_switch_all_reduce_closed_form_with_its_own_latency() -> None:
    """In-switch all-reduce = c + alpha_switch + S / (fraction B); alpha_switch replaces two hops."""
    p, n, c, sw = 8, 1e6, 7e-6, 1.8e-5
    system = _system(_switch(p, call_s=c, switch_s=sw))
    cost = collective_cost(system, _op("all_reduce", n, p), algorithm="in_switch")
    assert cost.latency_s == pytest.approx(c + sw + n / (0.5 * 20 * GB))


def test_zero_latencies_reproduce_the_two_hop_forms() -> None:
    """With the defaults, in-switch pays two hops and ring its 2(p-1) hops, as before the fields."""
    p, n = 8, 1e6
    system = _system(_switch(p))
    opts = collective_options(system, _op("all_reduce", n, p))
    assert opts["in_switch"].latency_s == pytest.approx(2 * HOP_S + n / (0.5 * 20 * GB), rel=1e-12)
    ring_s = 2 * (p - 1) * HOP_S + 2 * (p - 1) / p * n / (20 * GB)
    assert opts["ring"].latency_s == pytest.approx(ring_s, rel=1e-12)


@pytest.mark.parametrize("kind", ["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"])
def test_every_algorithm_pays_the_call_latency_once(kind: str) -> None:
    """Across two fabrics (8 chips on a switch x a ring of 4) each algorithm's time grows by
    exactly the larger fabric's call latency, not once per level or phase."""
    n, c_inner, c_outer = 4e6, 5e-6, 9e-6
    base = _system(_switch(8, name="in"), _ring(4, name="out"))
    slow = _system(_switch(8, call_s=c_inner, name="in"), _ring(4, call_s=c_outer, name="out"))
    op = _op(kind, n, 32)
    before, after = collective_options(base, op), collective_options(slow, op)
    assert before.keys() == after.keys()
    for name in before:
        assert after[name].latency_s - before[name].latency_s == pytest.approx(c_outer, rel=1e-9), name
        assert after[name].link_bytes == before[name].link_bytes
        assert after[name].energy_j == before[name].energy_j


@settings(max_examples=40, deadline=None)
@given(
    small=st.floats(8.0, 1e9),
    factor=st.floats(1.0, 1e3),
    call_s=st.floats(0.0, 5e-5),
    switch_s=st.floats(0.0, 5e-5),
    p=st.integers(2, 16),
)
def test_latency_is_monotone_in_message_size(
    small: float, factor: float, call_s: float, switch_s: float, p: int
) -> None:
    """A larger all-reduce never finishes sooner, whatever the fixed latencies."""
    system = _system(_switch(p, call_s=call_s, switch_s=switch_s))
    t_small = collective_cost(system, _op("all_reduce", small, p)).latency_s
    t_large = collective_cost(system, _op("all_reduce", small * factor, p)).latency_s
    assert t_large >= t_small * (1 - 1e-12)
    assert t_small >= call_s + min(switch_s, 2 * HOP_S * math.ceil(math.log2(p)), 2 * (p - 1) * HOP_S) - 1e-18


@pytest.mark.parametrize("value", [-1e-6, math.nan, math.inf, 2.0])
@pytest.mark.parametrize("field", ["collective_latency_s", "in_network_reduction_latency_s"])
def test_bad_latencies_are_refused(field: str, value: float) -> None:
    """Negative, non-finite and implausible (> 1 s) latencies are refused."""
    with pytest.raises(ValidationError, match=field):
        if field == "collective_latency_s":
            _switch(call_s=value)
        else:
            _switch(switch_s=value)


def test_reduction_latency_needs_a_reducing_switch() -> None:
    """An in-switch latency on a switch that does not reduce is refused, naming the fabric."""
    with pytest.raises(ValidationError, match="fabric 'sw': in_network_reduction_latency_s needs"):
        _switch(switch_s=1e-5, reduce=False)


def test_dgx_h100_decode_all_reduce_is_latency_bound() -> None:
    """A decode-sized TP8 all-reduce (16 KB) on dgx-h100 is latency bound: its fixed part is
    over 90 % of its time, and it costs no less than the ~6 us measured for 2 GPUs with NVLS
    ([NCCL-1259]; the latency grows with the group), nor less than NCCL's 6.6 us base."""
    system = load_system("dgx-h100")
    tiny = collective_cost(system, _op("all_reduce", 8, 8))
    decode = collective_cost(system, _op("all_reduce", 16e3, 8))
    assert tiny.latency_s >= 6.6e-6
    assert tiny.latency_s / decode.latency_s > 0.9
