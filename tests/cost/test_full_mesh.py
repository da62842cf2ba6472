"""A full mesh (every pair of chips with its own links) in the collective model, and the
vector-unit alternative for decode attention on systolic arrays."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.arch import load_arch, with_overrides
from hwsim.arch.system import Fabric, Link, System
from hwsim.cost.attention import attention_cost
from hwsim.cost.collective import collective_cost
from hwsim.workload.ops import Attention, Collective

GB = 1e9
CHIP = load_arch("systolic-128")


def _mesh(topology: str, n: int, lpn: int, bw: float = 10 * GB, alpha: float = 1e-6) -> System:
    link = Link(bandwidth_bytes_per_s=bw, latency_s=alpha)
    fabric = Fabric(name="net", topology=topology, dims=(n,), link=link, links_per_neighbor=lpn)  # type: ignore[arg-type]
    return System(name="test", chip=CHIP, fabrics=(fabric,))


def _op(kind: str, n_bytes: float, p: int) -> Collective:
    return Collective(op_kind=kind, n_bytes=n_bytes, group="tp", group_size=p)


def test_full_mesh_fabric_figures() -> None:
    """Eight chips with 3 links to each peer: 7 neighbours, 21 links of injection, one hop,
    and 4 x 4 pairs x 3 links across the bisection."""
    fabric = _mesh("full_mesh", 8, 3).fabrics[0]
    assert fabric.neighbors == 7 and fabric.diameter_hops == 1
    assert fabric.injection_bytes_per_s == pytest.approx(21 * 10 * GB)
    assert fabric.bisection_bytes_per_s == pytest.approx(16 * 3 * 10 * GB)


@pytest.mark.parametrize("p", [2, 4, 8])
def test_full_mesh_ring_all_reduce_uses_every_peer_link(p: int) -> None:
    """A group of p on a full mesh moves 2(p-1)/p S over (p-1) peers' links: the same time as a
    switch port of (p-1) x links, and p - 1 times a two-chip pair's bandwidth."""
    s, b, alpha = 1e9, 10 * GB, 1e-6
    mesh = collective_cost(_mesh("full_mesh", 8, 3, b, alpha), _op("all_reduce", s, p), algorithm="ring")
    assert mesh.latency_s == pytest.approx(2 * (p - 1) * alpha + 2 * (p - 1) / p * s / ((p - 1) * 3 * b))


def test_full_mesh_send_recv_gets_one_pair_of_links() -> None:
    """Point to point, a full mesh offers only the pair's own links (3, not 21)."""
    s, b = 1e9, 10 * GB
    cost = collective_cost(_mesh("full_mesh", 8, 3, b, 0.0), _op("send_recv", s, 2))
    assert cost.latency_s == pytest.approx(s / (3 * b))


def test_a_pair_on_a_full_mesh_is_slower_than_on_a_switch_of_all_its_ports() -> None:
    """Two chips of an 8-chip full mesh share 3 links; a switch would give them all 21."""
    s = 1e9
    mesh = collective_cost(_mesh("full_mesh", 8, 3), _op("all_reduce", s, 2))
    switch = collective_cost(_mesh("switch", 8, 21), _op("all_reduce", s, 2))
    assert mesh.latency_s > 3 * switch.latency_s


def _decode_attention(batch: int, heads: int, kv_heads: int, ctx: int) -> Attention:
    w = hwsim.ops.attention(batch, heads, kv_heads, 1, ctx, 128, False, "bf16")
    (op,) = [n["op"] for _, n in w.passes[0].segments[0].graph.nodes(data=True)]
    return op  # type: ignore[no-any-return]


def test_decode_attention_on_a_large_array_runs_at_the_vector_rate() -> None:
    """On Gaudi 2's 256x256 MMEs a decode query fills one row; the vector units' time
    (one FMA per lane per score and dimension, plus 4 score ops) bounds it instead."""
    chip = load_arch("gaudi2")
    op = _decode_attention(64, 32, 32, 2048)
    cost = attention_cost(chip, op)
    macs = 64 * 32 * 2048 * 256
    on_vector_s = (macs + 4 * 64 * 32 * 2048) / chip.vector_units.peak_ops_per_s
    assert cost.compute_cycles / chip.compute_units.clock_hz / chip.compute_units.fraction("bf16") \
        == pytest.approx(on_vector_s)


def test_faster_vector_units_never_slow_systolic_attention() -> None:
    """Doubling the vector units never makes systolic attention slower (prefill or decode)."""
    chip = load_arch("tpu-v5e")
    fast = with_overrides(chip, {"vector_units.count": 2 * chip.vector_units.count})
    for op in (_decode_attention(8, 16, 16, 4096), _decode_attention(8, 32, 8, 512)):
        assert attention_cost(fast, op).latency_s <= attention_cost(chip, op).latency_s
