"""Cost of fused (flash) and naive attention.

A fused kernel splits the work into units of one query block (``Br`` rows) of one
head, each streaming its head's K and V in ``Bc``-key blocks; the mapper takes the block
from the chip's buffers (:mod:`hwsim.mapping.attention`). On tensor cores a
unit's time is its key blocks x (the two block products + the softmax exponentials not
hidden under them) plus a pipeline fill (the first Q and K/V tiles arrive after two
memory latencies); units are spread over the matrix units longest first, so causal
masks leave the imbalance they really leave. With fewer units than matrix units each
unit's keys are split over several (split-KV, as FlashDecoding does). Decode-sized
queries pack the heads of a GQA group into one block's rows (they share K and V).
Systolic arrays (:mod:`hwsim.cost.attention_systolic`) run a fused score-softmax-value
dataflow or two batched GEMMs, whichever the mapper finds cheaper. Off-chip traffic is
Q, K, V and O once; inner levels re-read K and V once per query block. The naive kernel
writes the score matrix, reads it for the softmax, writes and reads it again. The
softmax's per-score costs are the vector unit's (:class:`hwsim.arch.units.VectorUnit`).
"""

from __future__ import annotations

import heapq
import math
from typing import TypeVar

import numpy as np

from hwsim.arch.model import Chip
from hwsim.cost.attention_systolic import (
    BACKWARD_EXP,
    BACKWARD_MMA,
    score_level,
    systolic_fused_s,
    systolic_gemms_s,
)
from hwsim.cost.model import LevelTraffic, OpCost, make_cost
from hwsim.dtypes import dtype_bytes
from hwsim.mapping.attention import attention_blocks, largest_block
from hwsim.mapping.gemm import dtype_cycle_factor
from hwsim.workload.ops import Attention

#: Cycles of one block, or of each of many (numpy).
Cycles = TypeVar("Cycles", float, np.ndarray)


def _unit_keys(op: Attention, q_block: int) -> tuple[list[int], int]:
    """Keys seen by each work unit of one (batch, kv-head) slice, and the rows per unit,
    with ``q_block`` query rows per block."""
    group = op.n_heads // op.n_kv_heads
    if op.q_len * group <= q_block or op.q_len < q_block:
        # Decode-sized queries: one unit per q_block packed rows of the group's queries.
        rows = op.q_len * group
        n_units = math.ceil(rows / q_block)
        return [op.kv_keys] * n_units, min(rows, q_block)
    keys = []
    for j in range(math.ceil(op.q_len / q_block)):
        last_query = min(op.q_len, (j + 1) * q_block)
        seen = op.kv_len - op.q_len + last_query if op.is_causal else op.kv_len
        if op.is_causal and (op.window is not None or op.chunk is not None):
            seen -= _skipped_keys(op, op.kv_len - op.q_len + j * q_block)
        keys.append(max(1, min(op.kv_len, seen)))
    if op.key_density < 1.0:
        # A block-sparse mask: each query block computes its share of the key blocks.
        keys = [max(1, math.ceil(k * op.key_density)) for k in keys]
    return keys * group, q_block


def _skipped_keys(op: Attention, first_pos: int) -> int:
    """Keys before the first one a block whose first query sits at ``first_pos`` sees."""
    if op.window is not None:
        return max(0, first_pos - op.window + 1)
    assert op.chunk is not None
    return (max(first_pos, 0) // op.chunk) * op.chunk


def _makespan(durations: list[float], n_units: int) -> float:
    """Longest-first list schedule of ``durations`` over ``n_units`` identical units."""
    if len(durations) <= n_units:
        return max(durations, default=0.0)
    loads = [0.0] * n_units
    for d in sorted(durations, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + d)
    return max(loads)


def score_block_cycles(chip: Chip, mma: Cycles, exps: Cycles) -> Cycles:
    """Cycles of one block of a fused kernel on tensor cores: its products (``mma``
    cycles) and the exponentials not hidden under them (``exps`` cycles in all, of which
    ``attention_exp_overlap`` hide); with a fused score pipeline, the better of that and
    the products beside all the exponentials. Works elementwise on arrays."""
    vec = chip.vector_units
    serial = mma + exps * (1 - vec.attention_exp_overlap)
    if not vec.fused_score_pipeline:
        return serial
    return np.minimum(serial, np.maximum(mma, exps))


def _tensor_core_compute_s(chip: Chip, op: Attention, block: tuple[int, int]) -> float:
    unit, vec = chip.compute_units, chip.vector_units
    factor = dtype_cycle_factor(unit, op.dtype, chip.name)
    keys, rows = _unit_keys(op, block[0])
    rows_padded = math.ceil(rows / unit.rows) * unit.rows
    mma_fac, exp_fac = (BACKWARD_MMA, BACKWARD_EXP) if op.backward else (1.0, 1.0)
    exp_rate = vec.exp_per_cycle_per_unit
    n_units = len(keys) * op.batch * op.n_kv_heads
    # Fewer units than matrix units: split each unit's keys over several (split-KV, as
    # FlashDecoding does); the partial results are combined in a cheap epilogue. A key
    # block is Bc keys, or the whole slice when a unit gets fewer.
    split = max(1, min(unit.count // n_units, max(keys)))
    chunk = math.ceil(max(keys) / split)
    block_keys = min(block[1], chunk)
    # Two block products (rows x block_keys x head_dim and x v_dim MACs), at the sustained rate.
    if op.v_head_dim is None:
        mma = 2 * rows_padded * block_keys * op.head_dim / (unit.rows * unit.cols) * factor
    else:
        mma = rows_padded * block_keys * (op.head_dim + op.v_dim) / (unit.rows * unit.cols) * factor
    mma /= unit.fraction(op.dtype)
    exps = rows * block_keys / exp_rate * (2 if op.softcap else 1)  # a soft cap's tanh too
    block_s = float(score_block_cycles(chip, mma * mma_fac, exps * exp_fac)) / unit.clock_hz
    fill_s = 2 * chip.memory[chip.home_level].latency_s
    durations = [fill_s + math.ceil(math.ceil(k / split) / block_keys) * block_s
                 for k in keys] * (op.batch * op.n_kv_heads * split)
    return _makespan(durations, unit.count)


def kv_dequant_ops(chip: Chip, op: Attention, kv_elements: float) -> float:
    """Vector-lane operations that dequantize ``kv_elements`` cached K/V elements stored
    narrower than the kernel's math (an fp8 cache under bf16 attention); 0 otherwise."""
    if op.kv_dtype is None or op.kv_elem_bytes >= dtype_bytes(op.dtype):
        return 0.0
    return kv_elements * chip.vector_units.dequant_ops_per_element


def attention_cost(chip: Chip, op: Attention) -> OpCost:
    """Cost of one attention kernel (or three, naive) on ``chip``, with the cheapest block
    that fits the buffers (:func:`hwsim.mapping.attention.attention_blocks`). On systolic
    arrays a fused kernel is the cheaper of the fused score-softmax-value dataflow and two
    batched GEMMs with the scores through memory (the detail says which)."""
    if chip.compute_units.kind != "tensor_core" and op.impl != "naive":
        flows = systolic_dataflows(chip, op)
        # Ties keep the fused dataflow: same input, same choice.
        gemms_win = flows["two_gemms"].latency_s < flows["fused"].latency_s
        return flows["two_gemms"] if gemms_win else flows["fused"]
    return fused_attention_cost(chip, op)


def fused_attention_cost(chip: Chip, op: Attention) -> OpCost:
    """Cost of ``op``'s fused kernel (or the naive one) with the cheapest block of
    :func:`hwsim.mapping.attention.attention_blocks` (the first, largest, on a tie)."""
    return _cheapest(chip, op)[1]


def cheapest_block(chip: Chip, op: Attention) -> tuple[int, int]:
    """The block :func:`fused_attention_cost` keeps for ``op`` on ``chip``."""
    return _cheapest(chip, op)[0]


def _cheapest(chip: Chip, op: Attention) -> tuple[tuple[int, int], OpCost]:
    tensor = chip.compute_units.kind == "tensor_core"
    # A systolic fused kernel's compute does not depend on the block, and its traffic
    # only on the block's rows: compute once, and cost one block per row count (the
    # first, which a later equal cost would not replace anyway).
    fused_s = 0.0 if tensor else systolic_fused_s(chip, op)
    rows_seen: set[int] = set()
    best: tuple[tuple[int, int], OpCost] | None = None
    for block in attention_blocks(chip, op):
        if not tensor:
            if block[0] in rows_seen:
                continue
            rows_seen.add(block[0])
        compute_s = _tensor_core_compute_s(chip, op, block) if tensor else fused_s
        cost = _assemble(chip, op, block, compute_s)
        if best is None or cost.latency_s < best[1].latency_s:
            best = block, cost
    assert best is not None  # attention_blocks is never empty
    return best


def attention_cost_with_block(chip: Chip, op: Attention, block: tuple[int, int]) -> OpCost:
    """Cost of ``op``'s fused kernel (or the naive one) with ``block`` query rows x keys."""
    if chip.compute_units.kind == "tensor_core":
        return _assemble(chip, op, block, _tensor_core_compute_s(chip, op, block))
    return _assemble(chip, op, block, systolic_fused_s(chip, op))


def systolic_dataflows(chip: Chip, op: Attention) -> dict[str, OpCost]:
    """Both dataflows of a fused attention kernel on a systolic-array chip: ``fused``
    (score-softmax-value, scores on chip, with its cheapest block) and ``two_gemms``
    (scores through memory)."""
    two_gemms = _assemble(chip, op, largest_block(chip, op), systolic_gemms_s(chip, op),
                          score_level(chip, op))
    return {"fused": fused_attention_cost(chip, op), "two_gemms": two_gemms}


def _assemble(chip: Chip, op: Attention, block: tuple[int, int], compute_s: float,
              scores_in: str | None = None) -> OpCost:
    """The cost of ``op`` whose units are busy ``compute_s``: a fused kernel, the naive
    one, or (``scores_in`` a level name) two batched GEMMs whose score matrix is written,
    read and rewritten by the softmax, and read again in that level and those inside it."""
    unit = chip.compute_units
    group = op.n_heads // op.n_kv_heads
    passes = BACKWARD_MMA if op.backward else 1.0
    io = op.min_bytes
    writes = op.o_bytes + ((op.q_bytes + op.o_bytes) if op.backward else 0.0)
    q_blocks = math.ceil(op.q_len / block[0])
    # Every query block of every head streams its head's K and V from the level inside
    # home; causal blocks stop at the diagonal (and windows before their start). Two
    # GEMMs read them once.
    causal_share = op.n_scores / (op.q_len * op.kv_keys)
    rereads = 0.0 if scores_in else op.kv_bytes * group * max(q_blocks * causal_share - 1, 0) * passes
    inner_reads = io - writes + rereads
    n_kernels = 1
    names = chip.level_names
    score_bytes = 2 * op.score_bytes * passes
    reads = dict.fromkeys(names[:-1], inner_reads) | {names[-1]: io - writes}
    level_writes = dict.fromkeys(names, writes)
    if op.impl == "naive" or scores_in:
        through = names if op.impl == "naive" else names[:names.index(scores_in) + 1]  # type: ignore[arg-type]
        for name in through:
            reads[name] += score_bytes
            level_writes[name] += score_bytes
        n_kernels = 3
    traffic = tuple(LevelTraffic(name, reads[name], level_writes[name]) for name in names)
    vec = chip.vector_units
    # A narrow cache is dequantized as each K/V tile loads (once per query block that
    # streams it), on the vector units, in series with the block products.
    loads = 1.0 * passes if scores_in else max(q_blocks * causal_share, 1.0) * passes
    deq_ops = kv_dequant_ops(chip, op, op.kv_bytes / op.kv_elem_bytes * loads)
    compute_s += deq_ops / vec.peak_ops_per_s if deq_ops else 0.0
    cycles = compute_s * unit.clock_hz * unit.fraction(op.dtype)
    n_scores = op.batch * op.n_heads * op.n_scores * passes
    energy = (op.flops / 2 * unit.energy_per_mac_pj.get(op.dtype, 0.0)  # type: ignore[call-overload]
              + (n_scores * vec.score_energy_ops(op.softcap) + deq_ops) * vec.energy_per_op_pj) * 1e-12
    return make_cost(chip, flops=op.flops, compute_cycles=cycles, compute_s=compute_s,
                     traffic=traffic, n_kernels=n_kernels, compute_energy_j=energy,
                     footprint_bytes=op.kv_bytes, detail=_detail(op, block, q_blocks, scores_in))


def _detail(op: Attention, block: tuple[int, int], q_blocks: int, scores_in: str | None) -> str:
    variant = f"{op.variant}, " if op.variant else ""
    if op.window is not None:
        variant += f"window {op.window}, "
    elif op.chunk is not None:
        variant += f"chunk {op.chunk}, "
    if scores_in:
        return (f"{variant}{op.impl}: two batched GEMMs, scores in {scores_in}, "
                f"{op.batch * op.n_kv_heads} kv heads")
    return (f"{variant}{op.impl}, block {block[0]}x{block[1]}, {q_blocks} query blocks x "
            f"{op.batch * op.n_kv_heads} kv heads")
