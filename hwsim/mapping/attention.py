"""Block sizes of a fused attention kernel: FlashAttention's query rows ``Br`` and keys
``Bc`` per block, chosen from the buffer a chip's compute unit has.

A block's working set is its Q tile (``Br x d``), its K and V tiles (``Bc x d`` and
``Bc x dv``), the fp32 output accumulator (``Br x dv``) and the fp32 score tile
(``Br x Bc``). The candidates are the power-of-two blocks from 16 to 256 whose working
set fits the unit's buffer (the innermost memory level, per unit, or a shared innermost
level's share per unit); the cost model ranks them and keeps the cheapest
(:func:`hwsim.cost.attention.attention_cost`): larger blocks re-read K and V fewer times,
smaller ones make more, shorter units (better balanced under a causal mask) and waste
less on a partial last block. On an H100 (228 KiB of shared memory per SM, bf16) the
largest fitting block is 128 x 128 at d = 128 and 64 x 64 at d = 256. Counting the
accumulator and scores in the buffer is conservative on GPUs, whose kernels hold them
in registers; a chip whose kernel library fixes its blocks declares them
(``compute_units.attention_block``) and keeps them at every head size.
"""

from __future__ import annotations

from hwsim.arch.model import Chip
from hwsim.dtypes import dtype_bytes
from hwsim.workload.ops import Attention

#: Smallest and largest block side the mapper considers (FlashAttention's range).
MIN_BLOCK = 16
MAX_BLOCK = 256
#: Bytes of one fp32 accumulator or score element.
ACC_BYTES = 4


def unit_buffer_bytes(chip: Chip) -> float:
    """Bytes of the innermost memory level one compute unit has to itself (a shared
    innermost level split evenly over the units)."""
    return chip.memory[chip.level_names[0]].unit_share_bytes(chip.compute_units.count)


def block_bytes(rows: int, keys: int, op: Attention) -> float:
    """Working set of one ``rows`` x ``keys`` block of ``op``'s fused kernel, in bytes:
    Q, K and V tiles, the fp32 output accumulator and the fp32 score tile."""
    q_tile = rows * op.head_dim * dtype_bytes(op.dtype)
    kv_width = op.head_dim if op.latent_kv else op.head_dim + op.v_dim
    kv_tiles = keys * kv_width * op.kv_elem_bytes
    return q_tile + kv_tiles + ACC_BYTES * rows * (op.v_dim + keys)


def _candidates() -> list[tuple[int, int]]:
    sides = [MIN_BLOCK << i for i in range((MAX_BLOCK // MIN_BLOCK).bit_length())]
    # Most rows x keys first; among equal areas more rows (fewer K/V re-reads), then keys.
    return sorted(((r, c) for r in sides for c in sides), key=lambda rc: (-rc[0] * rc[1], -rc[0]))


def block_fits(chip: Chip, op: Attention, block: tuple[int, int]) -> bool:
    """Whether ``block``'s working set fits one unit's buffer."""
    return block_bytes(*block, op) <= unit_buffer_bytes(chip)


def attention_blocks(chip: Chip, op: Attention) -> list[tuple[int, int]]:
    """The blocks the mapper ranks for ``op``'s fused kernel on ``chip``, largest first:
    the chip's declared ``compute_units.attention_block`` alone, else every power-of-two
    block whose working set fits the unit's buffer (the smallest, ``MIN_BLOCK`` x
    ``MIN_BLOCK``, where none does: a kernel that spills, which the cost does not charge)."""
    declared = chip.compute_units.attention_block
    if declared is not None:
        return [declared]
    fitting = [b for b in _candidates() if block_fits(chip, op, b)]
    return fitting or [(MIN_BLOCK, MIN_BLOCK)]


def largest_block(chip: Chip, op: Attention) -> tuple[int, int]:
    """The first of :func:`attention_blocks`: most rows x keys, then most rows."""
    return attention_blocks(chip, op)[0]
