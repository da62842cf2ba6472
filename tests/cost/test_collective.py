"""Collective costs: alpha-beta closed forms, properties, and published bandwidths."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.arch import load_arch
from hwsim.arch.system import Fabric, Link, System, load_system
from hwsim.cost.collective import (
    CollectiveCost,
    bus_bandwidth_bytes_per_s,
    collective_cost,
    collective_options,
)
from hwsim.workload.ops import COLLECTIVE_KINDS, Collective

NETWORK_KINDS = tuple(k for k in COLLECTIVE_KINDS if not k.startswith("host_"))

CHIP = load_arch("systolic-128")
GB = 1e9


def _fabric(
    topology: str, dims: tuple[int, ...], bw: float = 10 * GB, latency: float = 1e-6, *, name: str = "net",
    lpn: int = 1, pj: float = 0.0, reduce: bool = False,
) -> Fabric:
    link = Link(bandwidth_bytes_per_s=bw, latency_s=latency, energy_pj_per_bit=pj)
    return Fabric(
        name=name, topology=topology, dims=dims, link=link, links_per_neighbor=lpn,  # type: ignore[arg-type]
        in_network_reduction=reduce,
    )


def _system(*fabrics: Fabric) -> System:
    return System(name="test", chip=CHIP, fabrics=fabrics)


def _op(kind: str, n_bytes: float, p: int) -> Collective:
    return Collective(op_kind=kind, n_bytes=n_bytes, group="tp", group_size=p)


# Closed forms ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 8, 16])
@pytest.mark.parametrize("topology", ["ring", "switch"])
def test_ring_all_reduce_link_bytes(n: int, topology: str) -> None:
    """A ring all-reduce of S bytes over n chips sends exactly 2(n-1)/n S from each chip."""
    s = 3.0e8
    cost = collective_cost(_system(_fabric(topology, (n,))), _op("all_reduce", s, n), algorithm="ring")
    assert cost.link_bytes == 2 * (n - 1) / n * s
    assert cost.algorithm == "ring"


def test_ring_all_reduce_time_on_a_bidirectional_ring() -> None:
    """On a closed ring the time is 2(n-1) alpha + 2(n-1)/n S / (2 b): both directions used."""
    n, s, b, alpha = 8, 1e9, 25 * GB, 2e-6
    system = _system(_fabric("ring", (n,), b, alpha))
    cost = collective_cost(system, _op("all_reduce", s, n), algorithm="ring")
    assert cost.latency_s == pytest.approx(2 * (n - 1) * alpha + 2 * (n - 1) / n * s / (2 * b))


def test_ring_all_reduce_time_on_a_switch() -> None:
    """On a switch the ring gets each chip's port: 2(n-1) alpha + 2(n-1)/n S / (links x b)."""
    n, s, b, alpha = 8, 1e9, 25 * GB, 2e-6
    system = _system(_fabric("switch", (n,), b, alpha, lpn=18))
    cost = collective_cost(system, _op("all_reduce", s, n), algorithm="ring")
    assert cost.latency_s == pytest.approx(2 * (n - 1) * alpha + 2 * (n - 1) / n * s / (18 * b))


def test_ring_on_an_open_line_uses_one_direction() -> None:
    """A mesh line (no wraparound) gives a ring one link's bandwidth, half a torus ring's."""
    s = 1e9
    mesh = collective_cost(_system(_fabric("mesh_2d", (8, 1))), _op("all_reduce", s, 8), algorithm="ring")
    torus = collective_cost(_system(_fabric("torus_2d", (8, 1))), _op("all_reduce", s, 8), algorithm="ring")
    assert mesh.latency_s - 14e-6 == pytest.approx(2 * (torus.latency_s - 14e-6))


@pytest.mark.parametrize("kind", ["all_gather", "reduce_scatter"])
def test_all_gather_is_half_an_all_reduce_on_a_ring(kind: str) -> None:
    """A ring all-gather (or reduce-scatter) costs exactly half a ring all-reduce."""
    system = _system(_fabric("ring", (8,)))
    half = collective_cost(system, _op(kind, 5e8, 8), algorithm="ring")
    full = collective_cost(system, _op("all_reduce", 5e8, 8), algorithm="ring")
    assert half.latency_s == pytest.approx(full.latency_s / 2)
    assert half.link_bytes == pytest.approx(full.link_bytes / 2)


def test_in_switch_reduction_beats_ring_for_large_buffers() -> None:
    """On dgx-h100 (NVLS) a 1 GB all-reduce is fastest in the switch, and chosen so."""
    system, op = load_system("dgx-h100"), _op("all_reduce", 1e9, 8)
    options = collective_options(system, op)
    assert options["in_switch"].latency_s < options["ring"].latency_s
    assert collective_cost(system, op).algorithm == "in_switch"
    assert options["in_switch"].link_bytes == 1e9


def test_tree_beats_ring_for_tiny_buffers() -> None:
    """For an 8-byte all-reduce over 8 chips the tree (log-depth latency) beats the ring."""
    system, op = _system(_fabric("switch", (8,), 25 * GB, 2e-6, lpn=18)), _op("all_reduce", 8, 8)
    tree = collective_cost(system, op, algorithm="tree")
    ring = collective_cost(system, op, algorithm="ring")
    assert tree.latency_s == pytest.approx(2 * 3 * 2e-6, rel=1e-3)
    assert tree.latency_s < ring.latency_s
    assert collective_cost(system, op).algorithm == "tree"


def _ring_half_s(n: int, s: float, b: float, alpha: float) -> float:
    return (n - 1) * alpha + (n - 1) / n * s / b


def test_dimension_ordered_torus_all_reduce_is_the_sum_of_its_ring_phases() -> None:
    """On a 4x4 torus: reduce-scatter along x, all-reduce of S/4 along y, all-gather along x."""
    s, b, alpha = 1e9, 50 * GB, 1e-6
    system = _system(_fabric("torus_2d", (4, 4), b, alpha))
    cost = collective_cost(system, _op("all_reduce", s, 16), algorithm="dimension_ordered")
    x_phase = _ring_half_s(4, s, 2 * b, alpha)  # closed 4-rings: both directions
    y_all_reduce = 2 * _ring_half_s(4, s / 4, 2 * b, alpha)
    assert cost.latency_s == pytest.approx(x_phase + y_all_reduce + x_phase)
    assert cost.algorithm == "dimension_ordered"
    assert cost.link_bytes == pytest.approx(2 * 0.75 * s + 2 * 0.75 * s / 4)


def test_multi_axis_torus_all_reduce_reaches_the_injection_bound() -> None:
    """Sharding over the 3 axes of a 4x4x4 torus keeps all 6 links busy: 2(p-1)/p S / (6 b)."""
    s, b = 1e9, 45 * GB
    system = _system(_fabric("torus_3d", (4, 4, 4), b, 0.0))
    cost = collective_cost(system, _op("all_reduce", s, 64), algorithm="multi_axis")
    assert cost.latency_s == pytest.approx(2 * 63 / 64 * s / (6 * b))
    assert collective_cost(system, _op("all_reduce", s, 64)).algorithm == "multi_axis"


def test_hierarchical_all_reduce_closed_form() -> None:
    """8x8: reduce-scatter in the node, all-reduce of S/8 across nodes, all-gather in the node."""
    s, big, small, a_in, a_out = 1e9, 400 * GB, 50 * GB, 2e-6, 5e-6
    system = _system(_fabric("switch", (8,), big, a_in, name="nvl"),
                     _fabric("switch", (8,), small, a_out, name="ib"))
    cost = collective_cost(system, _op("all_reduce", s, 64), algorithm="hierarchical")
    inner = _ring_half_s(8, s, big, a_in)
    outer = 2 * _ring_half_s(8, s / 8, small, a_out)
    assert cost.latency_s == pytest.approx(2 * inner + outer)
    assert cost.fabric == "nvl+ib"
    piped = collective_cost(system, _op("all_reduce", s, 64), algorithm="pipelined")
    latencies = 2 * 7 * a_in + 2 * 7 * a_out
    assert piped.latency_s == pytest.approx(latencies + max(2 * (inner - 7 * a_in), outer - 14 * a_out))


def test_switch_all_to_all_is_injection_bound() -> None:
    """All-to-all on a switch: (p-1) alpha + (p-1)/p S / port bandwidth."""
    s, b, alpha = 1e9, 50 * GB, 1e-6
    cost = collective_cost(_system(_fabric("switch", (8,), b, alpha)), _op("all_to_all", s, 8))
    assert cost.latency_s == pytest.approx(7 * alpha + 7 / 8 * s / b)
    assert cost.algorithm == "direct"


def test_ring_all_to_all_is_bisection_bound() -> None:
    """All-to-all on a 16-ring: half the chips send half their data across 2 cut links each way."""
    s, b = 1e9, 50 * GB
    cost = collective_cost(_system(_fabric("ring", (16,), b, 0.0)), _op("all_to_all", s, 16))
    assert cost.latency_s == pytest.approx((16 / 2) * (s / 2) / (2 * b))
    assert cost.link_bytes == pytest.approx(15 / 16 * s)


def test_send_recv_is_one_hop() -> None:
    """send/recv between pipeline neighbours: alpha + S / b on a torus neighbour link."""
    s, b, alpha = 1e8, 45 * GB, 1e-6
    cost = collective_cost(_system(_fabric("torus_2d", (4, 4), b, alpha)), _op("send_recv", s, 4), stride=4)
    assert cost.latency_s == pytest.approx(alpha + s / b)
    assert (cost.algorithm, cost.link_bytes) == ("p2p", s)


def test_send_recv_runs_at_the_slowest_level() -> None:
    """A pipeline that crosses nodes is limited by the slower fabric it crosses."""
    system = load_system("h100-cluster-64")
    cost = collective_cost(system, _op("send_recv", 1e9, 16), stride=4)
    assert cost.fabric == "infiniband"
    assert cost.latency_s == pytest.approx(5e-6 + 1e9 / 50e9)


def test_energy_is_bytes_times_hops_times_pj_per_bit() -> None:
    """Link energy = members x bytes sent x hops x 8 x pJ/bit: 1 hop per step on a switch, 2 at stride 2."""
    s = 1e9
    switch = _system(_fabric("switch", (8,), pj=10.0))
    cost = collective_cost(switch, _op("all_reduce", s, 8), algorithm="ring")
    assert cost.energy_j == pytest.approx(8 * 2 * 7 / 8 * s * 8 * 10.0e-12)
    ring = _system(_fabric("ring", (16,), pj=10.0))
    strided = collective_cost(ring, _op("all_reduce", s, 8), stride=2, algorithm="ring")
    assert strided.energy_j == pytest.approx(2 * cost.energy_j)


def test_group_of_one_is_free() -> None:
    """A group of one chip costs nothing and names algorithm 'none'."""
    for kind in NETWORK_KINDS:
        cost = collective_cost(load_system("dgx-h100"), _op(kind, 1e9, 1))
        assert cost == CollectiveCost(0.0, 0.0, 0.0, "none", "")


def test_illegal_algorithm_and_oversized_group_raise() -> None:
    """Forcing an algorithm the group cannot use, or a group too large, raises ValueError."""
    torus = load_system("tpu-v4-64")
    with pytest.raises(ValueError, match="cannot use algorithm 'in_switch'"):
        collective_cost(torus, _op("all_reduce", 1e6, 64), algorithm="in_switch")
    with pytest.raises(ValueError, match="cannot use algorithm 'multi_axis'"):
        collective_cost(load_system("h100-cluster-64"), _op("all_reduce", 1e6, 64), algorithm="multi_axis")
    with pytest.raises(ValueError, match="needs 128 chips"):
        collective_cost(torus, _op("all_reduce", 1e6, 128))


def test_bus_bandwidth_of_a_large_ring_all_reduce_is_the_ring_bandwidth() -> None:
    """NCCL bus bandwidth of a huge ring all-reduce approaches the per-chip ring bandwidth."""
    op = _op("all_reduce", 1e12, 8)
    cost = collective_cost(_system(_fabric("switch", (8,), 100 * GB)), op, algorithm="ring")
    assert bus_bandwidth_bytes_per_s(op, cost) == pytest.approx(100 * GB, rel=1e-4)
    assert bus_bandwidth_bytes_per_s(op, CollectiveCost(0.0, 0.0, 0.0, "none", "")) == 0.0


# Published and measured bandwidths ------------------------------------------------------


def test_dgx_h100_send_recv_matches_measured_nvlink_p2p() -> None:
    """dgx-h100 p2p within 25 % of the measured ~375 GB/s per direction (C9, [NCCL-1264])."""
    op = _op("send_recv", 1e9, 8)
    cost = collective_cost(load_system("dgx-h100"), op)
    assert op.n_bytes / cost.latency_s == pytest.approx(375e9, rel=0.25)


def test_dgx_h100_ring_all_reduce_bus_bandwidth_matches_measured() -> None:
    """Ring all-reduce bus bandwidth within 25 % of the ~370 GB/s measured on 8x H100 without
    SHARP, and the NVLS one within 25 % of ~480 GB/s ([SB-GPU], intra-node collectives)."""
    system, op = load_system("dgx-h100"), _op("all_reduce", 1e10, 8)
    ring = collective_cost(system, op, algorithm="ring")
    nvls = collective_cost(system, op)
    assert bus_bandwidth_bytes_per_s(op, ring) == pytest.approx(370e9, rel=0.25)
    assert bus_bandwidth_bytes_per_s(op, nvls) == pytest.approx(480e9, rel=0.25)


@pytest.mark.parametrize(
    ("system", "pod_chips", "pod_all_reduce_bytes_per_s"),
    [("tpu-v4-64", 4096, 1.1e15), ("tpu-v5e-256", 256, 51.2e12)],
)
def test_tpu_all_reduce_bus_bandwidth_matches_pod_figure(
    system: str, pod_chips: int, pod_all_reduce_bytes_per_s: float
) -> None:
    """Per-chip all-reduce bus bandwidth within 25 % of the pod's published all-reduce
    bandwidth per chip (A4: v4 1.1 PB/s over 4,096 chips, v5e 51.2 TB/s over 256)."""
    sys_ = load_system(system)
    op = _op("all_reduce", 1e10, sys_.n_chips)
    cost = collective_cost(sys_, op)
    per_chip = pod_all_reduce_bytes_per_s / pod_chips
    assert bus_bandwidth_bytes_per_s(op, cost) == pytest.approx(per_chip, rel=0.25)


def test_cluster_is_slower_than_one_nvlink_domain_of_64() -> None:
    """64 H100s over InfiniBand all-reduce 1 GB slower than one 64-GPU NVSwitch domain with NVLS."""
    cluster = load_system("h100-cluster-64")
    one_domain = _system(cluster.fabrics[0].model_copy(update={"dims": (64,)}))
    op = _op("all_reduce", 1e9, 64)
    assert collective_cost(cluster, op).latency_s > collective_cost(one_domain, op).latency_s


# Properties ---------------------------------------------------------------------------

_TOPOLOGIES = st.sampled_from([
    ("ring", (8,)), ("switch", (8,)), ("torus_2d", (4, 4)), ("torus_2d", (8, 2)),
    ("torus_3d", (4, 4, 2)), ("mesh_2d", (4, 4)),
])


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[Fabric], Collective, int]:
    fabrics = []
    for k in range(draw(st.integers(1, 2))):
        topology, dims = draw(_TOPOLOGIES)
        fabrics.append(_fabric(
            topology, dims, bw=draw(st.floats(1e9, 1e12)), latency=draw(st.floats(0, 1e-5)),
            name=f"f{k}", lpn=draw(st.integers(1, 4)), pj=draw(st.floats(0, 20)),
            reduce=topology == "switch" and draw(st.booleans()),
        ))
    n = math.prod(f.size for f in fabrics)
    size = draw(st.integers(2, n))
    stride = draw(st.integers(1, n // size))
    kind = draw(st.sampled_from(NETWORK_KINDS))
    return fabrics, _op(kind, draw(st.floats(1.0, 1e10)), size), stride


@settings(max_examples=150, deadline=None)
@given(_cases(), st.integers(0, 1), st.floats(1.0, 10.0))
def test_more_link_bandwidth_is_never_slower(
    case: tuple[list[Fabric], Collective, int], which: int, factor: float
) -> None:
    """Raising one fabric's link bandwidth never makes a collective slower."""
    fabrics, op, stride = case
    k = min(which, len(fabrics) - 1)
    old = fabrics[k].link
    link = old.model_copy(update={"bandwidth_bytes_per_s": old.bandwidth_bytes_per_s * factor})
    faster = list(fabrics)
    faster[k] = fabrics[k].model_copy(update={"link": link})
    before = collective_cost(_system(*fabrics), op, stride).latency_s
    after = collective_cost(_system(*faster), op, stride).latency_s
    assert after <= before * (1 + 1e-12)


@settings(max_examples=150, deadline=None)
@given(_cases(), st.floats(1.0, 100.0))
def test_more_bytes_is_never_faster(case: tuple[list[Fabric], Collective, int], factor: float) -> None:
    """A larger buffer never makes a collective faster, nor sends fewer bytes."""
    fabrics, op, stride = case
    bigger = _op(op.op_kind, op.n_bytes * factor, op.group_size)
    small = collective_cost(_system(*fabrics), op, stride)
    large = collective_cost(_system(*fabrics), bigger, stride)
    assert large.latency_s >= small.latency_s * (1 - 1e-12)
    assert large.link_bytes >= small.link_bytes * (1 - 1e-12)


@settings(max_examples=50, deadline=None)
@given(_cases())
def test_group_of_one_costs_zero(case: tuple[list[Fabric], Collective, int]) -> None:
    """Any collective over a group of one chip costs no time, bytes or energy."""
    fabrics, op, _ = case
    cost = collective_cost(_system(*fabrics), _op(op.op_kind, op.n_bytes, 1), stride=1)
    assert (cost.latency_s, cost.link_bytes, cost.energy_j, cost.algorithm) == (0.0, 0.0, 0.0, "none")


@settings(max_examples=100, deadline=None)
@given(
    st.floats(1e10, 1e12), st.floats(0.01, 0.125), st.floats(0, 1e-5), st.floats(1.0, 10.0),
    st.floats(1.0, 1e10), st.booleans(),
)
def test_hierarchy_is_slower_than_one_switch_of_64(
    inner_bw: float, outer_share: float, latency: float, outer_latency_factor: float, n_bytes: float,
    reduce: bool,
) -> None:
    """A hierarchical all-reduce over 8x8 (outer fabric at most 1/8 of the inner bandwidth, no
    slower latency) is never faster than the best all-reduce on one 64-chip switch of the same
    inner fabric."""
    inner = _fabric("switch", (8,), inner_bw, latency, name="in", reduce=reduce)
    outer = _fabric("switch", (8,), inner_bw * outer_share, latency * outer_latency_factor, name="out")
    op = _op("all_reduce", n_bytes, 64)
    hierarchical = collective_cost(_system(inner, outer), op, algorithm="hierarchical")
    flat = collective_cost(_system(inner.model_copy(update={"dims": (64,)})), op)
    assert hierarchical.latency_s >= flat.latency_s * (1 - 1e-12)
