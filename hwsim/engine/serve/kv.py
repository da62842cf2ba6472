"""Paged KV-cache blocks of one replica (vLLM's block manager, in numbers only).

The cache is ``n_blocks`` blocks of ``block_tokens`` tokens each; a request holds
``ceil(tokens / block_tokens)`` blocks for the tokens whose keys and values it keeps, so
its last block is partly empty (internal fragmentation). Requests that share a prompt
prefix (``prefix_id``) share that prefix's full blocks by reference count: the first to
compute them owns them, later ones find them cached (a prefix hit) and neither compute
nor store them again; a cached prefix nobody uses is kept until its blocks are needed
(least recently used first).

How many tokens a block stands for in bytes depends on the model's layers (full,
sliding-window, compressed latent): the caller converts capacity to blocks.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np


def blocks_for(tokens: np.ndarray | int, block_tokens: int) -> np.ndarray | int:
    """Blocks that hold ``tokens`` tokens (0 for none)."""
    return -(-tokens // block_tokens)


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
    held: np.ndarray = field(init=False)
    used: int = 0
    _prefixes: OrderedDict[int, _Prefix] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.held = np.zeros(self.n_requests, dtype=np.int64)

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

    def grow(self, ids: np.ndarray, tokens: np.ndarray, shared_tokens: np.ndarray | None = None) -> bool:
        """Give requests ``ids`` the private blocks they need to hold ``tokens`` tokens
        (less the ``shared_tokens`` of a shared prefix); all or nothing."""
        need_tokens = tokens if shared_tokens is None else np.maximum(tokens - shared_tokens, 0)
        want = blocks_for(need_tokens, self.block_tokens) - self.held[ids]
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
