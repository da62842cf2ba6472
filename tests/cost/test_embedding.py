"""Embedding-bag cost: closed forms (lookup bytes, Zipf hit rate), placement and spill,
and monotonicity (hit rate, bandwidth, table size)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim
from hwsim.arch.system import load_system
from hwsim.cost.embedding import (
    access_bytes,
    embedding_bag_cost,
    embedding_tiers,
    generalized_harmonic,
    lookup_bytes,
    place_tables,
    zipf_mass,
)
from hwsim.errors import MappingError
from hwsim.workload.ops_embedding import INDEX_BYTES, EmbeddingBag, TableShard


@pytest.fixture(scope="module")
def h100() -> hwsim.Chip:
    return hwsim.load_arch("h100-sxm")


@pytest.fixture(scope="module")
def host():  # type: ignore[no-untyped-def]
    return load_system("dgx-h100").host


def _table(**kw: object) -> TableShard:
    base: dict[str, object] = {"name": "t", "rows": 1_000_000, "dim": 128, "lookups": 100_000.0, "bags": 1000,
                               "out_dim": 128, "dtype": "fp32"}
    return TableShard(**{**base, **kw})  # type: ignore[arg-type]


def test_lookup_bytes_closed_form(h100: hwsim.Chip) -> None:
    """HBM reads = lookups x dim x dtype bytes (rows a whole number of bursts) + indices."""
    t = _table()
    cost = embedding_bag_cost(h100, EmbeddingBag((t,)))
    hbm = next(x for x in cost.traffic if x.level == "hbm")
    assert hbm.read_bytes == pytest.approx(100_000 * 128 * 4 + 100_000 * INDEX_BYTES)
    assert hbm.write_bytes == pytest.approx(1000 * 128 * 4)  # pooled vectors, fp32
    assert t.lookup_bytes == lookup_bytes(100_000, 128, "fp32") == 100_000 * 128 * 4
    assert lookup_bytes(10, 64, "int8", 4.0) == 10 * (64 + 4)


def test_row_smaller_than_a_burst_wastes_bandwidth(h100: hwsim.Chip) -> None:
    """A 12 B row (8 int8 + 4 B scale/bias) moves one 64 B burst."""
    t = _table(dim=8, out_dim=8, dtype="int8", row_overhead_bytes=4.0)
    cost = embedding_bag_cost(h100, EmbeddingBag((t,)))
    hbm = next(x for x in cost.traffic if x.level == "hbm")
    assert hbm.read_bytes == pytest.approx(100_000 * 64 + 100_000 * INDEX_BYTES)
    assert access_bytes(12, 64) == 64 and access_bytes(128, 64) == 128 and access_bytes(129, 64) == 192


@pytest.mark.parametrize("alpha", [0.5, 1.0, 1.2])
def test_zipf_mass_matches_the_sum(alpha: float) -> None:
    """H(k, s) / H(n, s) agrees with the explicit sum to 1e-9 (the tail is an integral)."""
    n = 200_000
    weights = np.arange(1, n + 1, dtype=float) ** -alpha
    for k in (1, 10, 4096, 5000, 77_777, n - 1):
        assert zipf_mass(k, n, alpha) == pytest.approx(weights[:k].sum() / weights.sum(), rel=1e-9)
    assert generalized_harmonic(10, 1.0) == pytest.approx(sum(1 / i for i in range(1, 11)))


def test_zipf_mass_limits() -> None:
    """Uniform accesses: the hottest k of n rows get k / n; none and all get 0 and 1."""
    assert zipf_mass(250, 1000, 0.0) == 0.25
    assert zipf_mass(0, 1000, 1.0) == 0.0 and zipf_mass(1000, 1000, 1.0) == 1.0
    assert zipf_mass(10, 1000, 1.1) > zipf_mass(10, 1000, 0.9) > 10 / 1000


def test_cache_hit_rate_from_zipf(h100: hwsim.Chip, host: object) -> None:
    """A host table's cache in HBM serves H(C, s) / H(N, s) of the lookups."""
    t = _table(placement="host", zipf_alpha=1.0, cache_rows=10_000)
    (p,) = place_tables(EmbeddingBag((t,)), embedding_tiers(h100, host))  # type: ignore[arg-type]
    assert p.cache_tier == "hbm"
    assert p.cache_hit_rate == pytest.approx(zipf_mass(10_000, 1_000_000, 1.0))
    served = dict(p.lookups_by_tier)
    assert served["hbm"] + served["host"] == pytest.approx(t.lookups)


def test_higher_hit_rate_never_slower(h100: hwsim.Chip, host: object) -> None:
    """A host-resident table with an HBM cache: latency falls as the given hit rate rises."""
    times = [embedding_bag_cost(h100, EmbeddingBag((_table(placement="host", cache_rows=50_000,
                                                           cache_hit_rate=h),)), host).latency_s  # type: ignore[arg-type]
             for h in (0.0, 0.3, 0.6, 0.9, 1.0)]
    assert all(b <= a for a, b in zip(times, times[1:], strict=False))
    assert times[-1] < times[0]


def test_more_bandwidth_never_slower(h100: hwsim.Chip, host: object) -> None:
    """Doubling HBM or host bandwidth never slows the gathers."""
    op = EmbeddingBag((_table(rows=30_000_000, zipf_alpha=0.8), _table(name="u", placement="host")))
    base = embedding_bag_cost(h100, op, host).latency_s  # type: ignore[arg-type]
    level = h100.memory["hbm"]
    hbm = level.model_copy(update={"bandwidth_bytes_per_s": 2 * level.bandwidth_bytes_per_s})
    faster = h100.model_copy(update={"memory": {**h100.memory, "hbm": hbm}})
    assert embedding_bag_cost(faster, op, host).latency_s <= base  # type: ignore[arg-type]
    wider = host.model_copy(update={"bandwidth_bytes_per_s": 2 * host.bandwidth_bytes_per_s})  # type: ignore[attr-defined]
    assert embedding_bag_cost(h100, op, wider).latency_s < base


def test_bigger_table_in_the_same_tier_not_faster(h100: hwsim.Chip, host: object) -> None:
    """More rows in HBM (skewed, with an L2 cache): the cache covers less, never faster."""
    ops = [EmbeddingBag((_table(rows=r, zipf_alpha=1.0, cache_rows=20_000),))
           for r in (100_000, 1_000_000, 10_000_000, 50_000_000)]
    times = [embedding_bag_cost(h100, op).latency_s for op in ops]
    assert all(b >= a for a, b in zip(times, times[1:], strict=False))


def test_a_table_too_big_for_hbm_spills_to_host(h100: hwsim.Chip, host: object) -> None:
    """200 M x 128 fp32 rows (102 GB) spill past 80 GB of HBM into host DRAM: slower than
    the part that fits, and refused on a chip without host memory."""
    big = _table(rows=200_000_000)
    (p,) = place_tables(EmbeddingBag((big,)), embedding_tiers(h100, host))  # type: ignore[arg-type]
    rows = dict(p.rows_by_tier)
    assert rows["hbm"] + rows["host"] == big.rows and rows["host"] > 0
    spilled = embedding_bag_cost(h100, EmbeddingBag((big,)), host)  # type: ignore[arg-type]
    fits = embedding_bag_cost(h100, EmbeddingBag((_table(rows=100_000_000),)), host)  # type: ignore[arg-type]
    assert spilled.latency_s > fits.latency_s and spilled.bound == "host"
    with pytest.raises(MappingError, match="embedding table 't'"):
        embedding_bag_cost(h100, EmbeddingBag((big,)))


def test_hot_tables_take_hbm_first(h100: hwsim.Chip, host: object) -> None:
    """Auto placement puts the densest table (lookups per byte) in HBM, the sparse one spills."""
    hot = _table(name="hot", rows=100_000_000, lookups=1e6)
    cold = _table(name="cold", rows=100_000_000, lookups=1e3)
    placed = {p.table: dict(p.rows_by_tier) for p in place_tables(EmbeddingBag((cold, hot)),
                                                                 embedding_tiers(h100, host))}  # type: ignore[arg-type]
    assert placed["hot"] == {"hbm": hot.rows}
    assert placed["cold"].get("host", 0) > 0


def test_backward_read_modify_writes_rows_and_state(h100: hwsim.Chip) -> None:
    """Training: each lookup reads and writes its row and its fp32 Adagrad state (a burst each)."""
    t = _table()
    op = EmbeddingBag((t,), backward=True, state_bytes_per_row=4.0)
    hbm = next(x for x in embedding_bag_cost(h100, op).traffic if x.level == "hbm")
    assert hbm.write_bytes == pytest.approx(t.lookups * (512 + 64))
    assert hbm.read_bytes == pytest.approx(t.lookups * (512 + 64 + INDEX_BYTES) + op.output_bytes)
    assert op.flops > 0 and math.isfinite(embedding_bag_cost(h100, op).latency_s)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1_000, 300_000_000), dim=st.sampled_from([4, 16, 64, 128, 256]),
       dtype=st.sampled_from(["fp32", "fp16", "int8"]), alpha=st.one_of(st.none(), st.floats(0.0, 1.5)),
       cache=st.integers(0, 5_000_000), hits=st.tuples(st.floats(0, 1), st.floats(0, 1)),
       placement=st.sampled_from(["auto", "hbm", "host"]))
def test_monotone_in_hit_rate_and_bandwidth(rows: int, dim: int, dtype: str, alpha: float | None, cache: int,
                                            hits: tuple[float, float], placement: str) -> None:
    """Property: lookups are conserved over the tiers; a higher given hit rate, or more HBM or
    host bandwidth, never slows a lookup."""
    chip, host = hwsim.load_arch("h100-sxm"), load_system("dgx-h100").host
    assert host is not None
    lo, hi = sorted(hits)

    def op(hit: float | None) -> EmbeddingBag:
        t = _table(rows=rows, dim=dim, out_dim=dim, dtype=dtype, zipf_alpha=alpha, placement=placement,
                   cache_rows=min(cache, rows), cache_hit_rate=hit)
        return EmbeddingBag((t,))

    try:
        slow, fast = (embedding_bag_cost(chip, op(h), host).latency_s for h in (lo, hi))
    except MappingError:
        return  # pinned to HBM and too big for HBM and host together
    assert fast <= slow * (1 + 1e-12)
    for hit in (lo, None):  # every lookup is served by exactly one tier or the cache
        (placed,) = place_tables(op(hit), embedding_tiers(chip, host))
        assert sum(n for _, n in placed.lookups_by_tier) == pytest.approx(100_000.0)
    base = embedding_bag_cost(chip, op(None), host).latency_s
    wider = host.model_copy(update={"bandwidth_bytes_per_s": 4 * host.bandwidth_bytes_per_s})
    level = chip.memory["hbm"]
    hbm = level.model_copy(update={"bandwidth_bytes_per_s": 2 * level.bandwidth_bytes_per_s})
    faster = chip.model_copy(update={"memory": {**chip.memory, "hbm": hbm}})
    assert embedding_bag_cost(chip, op(None), wider).latency_s <= base * (1 + 1e-12)
    assert embedding_bag_cost(faster, op(None), host).latency_s <= base * (1 + 1e-12)
