"""Cost of embedding-bag lookups (recommendation models): where the tables live, how
much of each gathered row the memory really moves, and how often a hot-row cache hits.

Pure functions; see ``docs/embeddings.md``.

- **Tiers.** A chip's home level (HBM) and, on a system with one, host DRAM over the
  host link form the placement tiers, fastest first; the level inside home (L2, SRAM)
  can hold a hot-row cache only. The tables of an :class:`EmbeddingBag` are placed
  together: tables pinned to a tier first (in order), then the ``auto`` tables by
  access density (lookups per stored byte, densest first, as TorchRec's planner
  ranks them); a table that does not fit spills its coldest rows to the next tier.
  Home capacity is what ``reserved_bytes`` (dense weights, activations) and the
  runtime's workspace leave.
- **Skew.** Rows are ordered by hotness: the share of lookups that the hottest ``k`` of
  ``n`` rows receive is ``H(k, s) / H(n, s)`` (generalised harmonic numbers) under a Zipf
  exponent ``s`` (:func:`zipf_mass`), ``k / n`` when no skew is known. A tier holding
  rows ``[a, b)`` serves that share of the lookups; a cache of the hottest ``C`` rows
  one tier faster serves ``H(C, s) / H(n, s)`` of them, or a given hit rate (the rest
  spread over the tiers as the skew says). The cache is static (the hottest rows,
  ideal LFU): it pays no fill traffic, an upper bound on an LRU cache's hit rate.
- **Random access.** Each gathered row costs ``ceil(row_bytes / g) * g`` bytes at a
  tier of access granularity ``g`` (a burst, sector or cache line): a 32 B int8 row
  on a 64 B-burst memory moves 64 B. Each tier's time is its latency plus its bytes at
  its achievable bandwidth; tiers work at once, so the slowest sets the time.
- **Work.** Pooling adds every gathered element on the vector units; backward reads
  the pooled gradients and read-modify-writes every touched row (and its row-wise
  Adagrad state, a separate random access), one row per lookup: duplicates within a
  batch are not merged, an upper bound on the update traffic.
- Host DRAM is not a chip level: its time holds the kernel (the SMs wait on the host
  link, as FBGEMM's UVM lookups do) and is reported as the ``host`` bound; its energy
  is link energy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.arch.model import Chip
from hwsim.arch.system import ExternalMemory
from hwsim.cost.model import LevelTraffic, OpCost, level_time_s, traffic_energy_j
from hwsim.dtypes import dtype_bytes
from hwsim.errors import MappingError
from hwsim.units import format_bytes
from hwsim.workload.memory import workspace_allowance_bytes
from hwsim.workload.ops_embedding import (
    INDEX_BYTES,
    ROWWISE_STATE_BYTES,
    EmbeddingBag,
    TableShard,
    generalized_harmonic,
    zipf_mass,
)

HOST_TIER = "host"


@dataclass(frozen=True)
class MemoryTier:
    """One place embedding rows can live (or be cached), fastest first.

    ``bandwidth_bytes_per_s`` is the achievable rate (peak x achievable fraction);
    ``is_chip_level`` is False for host memory reached over the host link.
    """

    name: str
    capacity_bytes: float
    bandwidth_bytes_per_s: float
    latency_s: float
    access_granularity_bytes: float
    read_energy_pj_per_byte: float
    write_energy_pj_per_byte: float
    is_chip_level: bool = True
    holds_tables: bool = True


def embedding_tiers(chip: Chip, host: ExternalMemory | None = None) -> tuple[MemoryTier, ...]:
    """The tiers of ``chip`` (and its system's ``host`` memory): the level inside home
    (cache only), the home level, then host DRAM."""
    names = chip.level_names
    tiers = []
    for name in names[-2:]:
        spec = chip.memory[name]
        tiers.append(MemoryTier(name, chip.level_capacity_bytes(name),
                                spec.bandwidth_bytes_per_s * spec.achievable_fraction, spec.latency_s,
                                spec.access_granularity_bytes, spec.read_energy_pj_per_byte,
                                spec.write_energy_pj_per_byte, True, name == chip.home_level))
    if host is not None:
        e = host.energy_pj_per_byte
        tiers.append(MemoryTier(HOST_TIER, host.capacity_bytes, host.bandwidth_bytes_per_s, host.latency_s,
                                host.access_granularity_bytes, e, e, is_chip_level=False))
    return tuple(tiers)


def _hot_share(table: TableShard, k: float) -> float:
    """Share of the table's lookups that go to its hottest ``k`` rows."""
    return zipf_mass(k, table.rows, table.zipf_alpha or 0.0)


def access_bytes(row_bytes: float, granularity_bytes: float) -> float:
    """Bytes a random access to a ``row_bytes`` row moves: whole granules."""
    return math.ceil(row_bytes / granularity_bytes - 1e-9) * granularity_bytes


@dataclass(frozen=True)
class TablePlacement:
    """Where one table's rows live and which tier serves how many of its lookups."""

    table: str
    rows_by_tier: tuple[tuple[str, int], ...]
    lookups_by_tier: tuple[tuple[str, float], ...]
    cache_tier: str | None = None
    cache_rows: int = 0
    cache_hit_rate: float = 0.0


def _fill(table: TableShard, row_bytes: float, tiers: list[MemoryTier], first: int,
          free: dict[str, float]) -> list[tuple[str, int]]:
    """Put ``table``'s rows, hottest first, into ``tiers[first:]``, spilling outwards."""
    left, out = table.rows, []
    for tier in tiers[first:]:
        if not tier.holds_tables or left == 0:
            continue
        fit = min(left, int(free[tier.name] // row_bytes))
        if fit > 0:
            out.append((tier.name, fit))
            free[tier.name] -= fit * row_bytes
            left -= fit
    if left:
        room = ", ".join(f"{t.name} {format_bytes(free[t.name])} free" for t in tiers if t.holds_tables)
        size = format_bytes(table.rows * row_bytes)
        raise MappingError(f"embedding table '{table.name}' ({size}) does not "
                           f"fit: {format_bytes(left * row_bytes)} of it is left over ({room})")
    return out


def place_tables(op: EmbeddingBag, tiers: tuple[MemoryTier, ...]) -> tuple[TablePlacement, ...]:
    """Place every table of ``op`` on ``tiers`` (capacities already net of what else
    lives there) and split its lookups over tiers and cache; see the module docstring.

    Raises
    ------
    MappingError
        If a table does not fit in all the tiers together, or is pinned to a tier the
        chip does not have.
    """
    order = list(tiers)
    names = [t.name for t in order if t.holds_tables]
    free = {t.name: t.capacity_bytes for t in order}
    stored = {t.name: t.row_bytes + op.state_bytes_per_row for t in op.tables}
    rows: dict[str, list[tuple[str, int]]] = {}
    cached: dict[str, tuple[str | None, int]] = {}
    pinned = [t for t in op.tables if t.placement != "auto"]
    auto = sorted((t for t in op.tables if t.placement == "auto"),
                  key=lambda t: -t.lookups / max(t.table_bytes, 1.0))
    for group in (pinned, auto):
        for t in group:
            if t.placement != "auto" and t.placement not in names:
                raise MappingError(f"embedding table '{t.name}': placement '{t.placement}' is not a tier of "
                                   f"this chip (tiers: {', '.join(names)})")
            first = 0 if t.placement == "auto" else [x.name for x in order].index(t.placement)
            rows[t.name] = _fill(t, stored[t.name], order, first, free)
        for t in group:  # a group's caches take what its tables leave in the faster tier
            cached[t.name] = _cache(t, stored[t.name] - op.state_bytes_per_row, order, rows[t.name], free)
    return tuple(_split_lookups(t, rows[t.name], *cached[t.name]) for t in op.tables)


def _cache(t: TableShard, row_bytes: float, order: list[MemoryTier], placed: list[tuple[str, int]],
           free: dict[str, float]) -> tuple[str | None, int]:
    """The tier just faster than the table's hottest rows and the cache rows it holds."""
    if t.cache_rows <= 0:
        return None, 0
    index = [x.name for x in order].index(placed[0][0])
    if index == 0:
        return None, 0
    tier = order[index - 1]
    n = min(t.cache_rows, t.rows, int(free[tier.name] // row_bytes))
    free[tier.name] -= n * row_bytes
    return (tier.name, n) if n > 0 else (None, 0)


def _split_lookups(t: TableShard, placed: list[tuple[str, int]], cache_tier: str | None,
                   cache_rows: int) -> TablePlacement:
    hit = 0.0
    if cache_tier is not None:
        given = t.cache_hit_rate if t.cache_rows == cache_rows else None  # a clipped cache hits less
        hit = _hot_share(t, cache_rows) if given is None else given
    hot = _hot_share(t, cache_rows)
    rest = 1.0 - hot
    lookups: list[tuple[str, float]] = [(cache_tier, t.lookups * hit)] if cache_tier else []
    start = 0
    for tier, n in placed:
        # The tier serves the rows [start, start + n) not in the cache, its share of the misses.
        beyond = _hot_share(t, start + n) - _hot_share(t, max(start, cache_rows))
        # A cache that holds every row but misses (a given hit rate below 1) leaves its
        # misses spread over the rows as they are placed.
        share = max(beyond, 0.0) / rest if rest > 1e-12 else n / t.rows
        lookups.append((tier, t.lookups * (1.0 - hit) * share))
        start += n
    return TablePlacement(t.name, tuple(placed), tuple(lookups), cache_tier, cache_rows, hit)


def _usable_tiers(chip: Chip, op: EmbeddingBag, host: ExternalMemory | None) -> tuple[MemoryTier, ...]:
    """Tiers with the home level's capacity net of the reserved bytes and workspace."""
    home = chip.home_level
    out = []
    for tier in embedding_tiers(chip, host):
        if tier.name == home:
            cap = tier.capacity_bytes
            net = cap - op.reserved_bytes - workspace_allowance_bytes(cap)
            tier = MemoryTier(**{**tier.__dict__, "capacity_bytes": max(net, 0.0)})
        out.append(tier)
    return tuple(out)


def embedding_bag_cost(chip: Chip, op: EmbeddingBag, host: ExternalMemory | None = None) -> OpCost:
    """Cost of ``op`` on ``chip`` whose system has ``host`` memory (None: the chip alone).

    Raises
    ------
    MappingError
        If the tables do not fit in the tiers.
    """
    tiers = _usable_tiers(chip, op, host)
    by_name = {t.name: t for t in tiers}
    placements = place_tables(op, tiers)
    reads = dict.fromkeys(by_name, 0.0)
    writes = dict.fromkeys(by_name, 0.0)
    tables = {t.name: t for t in op.tables}
    for p in placements:
        t = tables[p.table]
        for tier, n in p.lookups_by_tier:
            g = by_name[tier].access_granularity_bytes
            row = n * access_bytes(t.row_bytes, g)
            reads[tier] += row
            if op.backward:  # read-modify-write the row and its optimizer state
                state = n * access_bytes(op.state_bytes_per_row, g) if op.state_bytes_per_row else 0.0
                reads[tier] += state
                writes[tier] += row + state
    return _assemble(chip, op, tiers, reads, writes, placements)


def _assemble(chip: Chip, op: EmbeddingBag, tiers: tuple[MemoryTier, ...], reads: dict[str, float],
              writes: dict[str, float], placements: tuple[TablePlacement, ...]) -> OpCost:
    home, names = chip.home_level, chip.level_names
    index = op.n_lookups * INDEX_BYTES
    out_r, out_w = (op.output_bytes, 0.0) if op.backward else (0.0, op.output_bytes)
    traffic, level_s = [], []
    for i, level in enumerate(names):
        # A level sees what is served from it and from every tier beyond it on the way in;
        # host reads reach the units over the host link, not through the home level.
        beyond = [t.name for t in tiers if t.name in names and names.index(t.name) >= i]
        beyond += [] if level == home else [t.name for t in tiers if t.name not in names]
        r = sum(reads[n] for n in beyond) + index + out_r
        w = sum(writes[n] for n in beyond) + out_w
        traffic.append(LevelTraffic(level, r, w))
        gathered = reads.get(level, 0.0) + writes.get(level, 0.0)
        latency = chip.memory[level].latency_s if gathered > 0 else 0.0
        level_s.append(level_time_s(chip, level, r + w) + latency)
    host = next((t for t in tiers if not t.is_chip_level), None)
    host_b = (reads[host.name] + writes[host.name]) if host else 0.0
    host_s = host.latency_s + host_b / host.bandwidth_bytes_per_s if host and host_b > 0 else 0.0
    vec = chip.vector_units
    vector_s = op.flops / vec.peak_ops_per_s
    traffic_t = tuple(traffic)
    return OpCost(
        flops=op.flops, compute_cycles=0.0, compute_s=max(vector_s, host_s), traffic=traffic_t,
        level_s=tuple(level_s), overhead_s=chip.kernel_overhead_s, prefetchable_bytes=0.0,
        compute_energy_j=op.flops * vec.energy_per_op_pj * 1e-12,
        level_energy_j=traffic_energy_j(chip, traffic_t), detail=_detail(op, placements, home),
        n_kernels=1, link_energy_j=host_b * host.read_energy_pj_per_byte * 1e-12 if host else 0.0,
        compute_limit=HOST_TIER if host_s > vector_s else "compute",
    )


def _detail(op: EmbeddingBag, placements: tuple[TablePlacement, ...], home: str) -> str:
    served: dict[str, float] = {}
    for p in placements:
        for tier, n in p.lookups_by_tier:
            served[tier] = served.get(tier, 0.0) + n
    total = sum(served.values()) or 1.0
    parts = ", ".join(f"{tier} {n / total:.0%}" for tier, n in served.items())
    kind = "backward + update" if op.backward else "gather + pool"
    return f"TBE {kind}, {len(op.tables)} tables; lookups served: {parts}"


def lookup_bytes(n_lookups: float, dim: int, dtype: str, row_overhead_bytes: float = 0.0) -> float:
    """Useful bytes of ``n_lookups`` gathers of ``dim``-wide rows: lookups x dim x dtype
    bytes (plus per-row metadata)."""
    return n_lookups * (dim * dtype_bytes(dtype) + row_overhead_bytes)


__all__ = ["HOST_TIER", "ROWWISE_STATE_BYTES", "MemoryTier", "TablePlacement", "access_bytes",
           "embedding_bag_cost", "embedding_tiers", "generalized_harmonic", "lookup_bytes", "place_tables",
           "zipf_mass"]
