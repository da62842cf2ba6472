"""Iteration-level schedulers of one replica: which requests run in the next iteration,
with how many new tokens each.

Every request in the cache has ``computed`` tokens whose keys and values are stored and
``generated`` output tokens; it still has ``prompt + generated - computed`` known tokens
to feed. An iteration feeds ``q_i`` of them; a request whose known tokens are then all
fed samples its next token. This one rule covers a whole prefill, a prefill chunk, a
decode step (one token to feed) and the recomputation of a preempted request (its
prompt and generated tokens fed again). The policies:

- ``static`` (FasterTransformer): a batch of up to ``max_num_seqs`` requests is formed
  when the previous one has finished; its members' KV is reserved for prompt + the
  batch's longest output; finished members keep computing (padding) until the batch ends.
- ``orca`` (Yu et al., OSDI 2022): iteration-level batching; new requests join with their
  whole prompt beside the running decodes; KV reserved for prompt + output at admission.
- ``vllm`` (Kwon et al., SOSP 2023; vLLM's default V0 scheduler): paged KV allocated as
  tokens are stored; prefill-first: an iteration of new prefills whenever any fits,
  otherwise one decode iteration of every running request; a decode that finds no free
  block preempts the most recently admitted requests (by recompute or by swap).
- ``sarathi`` (Agrawal et al., OSDI 2024; vLLM's chunked prefill): decode-first under a
  token budget: every running decode, then prefill chunks of running and new requests
  until ``max_num_batched_tokens``.

``priority`` overrides which of prefill and decode goes first for ``vllm``/``sarathi``.
"""

from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hwsim.engine.serve.kv import KVBlocks
from hwsim.engine.serve.table import RequestTable

Policy = Literal["static", "orca", "vllm", "sarathi"]
POLICIES: tuple[str, ...] = ("static", "orca", "vllm", "sarathi")


@dataclass(frozen=True)
class SchedulerConfig:
    """Options a serving engine exposes.

    Attributes
    ----------
    policy : {"static", "orca", "vllm", "sarathi"}
    max_num_seqs : int
        Requests in one iteration at most.
    max_num_batched_tokens : int
        New tokens in one iteration at most (sarathi: the chunk budget).
    block_tokens : int
        Tokens per KV block.
    watermark : float
        Share of KV blocks kept free when admitting new requests (vLLM: 0.01).
    preemption : {"recompute", "swap"}
    priority : {"prefill", "decode"}
        Which goes first (``vllm``: prefill, ``sarathi``: decode).
    prefix_caching : bool
        Share the cached blocks of a prompt prefix between requests with its ``prefix_id``.
    """

    policy: Policy = "vllm"
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_tokens: int = 16
    watermark: float = 0.01
    preemption: Literal["recompute", "swap"] = "recompute"
    priority: Literal["prefill", "decode"] | None = None
    prefix_caching: bool = False

    @property
    def prefill_first(self) -> bool:
        if self.priority is not None:
            return self.priority == "prefill"
        return self.policy in ("vllm", "static")

    @property
    def reserves(self) -> bool:
        """KV for the whole request is reserved at admission (no paging, no preemption)."""
        return self.policy in ("static", "orca")

    @property
    def chunks(self) -> bool:
        return self.policy == "sarathi"


@dataclass
class Batch:
    """One iteration's composition: requests, new tokens and attended keys of each."""

    ids: np.ndarray
    q: np.ndarray
    k: np.ndarray
    n_logits: int

    @property
    def n_tokens(self) -> int:
        return int(self.q.sum())


class Scheduler:
    """One replica's queue, running set and KV blocks under a :class:`SchedulerConfig`."""

    def __init__(self, config: SchedulerConfig, table: RequestTable, kv: KVBlocks) -> None:
        self.config, self.table, self.kv = config, table, kv
        self.waiting: deque[int] = deque()
        self.running: list[int] = []
        self.swapped: deque[int] = deque()
        self.in_flight: set[int] = set()
        self.static_members: list[int] = []
        self.static_reserve = 0
        self.swap_bytes = 0.0  # KV to move over the host link before the next iteration

    # Arrivals and status ---------------------------------------------------------------
    def add(self, rid: int) -> None:
        self.waiting.append(rid)

    @property
    def n_waiting(self) -> int:
        return len(self.waiting) + len(self.swapped)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running or self.swapped or self.in_flight)

    # Composing an iteration ------------------------------------------------------------
    def compose(self) -> Batch | None:
        """The next iteration's batch, or None if nothing can run now."""
        policy = self.config.policy
        if policy == "static":
            return self._static()
        if policy == "orca":
            return self._mixed(chunked=False)
        if self.config.chunks:
            return self._mixed(chunked=True)
        return self._prefill_or_decode()

    def _free_running(self) -> list[int]:
        return [r for r in self.running if r not in self.in_flight]

    def _batch(self, ids: list[int], q: list[int] | np.ndarray) -> Batch:
        t = self.table
        ids_a = np.asarray(ids, dtype=np.int64)
        q_a = np.asarray(q, dtype=np.int64)
        k = t.computed[ids_a] + q_a
        samples = int((k == t.known(ids_a)).sum())
        return Batch(ids_a, q_a, k, samples)

    def _admit_order(self) -> deque[int]:
        return self.swapped if self.swapped else self.waiting

    def _try_admit(self, rid: int, tokens: int, seqs: int) -> bool:
        """Admit ``rid`` to feed ``tokens`` tokens now, if blocks and ``max_num_seqs`` allow."""
        cfg, t, kv = self.config, self.table, self.kv
        if seqs >= cfg.max_num_seqs:
            return False
        shared = self._prefix_hit(rid)
        hold = int(t.prompt[rid] + t.output[rid]) if cfg.reserves else int(t.computed[rid]) + tokens
        need = int(kv.blocks(max(hold - shared, 0))) - int(kv.held[rid])
        if need + kv.watermark_blocks > kv.available():
            return False
        ok = kv.grow(np.array([rid]), np.array([hold]), np.array([shared]))
        if ok and shared:
            t.computed[rid] = max(int(t.computed[rid]), shared)
        return ok

    def _prefix_hit(self, rid: int) -> int:
        """Tokens of ``rid``'s prompt found in a cached prefix (0 without prefix caching);
        the last prompt token is always computed (its logits give the first token)."""
        t = self.table
        if not self.config.prefix_caching or t.prefix_id[rid] < 0 or t.computed[rid] > 0:
            return 0
        cached = self.kv.prefix_blocks(int(t.prefix_id[rid]))
        blocks = min(cached, (int(t.prompt[rid]) - 1) // self.kv.block_tokens)
        if blocks <= 0:
            return 0
        self.kv.use_prefix(int(t.prefix_id[rid]))
        t.prefix_hits[rid] = blocks * self.kv.block_tokens
        return blocks * self.kv.block_tokens

    def _take(self, queue: deque[int], budget: int, seqs: int, chunked: bool) -> tuple[list[int], list[int]]:
        """Admit requests from the head of ``queue`` (first come, first served) while they fit."""
        ids: list[int] = []
        q: list[int] = []
        t = self.table
        while queue and budget > 0:
            rid = queue[0]
            todo = int(t.known(rid) - t.computed[rid])
            tokens = min(todo, budget) if chunked else todo
            if tokens > budget or not self._try_admit(rid, tokens, seqs + len(ids)):
                break
            queue.popleft()
            t.admitted(rid)
            self.running.append(rid)
            # A prefix hit may have cached part of what was left to feed.
            tokens = min(tokens, int(t.known(rid) - t.computed[rid]))
            ids.append(rid)
            q.append(tokens)
            budget -= tokens
        return ids, q

    def _prefill_or_decode(self) -> Batch | None:
        """vLLM V0: new prefills when any fits (prefill-first), else every running decode."""
        cfg = self.config
        free = self._free_running()
        if cfg.prefill_first or not free:
            ids, q = self._take(self._admit_order(), cfg.max_num_batched_tokens, len(self.running), False)
            if ids:
                return self._batch(ids, q)
        if free:
            free = self._grow_or_preempt(free)
            if free:
                return self._batch(free, np.ones(len(free), dtype=np.int64))
        if not cfg.prefill_first:
            ids, q = self._take(self._admit_order(), cfg.max_num_batched_tokens, len(self.running), False)
            if ids:
                return self._batch(ids, q)
        return None

    def _mixed(self, chunked: bool) -> Batch | None:
        """Orca and Sarathi: running work first, then new requests, in one iteration."""
        cfg, t = self.config, self.table
        budget = cfg.max_num_batched_tokens
        free = self._free_running()
        todo = t.known(np.asarray(free, dtype=np.int64)) - t.computed[np.asarray(free, dtype=np.int64)] \
            if free else np.zeros(0, dtype=np.int64)
        decodes = [r for r, n in zip(free, todo.tolist(), strict=True) if n == 1]
        partial = [(r, n) for r, n in zip(free, todo.tolist(), strict=True) if n > 1]
        if not cfg.reserves:
            decodes = self._grow_or_preempt(decodes)
        ids, q = list(decodes), [1] * len(decodes)
        budget -= len(decodes)
        for rid, n in partial:
            if budget <= 0:
                break
            tokens = min(n, budget) if chunked else n
            if tokens > budget:
                break
            if not cfg.reserves and not self.kv.grow(np.array([rid]), np.array([t.computed[rid] + tokens])):
                break
            ids.append(rid)
            q.append(tokens)
            budget -= tokens
        new_ids, new_q = self._take(self._admit_order(), budget, len(self.running), chunked)
        ids += new_ids
        q += new_q
        return self._batch(ids, q) if ids else None

    def _static(self) -> Batch | None:
        """FasterTransformer: one batch at a time, padded to its longest member."""
        if not self.static_members:
            if self.in_flight:
                return None
            # A static batch has no token budget: its whole prompts run together.
            members, prompts = self._take(self.waiting, sys.maxsize, 0, False)
            if not members:
                return None
            self.static_members = members
            return self._batch(members, prompts)
        if self.in_flight:
            return None
        return self._batch(self.static_members, np.ones(len(self.static_members), dtype=np.int64))

    # Preemption ------------------------------------------------------------------------
    def _grow_or_preempt(self, ids: list[int]) -> list[int]:
        """Give each decode its next token's block, preempting the most recently
        admitted running requests until the rest fit; return those still running."""
        t, kv = self.table, self.kv
        ids = list(ids)
        while ids:
            arr = np.asarray(ids, dtype=np.int64)
            if kv.grow(arr, t.computed[arr] + 1):
                return ids
            victim = ids.pop()
            self._preempt(victim)
        return ids

    def _preempt(self, rid: int) -> None:
        t = self.table
        self.running.remove(rid)
        released = self.kv.release([rid])
        t.preempted(rid)
        if self.config.preemption == "swap":
            self.swap_bytes += released * self.bytes_per_block
            t.swapped_tokens[rid] = t.computed[rid]
            self.swapped.appendleft(rid)
        else:
            t.computed[rid] = 0
            self.waiting.appendleft(rid)

    decoding: Any = None
    """A :class:`~hwsim.engine.serve.decoding.ServeDecoding` (set by the caller), or None."""

    def _step_tokens(self, batch: Batch, sampled: np.ndarray) -> np.ndarray:
        """Tokens each sampling request yields: a decode step of a drafting strategy
        its drawn accepted length (capped by its output and by free KV blocks), else 1."""
        t = self.table
        counts = np.ones(sampled.size, dtype=np.int64)
        fed = dict(zip(batch.ids.tolist(), batch.q.tolist(), strict=True))
        q = np.array([fed[r] for r in sampled.tolist()], dtype=np.int64)
        decode = (t.computed[sampled] - q >= t.prompt[sampled]) & (q == 1)
        if not decode.any():
            return counts
        ids = sampled[decode]
        drawn = self.decoding.tokens(int(ids.size))
        drawn = np.minimum(drawn, t.output[ids] - t.generated[ids])
        for j, rid in enumerate(ids.tolist()):
            # Each accepted draft needs its KV slot; accept fewer when no block is free.
            while drawn[j] > 1 and not self.kv.grow(np.array([rid]),
                                                    np.array([t.computed[rid] + drawn[j] - 1])):
                drawn[j] -= 1
        counts[decode] = drawn
        self.decoding.record(int(ids.size), int(drawn.sum()))
        return counts

    bytes_per_block: float = 0.0
    """KV bytes of one block on one chip (set by the caller; swap traffic)."""

    def leave(self, rid: int) -> None:
        """``rid`` moves to another server (disaggregated serving): free its blocks here."""
        self.running.remove(rid)
        self.kv.release([rid])

    # Completing an iteration -----------------------------------------------------------
    def complete(self, batch: Batch, end_s: float) -> np.ndarray:
        """Account for ``batch`` having run until ``end_s``; return the ids that sampled."""
        t = self.table
        ids = batch.ids
        t.computed[ids] += batch.q
        if self.config.policy == "static":
            live = t.finish_s[ids] < 0
            ids_live = ids[live]
        else:
            ids_live = ids
        sampled = ids_live[t.computed[ids_live] == t.known(ids_live)]
        counts = self._step_tokens(batch, sampled) if self.decoding is not None else None
        finished = t.sample(sampled, end_s, counts)
        if counts is not None:
            # The accepted drafts' KV was written by the verify pass.
            t.computed[sampled] += counts - 1
        if self.config.prefix_caching:
            self._register_prefixes(ids_live)
        if self.config.policy == "static":
            if (t.finish_s[np.asarray(self.static_members)] >= 0).all():
                self.kv.release(self.static_members)
                for rid in self.static_members:
                    self.running.remove(rid)
                self.static_members = []
        elif finished.size:
            self.kv.release(finished)
            done = set(finished.tolist())
            self.running = [r for r in self.running if r not in done]
            for rid in finished.tolist():
                if t.prefix_id[rid] >= 0 and t.prefix_hits[rid]:
                    self.kv.drop_prefix_user(int(t.prefix_id[rid]))
        return sampled

    def _register_prefixes(self, ids: np.ndarray) -> None:
        """A request whose prefill passed its shared prefix makes that prefix cached."""
        t, kv = self.table, self.kv
        for rid in ids.tolist():
            pid = int(t.prefix_id[rid])
            if pid < 0 or kv.prefix_blocks(pid) or t.computed[rid] < t.prefix_len[rid]:
                continue
            blocks = int(t.prefix_len[rid]) // kv.block_tokens
            if blocks and kv.held[rid] >= blocks:
                kv.held[rid] -= blocks  # the prefix's full blocks move to the shared pool
                kv.used -= blocks
                if kv.add_prefix(pid, blocks):
                    t.prefix_hits[rid] = blocks * kv.block_tokens
                else:
                    kv.held[rid] += blocks
                    kv.used += blocks
