"""The attention operator (:class:`Attention`): scaled dot-product attention with its
structure (windows, chunks, MLA, soft-capping, block-sparse masks, approximations), kept
apart from the other operators of :mod:`hwsim.workload.ops`, which re-exports it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwsim.dtypes import dtype_bytes

if TYPE_CHECKING:
    from hwsim.workload.approx import ApproxAlgorithm, AttentionApprox


@dataclass(frozen=True)
class Attention:
    """Scaled dot-product attention over ``batch`` sequences (grouped-query capable).

    ``impl="flash"`` is a fused, tiled kernel whose off-chip traffic is Q, K, V and O
    once; ``impl="naive"`` materialises the score matrix in memory. ``backward`` costs
    the gradient kernel instead of the forward one.

    Structure beyond plain causal attention (defaults leave it plain):

    - ``window``: each query sees at most its ``window`` most recent keys (sliding
      window); ``chunk``: each query sees only the keys of its own ``chunk``-long block
      of positions (chunked local attention). Both cap the keys read.
    - ``v_head_dim``: value/output width per head where it differs from the query/key
      ``head_dim`` (MLA); ``latent_kv``: the values are the first ``v_head_dim``
      columns of the keys (MLA's absorbed form caches one latent per token), so only
      the keys are read.
    - ``softcap``: logits soft-capped (``c * tanh(s / c)``): one more transcendental per
      score on the vector units.
    - ``variant``: a label shown in the cost detail (``"mla absorbed"``).
    - ``kv_dtype``: the KV cache's stored format where it differs from ``dtype`` (an
      fp8 cache read by a bf16 kernel, dequantized as it loads).
    - ``key_density``: block-sparse masks (BigBird, strided, dilated at block
      granularity): each query block computes this share of the key blocks it would
      otherwise see, and the kernel skips the rest; the keys read from memory are the
      union over query blocks (one query block reads only its share).
    - ``approx``: a research design's approximation (token/head pruning, candidate
      selection, progressive quantization; :mod:`hwsim.workload.pruning`), costed by
      :mod:`hwsim.cost.approx_attention`; the shape fields stay the dense ones.
    - ``algorithm``: an approximate-attention algorithm (top-k, Linformer, Performer,
      Reformer; :mod:`hwsim.workload.approx_algorithms`) computed instead of exact
      softmax attention, costed by :mod:`hwsim.cost.approx_algorithms`; ``flops``
      stays the exact attention's.
    """

    batch: int
    n_heads: int
    n_kv_heads: int
    q_len: int
    kv_len: int
    head_dim: int
    is_causal: bool = True
    dtype: str = "bf16"
    impl: str = "flash"
    backward: bool = False
    window: int | None = None
    chunk: int | None = None
    v_head_dim: int | None = None
    latent_kv: bool = False
    softcap: bool = False
    variant: str = ""
    kv_dtype: str | None = None
    key_density: float = 1.0
    approx: AttentionApprox | None = None
    algorithm: ApproxAlgorithm | None = None

    kind = "attention"

    @property
    def kv_elem_bytes(self) -> float:
        """Bytes of one cached K or V element."""
        return dtype_bytes(self.kv_dtype or self.dtype)

    @property
    def v_dim(self) -> int:
        """Value (and output) width per head."""
        return self.v_head_dim or self.head_dim

    @property
    def n_scores(self) -> float:
        """Query-key pairs actually computed (causal masks skip the future; windows and
        chunks skip what lies before them; block-sparse masks keep ``key_density``)."""
        scores = self._dense_scores
        return scores if self.key_density >= 1.0 else scores * self.key_density

    @property
    def _dense_scores(self) -> float:
        q, kv = self.q_len, self.kv_len
        if not self.is_causal:
            return float(q * kv)
        if self.window is None and self.chunk is None:
            # Query i (0-based, aligned to the end of the cache) sees kv - q + i + 1 keys.
            full = max(kv - q, 0) * q
            return float(full + q * (q + 1) / 2 if q <= kv else kv * (kv + 1) / 2)
        if q > kv:
            return float(kv * (kv + 1) / 2)
        # Query i (0-based, aligned to the end of the cache) sits at position kv - q + i
        # and sees seen(p) keys: p + 1 (causal), min(p + 1, window), or p mod chunk + 1.
        return float(_seen_upto(kv, self.window, self.chunk) - _seen_upto(kv - q, self.window, self.chunk))

    @property
    def kv_keys(self) -> int:
        """Distinct keys the queries read (all ``kv_len``, less what windows and chunks
        skip; under a block-sparse mask, the union of the query blocks' shares)."""
        keys = self._dense_keys
        if self.key_density >= 1.0:
            return keys
        q_blocks = -(-self.q_len // 128)  # query blocks of a fused kernel (cost.attention.Q_BLOCK)
        return max(1, math.ceil(keys * min(1.0, self.key_density * q_blocks)))

    @property
    def _dense_keys(self) -> int:
        first = self.kv_len - min(self.q_len, self.kv_len)  # position of the first query
        if not self.is_causal:
            return self.kv_len
        if self.window is not None:
            return min(self.kv_len, self.kv_len - first + self.window - 1)
        if self.chunk is not None:
            return self.kv_len - (first // self.chunk) * self.chunk
        return self.kv_len

    @property
    def flops(self) -> float:
        """QK^T and PV, 2 FLOP per MAC each; backward does 2.5x the forward's matmuls."""
        if self.v_head_dim is None:
            fwd = 4.0 * self.batch * self.n_heads * self.n_scores * self.head_dim
        else:
            fwd = 2.0 * self.batch * self.n_heads * self.n_scores * (self.head_dim + self.v_dim)
        return 2.5 * fwd if self.backward else fwd

    @property
    def q_bytes(self) -> float:
        return self.batch * self.n_heads * self.q_len * self.head_dim * dtype_bytes(self.dtype)

    @property
    def o_bytes(self) -> float:
        return self.batch * self.n_heads * self.q_len * self.v_dim * dtype_bytes(self.dtype)

    @property
    def qo_bytes(self) -> float:
        """Bytes of the output O (equal to those of Q unless ``v_head_dim`` differs)."""
        return self.o_bytes

    @property
    def kv_bytes(self) -> float:
        """Bytes of K and V together (shared across the heads of a group)."""
        if self.v_head_dim is None and not self.latent_kv:
            return 2.0 * self.batch * self.n_kv_heads * self.kv_keys * self.head_dim * self.kv_elem_bytes
        width = self.head_dim if self.latent_kv else self.head_dim + self.v_dim
        return float(self.batch * self.n_kv_heads * self.kv_keys * width * self.kv_elem_bytes)

    @property
    def score_bytes(self) -> float:
        """Bytes of the score matrix if materialised (naive attention)."""
        return self.batch * self.n_heads * self.n_scores * dtype_bytes(self.dtype)

    @property
    def min_bytes(self) -> float:
        """Fused-kernel traffic: Q, K, V read and O written once (backward: also dO
        read, dQ, dK, dV written)."""
        fwd = self.q_bytes + self.o_bytes + self.kv_bytes
        return 2.0 * fwd + self.o_bytes if self.backward else fwd


def _seen_upto(n: int, window: int | None, chunk: int | None) -> float:
    """Sum over positions p < n of the keys the query at p sees."""
    if n <= 0:
        return 0.0
    if window is not None:
        if n <= window:
            return n * (n + 1) / 2
        return window * (window + 1) / 2 + (n - window) * window
    if chunk is not None:
        full, rest = divmod(n, chunk)
        return full * chunk * (chunk + 1) / 2 + rest * (rest + 1) / 2
    return n * (n + 1) / 2
