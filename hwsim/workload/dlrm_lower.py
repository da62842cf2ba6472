"""Lowering a :class:`~hwsim.workload.dlrm.DlrmSpec` for ``inference`` or ``train`` on
``n_chips`` chips (hybrid parallel, as TorchRec and HugeCTR run DLRM).

The MLPs and the interaction are data parallel: each chip runs ``batch / n_chips``
samples. The tables are sharded (``sharding``, per table or for all):

- ``table``: whole tables spread over the chips, largest lookup traffic first onto the
  least-loaded chip (longest-processing-time first); each owner gathers its tables for
  the *global* batch, and an all-to-all sends every chip its samples' pooled vectors
  (``batch x dim`` per table, of which ``(p - 1) / p`` leave the chip);
- ``row``: every chip holds ``rows / p`` of the table and gathers the lookups that land
  there (``1 / p``, rows hashed uniformly), pooling partial sums for the global batch; a
  reduce-scatter sums them and hands each chip its samples;
- ``column``: every chip holds ``dim / p`` columns of every row and gathers every lookup
  for the global batch at that width; an all-to-all as for ``table``;
- ``data``: every chip holds the whole table and gathers for its own samples; no
  exchange (training all-reduces the table's gradient).

The simulated chip is the busiest (table-wise placement is rarely even); the step's
totals count it ``n_chips`` times. Training runs the backward of every op, the pooled
gradients back over the same exchange, a fused embedding backward with row-wise Adagrad
and a dense optimizer step after an all-reduce of the dense gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from hwsim.dtypes import dtype_bytes, normalize_dtype
from hwsim.errors import ConfigError
from hwsim.workload.dlrm import (
    DlrmSpec,
    Hashing,
    LowRank,
    Pruning,
    TableSpec,
    TensorTrain,
    row_overhead_bytes,
    tt_shape,
)
from hwsim.workload.graph import OperatorGraph, Pass, Segment, SegmentRole, Workload
from hwsim.workload.ops import Collective, Elementwise, MatMul, Optimizer
from hwsim.workload.ops_embedding import ROWWISE_STATE_BYTES, EmbeddingBag, TableShard, zipf_mass
from hwsim.workload.plan import Plan

DLRM_PHASES = ("inference", "train")
SHARDINGS = ("table", "row", "column", "data")
MAX_BATCH = 10**9
MAX_CHIPS = 100_000


@dataclass(frozen=True)
class ChipShards:
    """What one chip gathers, and what it exchanges: bytes it sends in the all-to-all,
    holds for the reduce-scatter, and all-reduces of data-parallel table gradients."""

    tables: tuple[TableShard, ...]
    expansions: tuple[tuple[int, int, int], ...]  # low-rank (bags, rank, dim) GEMMs
    all_to_all_bytes: float
    reduce_scatter_bytes: float
    replicated_grad_bytes: float


def _stored(t: TableSpec, batch: int) -> tuple[TableShard, list[TableShard], tuple[int, int] | None]:
    """The table as stored after compression, with every lookup of the global ``batch``;
    extra shards (a pruning remap) and the low-rank expansion (rank, dim)."""
    assert t.dtype is not None
    lookups = batch * t.pooling_factor
    rows, dim, out_dim, flops, alpha = t.rows, t.dim, t.dim, 0.0, t.zipf_alpha
    extra: list[TableShard] = []
    expand = None
    c = t.compression
    if isinstance(c, Hashing):
        rows = c.rows
    elif isinstance(c, Pruning):
        rows = max(1, math.ceil(c.keep_fraction * t.rows))
        # The remap (one int32 per original row) is read on every lookup.
        extra.append(TableShard(f"{t.name}/remap", t.rows, 1, lookups, 0, 0, "fp32", 0.0, t.placement, alpha))
        lookups *= zipf_mass(rows, t.rows, alpha or 0.0)  # lookups of pruned rows read nothing
    elif isinstance(c, LowRank):
        dim = out_dim = c.rank
        expand = (c.rank, t.dim)
    elif isinstance(c, TensorTrain):
        rows, _, elements, flops = tt_shape(t.rows, t.dim, c.rank)
        dim, alpha = math.ceil(elements), None  # a core slice is shared by many ids: no skew known
    cache = None if isinstance(c, TensorTrain) else t.cache
    shard = TableShard(t.name, rows, dim, lookups, batch, out_dim, t.dtype, row_overhead_bytes(t.dtype),
                       t.placement, alpha, min(cache.rows, rows) if cache else 0,
                       cache.hit_rate if cache else None, flops)
    return shard, extra, expand


def _split(shard: TableShard, mode: str, p: int, local: int) -> TableShard:
    """One chip's share of ``shard`` under ``mode`` (``table`` keeps it whole)."""
    if mode == "row":
        return replace(shard, rows=math.ceil(shard.rows / p), lookups=shard.lookups / p,
                       cache_rows=math.ceil(shard.cache_rows / p))
    if mode == "column":
        return replace(shard, dim=math.ceil(shard.dim / p), out_dim=math.ceil(shard.out_dim / p))
    if mode == "data":
        return replace(shard, lookups=shard.lookups * local / max(shard.bags, 1), bags=local)
    return shard


def shard_tables(spec: DlrmSpec, batch: int, n_chips: int, sharding: str) -> list[ChipShards]:
    """Every chip's shards (index = rank) for a global ``batch``; see the module docstring."""
    p, local = n_chips, math.ceil(batch / n_chips)
    act = dtype_bytes(spec.dtype)
    common: list[TableShard] = []
    common_exp: list[tuple[int, int, int]] = []
    a2a = rs = ar = 0.0  # what every chip exchanges for its row, column and data shares
    owned: list[tuple[float, list[TableShard], tuple[int, int] | None]] = []
    for t in spec.expanded_tables():
        mode = (t.sharding or sharding) if p > 1 else "table"
        shard, extra, expand = _stored(t, batch)
        if mode == "column" and (expand or isinstance(t.compression, TensorTrain)):
            raise ConfigError([f"dlrm {spec.name}: tables.{t.name}: column sharding of a factorised table "
                               "is not modelled; shard it by table or row"])
        if mode == "table":
            owned.append((sum(s.lookup_bytes for s in (shard, *extra)), [shard, *extra], expand))
            continue
        common += [_split(s, mode, p, local) for s in (shard, *extra)]
        if expand:
            common_exp.append((batch if mode == "row" else local, *expand))
        width = expand[1] if expand else shard.out_dim
        if mode == "row":
            rs += batch * width * act
        elif mode == "column":
            a2a += batch * math.ceil(shard.out_dim / p) * act
        else:
            ar += shard.table_bytes
    chips: list[dict[str, Any]] = [{"tables": list(common), "exp": list(common_exp), "a2a": a2a}
                                   for _ in range(p)]
    # Largest first onto the least-loaded chip (LPT): deterministic, near-even.
    load = [0.0] * p
    for weight, shards, expand in sorted(owned, key=lambda x: -x[0]):
        k = min(range(p), key=lambda i: (load[i], i))
        load[k] += weight
        chips[k]["tables"] += shards
        if expand:
            chips[k]["exp"].append((batch, *expand))
        chips[k]["a2a"] += batch * (expand[1] if expand else shards[0].out_dim) * act
    return [ChipShards(tuple(c["tables"]), tuple(c["exp"]), c["a2a"], rs, ar) for c in chips]


def _busiest(chips: list[ChipShards]) -> ChipShards:
    """The chip with the most gathered bytes (ties: the lowest rank)."""
    return max(chips, key=lambda c: (sum(t.lookup_bytes for t in c.tables), -chips.index(c)))


def _mlp(g: OperatorGraph, prefix: str, widths: tuple[int, ...], m: int, k: int, dtype: str,
         after: list[str], mats: list[tuple[str, MatMul]]) -> tuple[list[str], int]:
    """A chain of fully connected layers (bias and ReLU fused into each GEMM's epilogue)."""
    for i, n in enumerate(widths):
        op = MatMul(m, k, n, dtype, bias=True)
        name = g.add_op(f"{prefix}{i}", op, after)
        mats.append((name, op))
        after, k = [name], n
    return after, k


def _interaction(g: OperatorGraph, spec: DlrmSpec, b: int, dtype: str, after: list[str],
                 mats: list[tuple[str, MatMul]]) -> list[str]:
    width = spec.interaction_width
    if spec.interaction == "dot":
        f, d = sum(t.count for t in spec.tables) + 1, spec.bottom_mlp[-1]
        op = MatMul(f, d, f, dtype, batch=b, b_is_weight=False)
        name = g.add_op("interaction", op, after)
        mats.append((name, op))
        return [name]
    if spec.interaction == "cat":
        return [g.add_op("interaction", Elementwise("copy", b, width, dtype), after)]
    x, r = width, spec.dcn_low_rank
    for i in range(spec.dcn_layers):  # x_{l+1} = x0 * (U V^T x_l + b) + x_l
        if r:
            chain = [(f"dcn{i}_v", MatMul(b, x, r, dtype)), (f"dcn{i}_u", MatMul(b, r, x, dtype, bias=True))]
        else:
            chain = [(f"dcn{i}", MatMul(b, x, x, dtype, bias=True))]
        for name, op in chain:
            after = [g.add_op(name, op, after)]
            mats.append((after[0], op))
        after = [g.add_op(f"dcn{i}_cross", Elementwise("residual_add", b, x, dtype), after)]
    return after


def _exchange(g: OperatorGraph, chip: ChipShards, p: int, dtype: str, after: list[str],
              backward: bool) -> list[str]:
    """The pooled vectors (forward) or their gradients (backward) between owners and users."""
    out = []
    if chip.all_to_all_bytes > 0 and p > 1:
        op = Collective("all_to_all", chip.all_to_all_bytes, "dp", p, dtype)
        out.append(g.add_op("all_to_all_bwd" if backward else "all_to_all", op, after))
    if chip.reduce_scatter_bytes > 0 and p > 1:
        kind = "all_gather" if backward else "reduce_scatter"
        out.append(g.add_op(kind, Collective(kind, chip.reduce_scatter_bytes, "dp", p, dtype), after))
    return out or after


def _backward(spec: DlrmSpec, chip: ChipShards, p: int, b: int, dtype: str, mats: list[tuple[str, MatMul]],
              bag: EmbeddingBag) -> OperatorGraph:
    """Gradients of every GEMM in reverse (dX, and dW for weights), the pooled gradients
    back to the tables' owners, and the fused embedding backward and update."""
    g = OperatorGraph()
    after: list[str] = [g.add_op("loss", Elementwise("cross_entropy", b, 1, dtype))]
    sparse_from: list[str] = []
    for name, op in reversed(mats):
        if name != "bottom0":  # the dense features need no gradient
            dx = MatMul(op.m, op.n, op.k, dtype, batch=op.batch, b_is_weight=op.b_is_weight)
            after = [g.add_op(f"{name}_dx", dx, after)]
        if op.b_is_weight:
            g.add_op(f"{name}_dw", MatMul(op.k, op.m, op.n, dtype, b_is_weight=False), after)
        else:  # a product of two activations (the dot interaction): both get a gradient
            g.add_op(f"{name}_db", MatMul(op.k, op.m, op.n, dtype, batch=op.batch, b_is_weight=False), after)
        if name == "interaction" or (name.startswith("dcn0") and not sparse_from):
            sparse_from = after  # the pooled vectors' gradients exist from here on
    ex = _exchange(g, chip, p, dtype, sparse_from or after, backward=True)
    g.add_op("embedding_bwd", replace(bag, backward=True), ex)
    return g


def _warnings(spec: DlrmSpec, chips: list[ChipShards], phase: str, sharding: str) -> list[str]:
    out = ["dlrm: bias and ReLU are fused into each GEMM's epilogue; the output sigmoid is one "
           "element-wise pass"]
    loads = [sum(t.lookup_bytes for t in c.tables) for c in chips]
    if len(chips) > 1 and max(loads) > 0:
        mean = sum(loads) / len(loads)
        if max(loads) > 1.001 * mean:
            out.append(f"dlrm: {sharding}-wise sharding leaves the busiest chip {max(loads) / mean - 1:.0%} "
                       "more gathered bytes than the mean; the step is timed on it and its energy "
                       "counted on every chip")
    if any(isinstance(t.compression, Hashing) for t in spec.tables):
        out.append("dlrm: hashed tables keep their zipf_alpha over the buckets (collisions merge rows)")
    if any(isinstance(t.compression, TensorTrain) and t.cache for t in spec.tables):
        out.append("dlrm: TT-compressed tables ignore their cache (the cores are small enough to stay "
                   "resident)")
    if phase == "train":
        out += ["dlrm: the embedding backward updates one row per lookup (duplicate ids in a batch are "
                "not merged): an upper bound on the update traffic",
                "dlrm: dense parameters update with a fused AdamW-cost step; the DCN/MLP backward "
                "omits the element-wise gradient passes (small beside the GEMMs)"]
    return out


def lower_dlrm(spec: DlrmSpec, phase: str, *, batch: int = 2048, n_chips: int = 1, sharding: str = "table",
               dtype: str | None = None, embedding_dtype: str | None = None) -> Workload:
    """Lower ``spec`` for ``phase`` (``inference`` or ``train``) on ``n_chips`` chips.

    Parameters
    ----------
    batch : int
        Samples per step over all chips (the global batch).
    n_chips : int
        Chips the model is spread over (the MLPs data parallel, the tables sharded).
    sharding : {"table", "row", "column", "data"}
        How tables without their own ``sharding`` are split (module docstring).
    dtype, embedding_dtype : str, optional
        Override the dense part's dtype and every table's dtype.

    Raises
    ------
    ConfigError
        For an unknown phase or sharding, or a bad batch or chip count.
    """
    source = f"dlrm {spec.name or '<model>'}"
    problems = []
    if phase not in DLRM_PHASES:
        problems.append(f"{source}: phase: expected one of {', '.join(DLRM_PHASES)}, got {phase!r}")
    if sharding not in SHARDINGS:
        problems.append(f"{source}: sharding: expected one of {', '.join(SHARDINGS)}, got {sharding!r}")
    for key, val, top in (("batch", batch, MAX_BATCH), ("n_chips", n_chips, MAX_CHIPS)):
        if not isinstance(val, int) or isinstance(val, bool) or not 0 < val <= top:
            problems.append(f"{source}: {key}: must be an integer from 1 to {top:.0e}, got {val!r}")
    updates: dict[str, Any] = {}
    for key, name in (("dtype", dtype), ("embedding_dtype", embedding_dtype)):
        if name is not None:
            try:
                updates[key] = normalize_dtype(name)
            except ValueError as exc:
                problems.append(f"{source}: {key}: {exc}")
    if problems:
        raise ConfigError(problems)
    if "embedding_dtype" in updates:
        dtype_now = updates["embedding_dtype"]
        updates["tables"] = tuple(t.model_copy(update={"dtype": dtype_now}) for t in spec.tables)
    spec = spec.model_copy(update=updates)
    return _lower(spec, phase, batch, n_chips, sharding)


def _lower(spec: DlrmSpec, phase: str, batch: int, p: int, sharding: str) -> Workload:
    dtype, b = spec.dtype, math.ceil(batch / p)
    chips = shard_tables(spec, batch, p, sharding)
    chip = _busiest(chips)
    act = dtype_bytes(dtype)
    n_dense = spec.dense_param_count()
    train = phase == "train"
    widths = spec.dense_features + sum(spec.bottom_mlp) + spec.interaction_width + sum(spec.top_mlp)
    resident = {"weights_bytes": n_dense * act, "activations_bytes": b * widths * act * (2 if train else 1)}
    if train:
        resident |= {"gradients_bytes": n_dense * act, "optimizer_state_bytes": 2.0 * n_dense * 4}
    state = ROWWISE_STATE_BYTES if train and spec.optimizer == "rowwise_adagrad" else 0.0
    bag = EmbeddingBag(chip.tables, dtype, optimizer=spec.optimizer, reserved_bytes=sum(resident.values()),
                       state_bytes_per_row=state)
    g = OperatorGraph()
    mats: list[tuple[str, MatMul]] = []
    bottom, _ = _mlp(g, "bottom", spec.bottom_mlp, b, spec.dense_features, dtype, [], mats)
    emb = g.add_op("embedding", bag)
    pooled = [emb]
    for i, (m, r, d) in enumerate(chip.expansions):  # low-rank tables: pooled U rows times V
        op = MatMul(m, r, d, dtype)
        pooled.append(g.add_op(f"lowrank{i}", op, [emb]))
    sparse = _exchange(g, chip, p, dtype, pooled, backward=False)
    inter = _interaction(g, spec, b, dtype, bottom + sparse, mats)
    top, _ = _mlp(g, "top", spec.top_mlp, b, spec.interaction_width, dtype, inter, mats)
    g.add_op("sigmoid", Elementwise("add", b, 1, dtype), top)
    segments = [Segment("forward", g, role=SegmentRole.LAYER)]
    if train:
        backward = _backward(spec, chip, p, b, dtype, mats, bag)
        segments.append(Segment("backward", backward, role=SegmentRole.LAYER_BWD))
        opt = OperatorGraph()
        after: list[str] = []
        if p > 1:
            dense = Collective("all_reduce", n_dense * act, "dp", p, dtype)
            after = [opt.add_op("dense_grad_all_reduce", dense)]
            if chip.replicated_grad_bytes > 0:
                ar = Collective("all_reduce", chip.replicated_grad_bytes, "dp", p, dtype)
                after.append(opt.add_op("table_grad_all_reduce", ar))
        opt.add_op("dense_optimizer", Optimizer(n_dense, dtype, dtype), after)
        segments.append(Segment("optimizer", opt, role=SegmentRole.EMBED_BWD_OPTIMIZER))
    stored = sum(t.table_bytes for c in chips for t in c.tables if c is chip)
    params: dict[str, Any] = {"batch": batch, "dtype": dtype, "n_chips": p, "sharding": sharding,
                              "samples": batch, "embedding_bytes_per_chip": stored,
                              "lookups_per_step": sum(t.lookups for c in chips for t in c.tables
                                                      if not t.name.endswith("/remap"))}
    warnings = tuple(_warnings(spec, chips, phase, sharding))
    name = spec.name or "dlrm"
    return Workload(name, phase, (Pass(phase, tuple(segments), tokens=batch),), resident, params,
                    plan=Plan(dp=p), warnings=warnings)

