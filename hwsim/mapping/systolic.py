"""Closed-form cycles and traffic of a GEMM on a systolic array, as SCALE-Sim counts them.

SCALE-Sim (Samajdar et al., ISPASS 2020; ``pip install scalesim``, v3.0.0) simulates a
GEMM ``ifmap (M x K) @ filter (K x N) = ofmap (M x N)`` on an ``R x C`` array by
building per-cycle demand matrices fold by fold and replaying them through
double-buffered ifmap / filter / ofmap scratchpads. Everything it reports for a dense
GEMM follows from the fold structure, so it is reproduced here in closed form.

Fold structure (``calc_spatio_temporal_params`` in ``topology_utils``; ``Sr`` rows of
the operand map onto the array rows, ``Sc`` onto the columns, ``T`` streams in time):

=====  ===  ===  ===  ============================
flow   Sr   Sc   T    cycles per fold
=====  ===  ===  ===  ============================
WS     K    N    M    2R + C + T - 2
OS     M    N    K    R + C + T - 2
IS     K    M    N    2R + C + T - 2
=====  ===  ===  ===  ============================

with ``ceil(Sr / R) * ceil(Sc / C)`` folds, each a full-size fold even when partly
used, run one after another (``systolic_compute_{ws,os,is}.create_*_demand_mat``: WS and
IS pay R cycles to load the stationary operand, the skew of R - 1 and C - 1, T streaming
cycles and the drain; OS has no stationary load). The demand matrices have exactly
``folds * cycles_per_fold`` rows; SCALE-Sim's COMPUTE_REPORT "Total Cycles" is the
0-based index of the last row, one less (SCALE-Sim issue #125).

SRAM accesses (DETAILED_ACCESS_REPORT, words; ``fr = ceil(Sr/R)``, ``fc = ceil(Sc/C)``):

=====  ==================  ==================  ===========================
flow   ifmap reads         filter reads        ofmap writes
=====  ==================  ==================  ===========================
WS     M K ceil(N/C)       K N                 M N ceil(K/R)
OS     M K ceil(N/C)       K N ceil(M/R)       M N + folds (R + C) [#]_
IS     M K                 K N ceil(M/C)       M N ceil(K/R)
=====  ==================  ==================  ===========================

.. [#] SCALE-Sim's OS counter adds ``R + C`` per fold on top of the real writes (it adds
   the padded tile's shape after counting its elements); its DRAM count has only M N.

DRAM traffic in SCALE-Sim's default interface mode (``InterfaceBandwidth: CALC``,
``read_buffer_estimate_bw``): a read buffer of ``W`` words keeps 100 sets of
``floor(W / 100)`` words, half of them active; it takes every address it has not seen
since its last swap, and swaps (forgets everything) when the active half has filled,
i.e. after ``cap = 50 * floor(W / 100)`` new words. DRAM reads are the words it
takes. The demand streams are, per operand, a sequence of *groups*: a set of ``L``
distinct words read ``P`` times over in the same order (loops ``for fc: for fr``):

=====  =============================  =====================================
flow   ifmap groups (L, P)            filter groups (L, P)
=====  =============================  =====================================
WS     (M K, ceil(N/C))               (K N, 1)
OS     (M K, ceil(N/C))               (K C_j, ceil(M/R)) for each column fold j
IS     (M K, 1)                       (K N, ceil(M/C))
=====  =============================  =====================================

Carrying ``x``, the words taken since the last swap, a group costs: ``L P`` when it is
read once or does not fit (``L >= cap``), ``x <- (x + L P) mod cap``; ``L`` when it
fits without a swap (``x + L < cap``), ``x <- x + L``; else ``L + cap - x`` (a swap in
its first pass forgets its first ``cap - x`` words, re-taken in the second),
``x <- L``. The ofmap buffer writes every word it receives to DRAM: DRAM writes are
the real ofmap writes, partial sums of every K fold included (plus ``C - 1`` words of
line padding SCALE-Sim counts once its ofmap buffer has drained before the end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.arch.model import Chip
from hwsim.dtypes import accumulator_dtype, dtype_bytes

WS, OS, IS = "weight_stationary", "output_stationary", "input_stationary"

#: SCALE-Sim's read buffers hold 100 sets, half of them active (``active_buf_frac = 0.5``).
SCALESIM_SETS = 100
SCALESIM_ACTIVE_SETS = 50


def fold_dims(m: int, k: int, n: int, dataflow: str) -> tuple[int, int, int]:
    """(Sr, Sc, T): GEMM extents mapped onto array rows, array columns and time."""
    if dataflow == WS:
        return k, n, m
    if dataflow == OS:
        return m, n, k
    if dataflow == IS:
        return k, m, n
    raise ValueError(f"unknown dataflow {dataflow!r}")


def systolic_fold_cycles(rows: int, cols: int, temporal: int, dataflow: str = WS) -> int:
    """Cycles of one fold: ``2R + C + T - 2`` for weight / input stationary (the
    stationary operand loads over R cycles, inputs skew over R - 1 and outputs over
    C - 1, T vectors stream, the last output drains), ``R + C + T - 2`` for output
    stationary (nothing to preload)."""
    if dataflow == OS:
        return rows + cols + temporal - 2
    return 2 * rows + cols + temporal - 2


def systolic_gemm_cycles(
    m: int, k: int, n: int, rows: int, cols: int, dataflow: str, n_arrays: int = 1, batch: int = 1,
    double_buffered: bool = False,
) -> tuple[int, int]:
    """Stall-free cycles and fold count of an (m x k) @ (k x n) GEMM on ``n_arrays``
    rows x cols arrays with the given dataflow (folds spread evenly over arrays).

    Without ``double_buffered`` this is SCALE-Sim's count: every fold costs
    :func:`systolic_fold_cycles`. With ``double_buffered`` (TPU-style weight staging)
    the stationary operand of the next fold loads while the current fold streams:
    every fold but the last costs max(T, R) cycles, the last one a full fold (the first
    fill and the last drain are exposed).

    Returns
    -------
    cycles : int
        Cycles on the busiest array.
    folds : int
        Folds in total (over the batch).
    """
    spatial_r, spatial_c, temporal = fold_dims(m, k, n, dataflow)
    folds = batch * math.ceil(spatial_r / rows) * math.ceil(spatial_c / cols)
    per_array = math.ceil(folds / n_arrays)
    full = systolic_fold_cycles(rows, cols, temporal, dataflow)
    if double_buffered:
        return (per_array - 1) * max(temporal, rows) + full, folds
    return per_array * full, folds


@dataclass(frozen=True)
class SystolicTraffic:
    """Words moved by one GEMM on a systolic array with SCALE-Sim's scratchpads."""

    ifmap_sram_reads: int
    filter_sram_reads: int
    ofmap_sram_writes: int
    ifmap_dram_reads: int
    filter_dram_reads: int
    ofmap_dram_writes: int

    @property
    def sram_reads(self) -> int:
        return self.ifmap_sram_reads + self.filter_sram_reads

    @property
    def dram_reads(self) -> int:
        return self.ifmap_dram_reads + self.filter_dram_reads


def buffer_capacity_words(buffer_words: float) -> int:
    """Distinct words a SCALE-Sim read buffer of ``buffer_words`` holds between swaps
    (its active half, counted in whole sets)."""
    return SCALESIM_ACTIVE_SETS * math.floor(buffer_words / SCALESIM_SETS)


def _repeated_groups(x: int, count: int, size: int, passes: int, cap: int) -> tuple[int, int]:
    """(words fetched, new x) for ``count`` different groups of the same size in a row,
    in O(1): between swaps the buffer fits ``q`` such groups, each swap costs
    ``cap - x`` extra words."""
    if count <= 0:
        return 0, x
    if cap <= 0 or passes == 1 or size >= cap:
        total = count * size * passes
        return total, (x + total) % cap if cap > 0 else 0
    # Groups before the first swap: x + (j + 1) * size >= cap first at j = j0.
    j0 = max(0, math.ceil((cap - x) / size) - 1)
    if j0 >= count:
        return count * size, x + count * size
    fetched = count * size + (cap - x - j0 * size)
    # After a swap x = size; the next swap comes q groups later, costing cap - q * size.
    q = math.ceil(cap / size) - 1
    later = count - 1 - j0
    swaps, rest = divmod(later, q)
    fetched += swaps * (cap - q * size)
    return fetched, size + rest * size


def systolic_gemm_traffic(
    m: int, k: int, n: int, rows: int, cols: int, dataflow: str,
    ifmap_words: float, filter_words: float, ofmap_words: float | None = None, batch: int = 1,
    b_shared: bool = False,
) -> SystolicTraffic:
    """SRAM and DRAM words of an (m x k) @ (k x n) GEMM on a rows x cols array with
    SCALE-Sim's double-buffered scratchpads of ``ifmap_words``, ``filter_words`` and
    ``ofmap_words`` words. The ofmap buffer's size only decides SCALE-Sim's ``C - 1``
    word bookkeeping artifact (below); ``None`` leaves it out.

    A batch runs its GEMMs one after another. With ``b_shared`` they read one filter:
    for WS and IS each GEMM re-reads it in the same order (its group is read ``batch``
    times as often); for OS the later GEMMs fetch nothing more when the whole filter fits
    the buffer's active half, else as much as the first.
    """
    sr, sc, _ = fold_dims(m, k, n, dataflow)
    row_folds, col_folds = math.ceil(sr / rows), math.ceil(sc / cols)
    folds = row_folds * col_folds
    mk, kn, mn = m * k, k * n, m * n
    cap_i, cap_f = buffer_capacity_words(ifmap_words), buffer_capacity_words(filter_words)
    shared = batch if b_shared else 1  # filter re-reads folded into one GEMM's groups
    n_col_blocks = math.ceil(n / cols)
    if dataflow == WS:
        sram = (mk * n_col_blocks, kn, mn * row_folds)
        ifmap_groups = [(1, mk, n_col_blocks)]
        filter_groups = [(1, kn, shared)]
        ofmap_dram = mn * row_folds
    elif dataflow == OS:
        sram = (mk * n_col_blocks, kn * row_folds, mn + folds * (rows + cols))
        ifmap_groups = [(1, mk, n_col_blocks)]
        last = n - cols * (col_folds - 1)
        filter_groups = [(col_folds - 1, k * cols, row_folds), (1, k * last, row_folds)]
        ofmap_dram = mn
    elif dataflow == IS:
        sram = (mk, kn * col_folds, mn * row_folds)
        ifmap_groups = [(1, mk, 1)]
        filter_groups = [(1, kn, col_folds * shared)]
        ofmap_dram = mn * row_folds
    else:
        raise ValueError(f"unknown dataflow {dataflow!r}")

    def fetched(groups: list[tuple[int, int, int]], cap: int) -> int:
        total, x = 0, 0
        for count, size, passes in groups:
            words, x = _repeated_groups(x, count, size, passes, cap)
            total += words
        return total

    ofmap_dram *= batch
    if ofmap_words is not None and ofmap_dram > ofmap_words - math.ceil(ofmap_words / 2):
        # SCALE-Sim's write buffer drains C-word lines; once it has drained before the
        # end, one padded line is counted whole: C - 1 words it never wrote.
        ofmap_dram += cols - 1
    ifmap_dram = fetched(ifmap_groups, cap_i) * batch
    filter_dram = fetched(filter_groups, cap_f)
    if not b_shared or dataflow == OS and kn >= cap_f:
        filter_dram *= batch
    return SystolicTraffic(
        ifmap_sram_reads=sram[0] * batch, filter_sram_reads=sram[1] * batch,
        ofmap_sram_writes=sram[2] * batch, ifmap_dram_reads=ifmap_dram,
        filter_dram_reads=filter_dram, ofmap_dram_writes=ofmap_dram,
    )


def systolic_level_bytes(
    chip: Chip, m: int, k: int, n: int, dtype: str, batch: int = 1, b_shared: bool = False,
    b_scale: float = 1.0,
) -> tuple[tuple[str, float, float], ...]:
    """(level, read bytes, write bytes) at every memory level, innermost first, for a
    GEMM on the chip's systolic arrays, counted as SCALE-Sim counts them.

    The innermost level is SCALE-Sim's SRAM: the arrays read A and B from it and write
    C (every fold's outputs, partial sums included) to it. Each outer level is the
    DRAM of the level inside it: it supplies the words that level's ifmap and filter
    scratchpads fetch, and takes every word its ofmap scratchpad writes when that level
    has SCALE-Sim scratchpads (``buffer_split``), else only the finished outputs (the
    level accumulates them). A level's scratchpads split its capacity as its
    ``buffer_split`` says (thirds when unset), counted in words of the operand they
    hold. A and B move in ``dtype``, B scaled by ``b_scale`` when it is stored
    compressed; C in the accumulator dtype. Folds spread over several arrays move the
    same words in all.
    """
    unit = chip.compute_units
    elem = dtype_bytes(dtype)
    b_elem = elem * b_scale
    c_elem = dtype_bytes(accumulator_dtype(dtype))

    def traffic(level: str) -> SystolicTraffic:
        spec = chip.memory[level]
        cap = chip.level_capacity_bytes(level)
        f_i, f_f, f_o = spec.buffer_split or (1 / 3, 1 / 3, 1 / 3)
        return systolic_gemm_traffic(
            m, k, n, unit.rows, unit.cols, unit.dataflow, ifmap_words=cap * f_i / elem,
            filter_words=cap * f_f / b_elem, ofmap_words=cap * f_o / c_elem, batch=batch,
            b_shared=b_shared,
        )

    names = chip.level_names
    inner = traffic(names[0])
    out = [(names[0], inner.ifmap_sram_reads * elem + inner.filter_sram_reads * b_elem,
            inner.ofmap_sram_writes * c_elem)]
    for i in range(1, len(names)):
        t = inner if i == 1 else traffic(names[i - 1])
        writes = t.ofmap_dram_writes if chip.memory[names[i - 1]].buffer_split else batch * m * n
        out.append((names[i], t.ifmap_dram_reads * elem + t.filter_dram_reads * b_elem,
                    writes * c_elem))
    return tuple(out)
