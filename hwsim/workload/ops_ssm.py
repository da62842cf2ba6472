"""Operators of a state-space (Mamba) mixer: the causal depthwise convolution and the
selective scan, with their FLOP and byte counts.

The scan's work is counted per element of the recurrence (Gu & Dao 2023, Algorithm 2;
Dao & Gu 2024, section 7), in vector operations, one per add, multiply or exp:

- Mamba (``selective_scan``): per token, channel and state ``exp(dt A)`` (2),
  ``dt x B`` (1, ``dt x`` shared over the states), ``h = dA h + dBx`` (2) and
  ``y += C h`` (2): :data:`MAMBA_STATE_OPS`; per token and channel the softplus of
  ``dt`` with its bias (3), ``dt x`` (1), the skip ``D x`` (2) and the gate
  ``y silu(z)`` (5): :data:`MAMBA_CHANNEL_OPS`.
- Mamba-2 decode (``selective_state_update``, one token): per head channel and state
  ``dt x B`` (1), the update (2) and the read-out (2): :data:`MAMBA2_STATE_OPS`; per
  head channel ``dt x`` and the skip (3); per head ``exp(dt A)`` and the softplus (5).
- Mamba-2 prefill (SSD, chunks of ``L`` tokens): the matrix products of the chunked
  form on the matrix units, per chunk ``C B^T`` (L x N by N x L per group), the
  intra-chunk output ``(C B^T o decay) X`` (L x L by L x P per head), the chunk state
  ``B^T X`` (N x L by L x P per head) and the inter-chunk output ``C S``
  (L x N by N x P per head); the whole L x L blocks are computed (the causal mask is
  applied, not skipped, as the Triton kernels do). On the vector units the decay
  matrix (2 per L x L element and head), the decayed inputs (1 per token and head
  channel), the skip (2 per token and head channel) and the state passing between
  chunks (2 per state element, head and chunk).

Bytes: x, dt, B, C (and Mamba's gate z) read once, y written once; each sequence's
state (conv window and SSM state, :meth:`SsmSpec.state_elements`) written once and
read once when the sequence continues from a stored state; the SSD chunk states
(fp32) written by the chunk-state kernel, read and written by the state passing and
read by the chunk scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.dtypes import dtype_bytes

MAMBA_STATE_OPS = 7
MAMBA_CHANNEL_OPS = 11
MAMBA2_STATE_OPS = 5
MAMBA2_CHANNEL_OPS = 3
MAMBA2_HEAD_OPS = 5
SSD_DECAY_OPS = 2
SSD_CHANNEL_OPS = 3
SSD_PASS_OPS = 2
#: Bytes per element of the SSD chunk states (the Triton kernels keep them in fp32).
CHUNK_STATE_BYTES = 4.0
#: SiLU after the convolution, fused in the causal-conv1d kernel.
SILU_OPS = 4


@dataclass(frozen=True)
class CausalConv1d:
    """Depthwise causal convolution of ``kernel`` taps over ``channels`` channels of
    ``n_tokens`` tokens, with its fused bias and SiLU (the ``causal_conv1d`` kernel).
    The window of earlier inputs each sequence keeps is counted with the state, by
    the :class:`SelectiveScan` of the same layer."""

    n_tokens: int
    channels: int
    kernel: int
    dtype: str = "bf16"
    bias: bool = True

    kind = "conv1d"

    @property
    def n_elements(self) -> float:
        return float(self.n_tokens) * self.channels

    @property
    def flops(self) -> float:
        """2 per tap, the bias add and the SiLU."""
        return self.n_elements * (2 * self.kernel + (1 if self.bias else 0) + SILU_OPS)

    @property
    def min_bytes(self) -> float:
        """Input read and output written once; the taps and bias once."""
        weights = self.channels * (self.kernel + (1 if self.bias else 0))
        return (2 * self.n_elements + weights) * dtype_bytes(self.dtype)


@dataclass(frozen=True)
class ScanWork:
    """What a selective scan does: its matrix products (as batched GEMMs of
    activations), its vector operations and the bytes it moves."""

    gemms: tuple[tuple[int, int, int, int], ...] = ()  # (batch, m, k, n)
    vector_ops: float = 0.0
    read_bytes: float = 0.0
    write_bytes: float = 0.0

    @property
    def matrix_flops(self) -> float:
        return float(sum(2.0 * b * m * k * n for b, m, k, n in self.gemms))

    @property
    def flops(self) -> float:
        return self.matrix_flops + self.vector_ops


@dataclass(frozen=True)
class SelectiveScan:
    """The selective scan of one state-space layer on one chip over ``batch`` sequences
    of ``q_len`` new tokens each (counts: module docstring).

    ``channels`` is the chip's share of ``d_inner`` in ``n_heads`` heads (Mamba: one
    channel per head); B and C come in ``n_groups`` groups of ``d_state``;
    ``state_elements`` is one sequence's stored state on the chip; ``prior_state``
    that the sequences continue from a stored state (decode, later prefill chunks).
    """

    variant: str
    batch: int
    q_len: int
    channels: int
    n_heads: int
    d_state: int
    n_groups: int
    chunk: int
    state_elements: int
    prior_state: bool = False
    dtype: str = "bf16"

    kind = "selective_scan"

    @property
    def head_dim(self) -> int:
        return self.channels // self.n_heads

    def work(self, q: np.ndarray | None = None, prior: np.ndarray | None = None) -> ScanWork:
        """The scan's work for sequences of ``q[i]`` new tokens (``prior[i]``: continuing
        from a stored state); default the op's own uniform batch."""
        if q is None:
            q = np.full(self.batch, self.q_len, dtype=np.int64)
            prior = np.full(self.batch, self.prior_state)
        assert prior is not None
        return scan_work(self, np.asarray(q, dtype=np.int64), np.asarray(prior, dtype=bool))

    @property
    def flops(self) -> float:
        return self.work().flops

    @property
    def min_bytes(self) -> float:
        w = self.work()
        return w.read_bytes + w.write_bytes


def _io_bytes(op: SelectiveScan, tokens: float, n_seqs: int, n_prior: int) -> tuple[float, float]:
    """(read, write) bytes of the scan's inputs, outputs and stored states."""
    elem = dtype_bytes(op.dtype)
    c, n, g = op.channels, op.d_state, op.n_groups
    # Mamba: x, dt and z per channel, B and C; Mamba-2: x per channel, dt per head, B and C per group.
    per_token_in = 3 * c + 2 * n if op.variant == "mamba" else c + op.n_heads + 2 * g * n
    read = tokens * per_token_in * elem + n_prior * op.state_elements * elem
    write = tokens * c * elem + n_seqs * op.state_elements * elem
    return read, write


def scan_work(op: SelectiveScan, q: np.ndarray, prior: np.ndarray) -> ScanWork:
    """The work of ``op``'s scan over sequences of ``q[i]`` new tokens."""
    tokens = float(q.sum())
    read, write = _io_bytes(op, tokens, int(q.size), int(prior.sum()))
    c, h, n, g, p = op.channels, op.n_heads, op.d_state, op.n_groups, op.head_dim
    if op.variant == "mamba":
        ops = tokens * c * (MAMBA_STATE_OPS * n + MAMBA_CHANNEL_OPS)
        return ScanWork((), ops, read, write)
    step = q == 1
    steps = float(q[step].sum())
    ops = steps * (h * p * (MAMBA2_STATE_OPS * n + MAMBA2_CHANNEL_OPS) + h * MAMBA2_HEAD_OPS)
    long = q[~step]
    if not long.size:
        return ScanWork((), ops, read, write)
    # SSD: every sequence's tokens in chunks of `chunk`, the last one partial.
    full = long // op.chunk
    rest = long % op.chunk
    lengths = {op.chunk: int(full.sum())} if full.sum() else {}
    for length, count in zip(*np.unique(rest[rest > 0], return_counts=True), strict=True):
        lengths[int(length)] = lengths.get(int(length), 0) + int(count)
    gemms: list[tuple[int, int, int, int]] = []
    n_chunks = 0
    prefill_tokens = float(long.sum())
    for length, count in sorted(lengths.items()):
        n_chunks += count
        gemms += [(count * g, length, n, length),   # C B^T per group
                  (count * h, length, length, p),   # (C B^T o decay) X per head
                  (count * h, n, length, p),        # chunk state B^T X
                  (count * h, length, n, p)]        # inter-chunk output C S
        ops += count * h * length * length * SSD_DECAY_OPS
    ops += prefill_tokens * h * p * SSD_CHANNEL_OPS + n_chunks * h * p * n * SSD_PASS_OPS
    chunk_states = n_chunks * h * p * n * CHUNK_STATE_BYTES
    return ScanWork(tuple(gemms), ops, read + 2 * chunk_states, write + 2 * chunk_states)
