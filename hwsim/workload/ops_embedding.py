"""Embedding-bag operators of recommendation models (DLRM): gathers of table rows
pooled into one vector per sample and table, as one table-batched kernel.

One :class:`EmbeddingBag` holds every table shard one chip looks up in a step
(FBGEMM's table-batched embedding, TBE, runs them as one kernel). Each
:class:`TableShard` states what the chip holds and gathers: rows, stored row width,
row lookups, dtype and what is known of the access skew (a Zipf exponent or a hot-row
cache's hit rate). Where the rows live (HBM, host DRAM, spilling from one to the next)
depends on the chip, so placement is costed in :mod:`hwsim.cost.embedding`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from hwsim.dtypes import dtype_bytes

#: Bytes of one lookup index (int32, as TorchRec's KeyedJaggedTensor and FBGEMM use).
INDEX_BYTES = 4
#: Row-wise Adagrad keeps one fp32 momentum per row (FBGEMM ``EXACT_ROWWISE_ADAGRAD``).
ROWWISE_STATE_BYTES = 4.0
OPTIMIZERS = ("rowwise_adagrad", "sgd")
#: Terms of a generalised harmonic number summed exactly; the tail beyond is the
#: midpoint-rule integral, whose relative error is below 1e-9 from here on.
_EXACT_TERMS = 4096


@functools.lru_cache(maxsize=4096)
def generalized_harmonic(n: float, alpha: float) -> float:
    """``H(n, alpha) = sum_{i=1}^{n} i**-alpha`` (``n`` rounded down); exact for the first
    4096 terms, the rest by the midpoint rule (relative error below 1e-9)."""
    n = math.floor(n)
    k = min(n, _EXACT_TERMS)
    head = math.fsum(i ** -alpha for i in range(1, k + 1))
    if n <= k:
        return head
    lo, hi = k + 0.5, n + 0.5
    tail = math.log(hi / lo) if alpha == 1.0 else (hi ** (1 - alpha) - lo ** (1 - alpha)) / (1 - alpha)
    return head + tail


def zipf_mass(k: float, n: int, alpha: float) -> float:
    """Share of the lookups the hottest ``k`` of ``n`` rows receive when row ``i`` (1-based,
    by hotness) is looked up with probability proportional to ``i**-alpha``:
    ``H(k, alpha) / H(n, alpha)``; ``k / n`` at ``alpha = 0``."""
    if k <= 0:
        return 0.0
    if k >= n:
        return 1.0
    if alpha == 0.0:
        return math.floor(k) / n
    return generalized_harmonic(k, alpha) / generalized_harmonic(n, alpha)


@dataclass(frozen=True)
class TableShard:
    """What one chip holds of one embedding table and gathers from it in one step.

    Attributes
    ----------
    name : str
        The table's name (reported in placements and errors).
    rows : int
        Rows the chip holds (after hashing, pruning and row-wise sharding).
    dim : int
        Elements stored per row (after column-wise sharding or low-rank factorisation).
    lookups : float
        Rows gathered per step on this chip (samples x pooling factor x share).
    bags : int
        Pooled vectors produced (one per sample looked up here).
    out_dim : int
        Width of each pooled vector (``dim`` unless a factorisation expands it).
    dtype : str
        Storage dtype of the rows.
    row_overhead_bytes : float
        Bytes stored beside each row (row-wise quantisation scale and bias).
    placement : str
        ``auto`` (hottest tables first into the fastest tier) or a memory tier name
        (``hbm``, ``host``): the table starts there and spills outwards.
    zipf_alpha : float or None
        Zipf exponent of the accesses over rows (0: uniform); None: unknown (uniform).
    cache_rows : int
        Rows of a hot-row cache one tier faster than the table (0: none).
    cache_hit_rate : float or None
        The cache's hit rate where it is given (measured, or from a trace); None: from
        ``zipf_alpha``.
    flops_per_lookup : float
        Vector work per gathered row beyond pooling (decompressing a factorised row).
    """

    name: str
    rows: int
    dim: int
    lookups: float
    bags: int
    out_dim: int
    dtype: str = "fp32"
    row_overhead_bytes: float = 0.0
    placement: str = "auto"
    zipf_alpha: float | None = None
    cache_rows: int = 0
    cache_hit_rate: float | None = None
    flops_per_lookup: float = 0.0

    @property
    def row_bytes(self) -> float:
        """Bytes one stored row occupies (elements plus quantisation metadata)."""
        return self.dim * dtype_bytes(self.dtype) + self.row_overhead_bytes

    @property
    def table_bytes(self) -> float:
        """Bytes the shard occupies."""
        return self.rows * self.row_bytes

    @property
    def lookup_bytes(self) -> float:
        """Useful bytes gathered per step: lookups x row bytes (before any rounding
        to the memory's access granularity)."""
        return self.lookups * self.row_bytes


@dataclass(frozen=True)
class EmbeddingBag:
    """Gather and sum-pool the rows of every table shard of one chip (forward), or
    (``backward``) scatter the pooled gradients into the touched rows and update them
    with ``optimizer``.

    ``reserved_bytes`` is what else lives in the home memory level (dense weights,
    activations): the tables get what is left, then spill outwards. ``out_dtype`` is the
    dtype of the pooled vectors. The forward and backward ops of one training step carry
    the same tables and ``state_bytes_per_row``, so they see the same placement.
    """

    tables: tuple[TableShard, ...]
    out_dtype: str = "fp32"
    backward: bool = False
    optimizer: str = "rowwise_adagrad"
    reserved_bytes: float = 0.0
    state_bytes_per_row: float = 0.0
    """Optimizer state stored beside each row while training (row-wise Adagrad: one
    fp32), placed with the row; 0 for inference."""

    kind = "embedding_bag"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown embedding optimizer {self.optimizer!r}; expected one of {OPTIMIZERS}")

    @property
    def n_lookups(self) -> float:
        return sum(t.lookups for t in self.tables)

    @property
    def flops(self) -> float:
        """One add per pooled element (pooling) plus decompression work; backward: the
        gradient accumulation and the optimizer's few operations per element."""
        fwd = sum(t.lookups * (t.out_dim + t.flops_per_lookup) for t in self.tables)
        if not self.backward:
            return fwd
        per_element = 5.0 if self.optimizer == "rowwise_adagrad" else 2.0
        return sum(t.lookups * t.dim * per_element for t in self.tables)

    @property
    def output_bytes(self) -> float:
        """Bytes of the pooled vectors (written forward, read backward)."""
        return sum(t.bags * t.out_dim * dtype_bytes(self.out_dtype) for t in self.tables)

    @property
    def min_bytes(self) -> float:
        """Useful traffic: indices and rows read, pooled vectors written (backward: the
        rows and their optimizer state read and written, the gradients read)."""
        rows = sum(t.lookup_bytes for t in self.tables)
        index = self.n_lookups * INDEX_BYTES
        if not self.backward:
            return rows + index + self.output_bytes
        state = self.n_lookups * self.state_bytes_per_row
        return 2 * (rows + state) + index + self.output_bytes
