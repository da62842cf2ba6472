"""Paged KV-cache blocks of one replica (vLLM's block manager, in numbers only).

The cache is ``n_blocks`` blocks of ``block_tokens`` tokens each; a request holds
``ceil(tokens / block_tokens)`` blocks for the tokens whose keys and values it keeps, so
its last block is partly empty (internal fragmentation). Requests that share a prompt
prefix (``prefix_id``) share that prefix's full blocks by reference count: the first to
compute them owns them, later ones find them cached (a prefix hit) and neither compute
nor store them again; a cached prefix nobody uses is kept until its blocks are needed
(least recently used first).

A block is ``block_tokens`` tokens of every layer that keeps growing (MLA: its latent).
Sliding-window layers stop growing at their window, and state-space (Mamba) layers
hold a fixed state per request whatever its length, so what a request holds is a
:class:`KVLayout` function of its tokens, counted in blocks of that size (a model
without attention: one block is one request's state, as vLLM sizes a Mamba
model's state pages).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np


def blocks_for(tokens: np.ndarray | int, block_tokens: int) -> np.ndarray | int:
    """Blocks that hold ``tokens`` tokens (0 for none)."""
    return -(-tokens // block_tokens)


@dataclass(frozen=True)
class KVLayout:
    """The KV bytes a request holds on one chip as a function of its tokens, in blocks.

    Attributes
    ----------
    block_tokens : int
    growing_bytes_per_token : float
        Layers whose cache grows with every token (full attention, MLA latents), in B.
    windows : tuple of (int, float)
        ``(window_tokens, bytes_per_token)`` of the sliding-window layers: each keeps at
        most its window plus the block being filled.
    state_bytes : float
        Fixed bytes of every request that holds a token: the conv and SSM states of the
        state-space layers, in B.
    """

    block_tokens: int
    growing_bytes_per_token: float
    windows: tuple[tuple[int, float], ...] = ()
    state_bytes: float = 0.0

    @property
    def block_bytes(self) -> float:
        """Bytes of one block (B): ``block_tokens`` tokens of the growing layers (of the
        window layers when none grows; one request's state when no layer keeps tokens)."""
        per_token = self.growing_bytes_per_token or sum(b for _, b in self.windows)
        return self.block_tokens * per_token if per_token else self.state_bytes

    def blocks(self, tokens: np.ndarray | int) -> np.ndarray | int:
        """Blocks that hold ``tokens`` tokens of one request."""
        whole = blocks_for(tokens, self.block_tokens)
        if not self.windows and not self.state_bytes:
            return whole
        held = np.asarray(whole) * self.block_tokens
        n_bytes = held * self.growing_bytes_per_token
        for window, per_token in self.windows:
            n_bytes = n_bytes + np.minimum(held, window + self.block_tokens) * per_token
        if self.state_bytes:
            n_bytes = n_bytes + np.where(np.asarray(tokens) > 0, self.state_bytes, 0.0)
        out = np.ceil(n_bytes / self.block_bytes - 1e-9).astype(np.int64)
        return out if np.ndim(tokens) else int(out)


@dataclass
class _Prefix:
    blocks: int
    users: int = 0


@dataclass
class KVBlocks:
    """Block accounting of one replica's KV cache.

    Attributes
    ----------
    n_blocks : int
        Blocks the cache holds.
    block_tokens : int
        Tokens per block.
    watermark_blocks : int
        Blocks kept free when admitting new requests (so running ones can grow).
    held : numpy.ndarray
        Private blocks each request holds (indexed by request id).
    """

    n_blocks: int
    block_tokens: int
    n_requests: int
    watermark_blocks: int = 0
    layout: KVLayout | None = None
    held: np.ndarray = field(init=False)
    used: int = 0
    _prefixes: OrderedDict[int, _Prefix] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.held = np.zeros(self.n_requests, dtype=np.int64)

    def blocks(self, tokens: np.ndarray | int) -> np.ndarray | int:
        """Blocks one request holding ``tokens`` tokens needs (:class:`KVLayout`)."""
        if self.layout is None:
            return blocks_for(tokens, self.block_tokens)
        return self.layout.blocks(tokens)

    @property
    def free(self) -> int:
        """Blocks no request and no cached prefix holds."""
        return self.n_blocks - self.used

    def reclaimable(self) -> int:
        """Blocks of cached prefixes nobody uses (freed on demand)."""
        return sum(p.blocks for p in self._prefixes.values() if p.users == 0)

    def available(self) -> int:
        """Blocks that can be handed out now (free plus idle cached prefixes)."""
        return self.free + self.reclaimable()

    def _reclaim(self, need: int) -> None:
        for pid in list(self._prefixes):
            if self.free >= need:
                return
            prefix = self._prefixes[pid]
            if prefix.users == 0:
                self.used -= prefix.blocks
                del self._prefixes[pid]

    def _wanted(self, ids: np.ndarray, tokens: np.ndarray, shared_tokens: np.ndarray | None) -> np.ndarray:
        """Private blocks requests ``ids`` need in all to hold ``tokens`` tokens."""
        need_tokens = tokens if shared_tokens is None else np.maximum(tokens - shared_tokens, 0)
        return np.asarray(self.blocks(need_tokens))

    def grow(self, ids: np.ndarray, tokens: np.ndarray, shared_tokens: np.ndarray | None = None) -> bool:
        """Give requests ``ids`` the private blocks they need to hold ``tokens`` tokens
        (less the ``shared_tokens`` of a shared prefix); all or nothing."""
        want = self._wanted(ids, tokens, shared_tokens) - self.held[ids]
        extra = int(np.maximum(want, 0).sum())
        if extra > self.free:
            self._reclaim(extra)
            if extra > self.free:
                return False
        self.held[ids] += np.maximum(want, 0)
        self.used += extra
        return True

    def release(self, ids: np.ndarray | list[int]) -> int:
        """Free the private blocks of ``ids``; return how many."""
        ids = np.asarray(ids, dtype=np.int64)
        n = int(self.held[ids].sum())
        self.held[ids] = 0
        self.used -= n
        return n

    # Prefixes ----------------------------------------------------------------------
    def prefix_blocks(self, prefix_id: int) -> int:
        """Blocks of ``prefix_id`` already cached (0 if none)."""
        prefix = self._prefixes.get(prefix_id)
        return prefix.blocks if prefix is not None else 0

    def use_prefix(self, prefix_id: int) -> None:
        self._prefixes[prefix_id].users += 1
        self._prefixes.move_to_end(prefix_id)

    def add_prefix(self, prefix_id: int, blocks: int) -> bool:
        """Cache ``blocks`` blocks as ``prefix_id`` (one user: its maker); False if no room."""
        if blocks > self.free:
            self._reclaim(blocks)
            if blocks > self.free:
                return False
        self._prefixes[prefix_id] = _Prefix(blocks, 1)
        self.used += blocks
        return True

    def drop_prefix_user(self, prefix_id: int) -> None:
        prefix = self._prefixes.get(prefix_id)
        if prefix is not None and prefix.users > 0:
            prefix.users -= 1
