"""The serving loop: arrivals, a router, and one scheduling loop per replica, as SimPy
processes over an environment the caller owns.

- :func:`arrivals` releases each request at its arrival time to the replica the
  :class:`Router` picks (round robin, least outstanding requests, least KV load).
- :class:`ReplicaServer` runs one replica: at every iteration boundary its
  :class:`~hwsim.engine.serve.scheduler.Scheduler` composes a batch, the replica's
  stages run it (:mod:`hwsim.engine.replica`), and the scheduler appends the tokens.
  With ``pp > 1`` the next batch is composed as soon as the first stage is free, from
  requests not in flight, so up to ``pp`` batches overlap.
- Disaggregated serving: a server with ``handoff`` is a prefill pool member; a request
  whose prompt is done leaves it, its KV crosses the fabric (a transfer holding the
  pool link) and a decode server takes it with that KV in place.

Every iteration is logged as a plain tuple (:data:`IterationLog`); frames are built once
at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any, Literal

import numpy as np
import simpy

from hwsim.engine.replica import Replica
from hwsim.engine.serve.scheduler import Batch, Scheduler
from hwsim.engine.serve.table import RequestTable
from hwsim.errors import HwsimError

IterationLog = tuple[int, float, float, int, int, int, int, int, int, float]
"""``(server, start_s, end_s, prefill_tokens, decode_tokens, batch_size, queue_len,
kv_blocks_used, kv_blocks_total, energy_j)`` of one iteration."""

RoutePolicy = Literal["round_robin", "least_outstanding", "least_kv"]
ROUTE_POLICIES: tuple[str, ...] = ("round_robin", "least_outstanding", "least_kv")


class ServeError(HwsimError):
    """A serving run that cannot make progress (a request no scheduler can ever admit)."""


class ReplicaServer:
    """One replica and its scheduler, as a loop process.

    Parameters
    ----------
    env : simpy.Environment
    index : int
        The server's number (logs, per-request ``replica`` column).
    replica : Replica
    scheduler : Scheduler
    table : RequestTable
        Shared by every server of the run.
    log : list
        Where iterations are appended (shared).
    host_overhead_s : float
        Host time per iteration (scheduling, sampling bookkeeping) before the batch runs.
    swap_bytes_per_s : float
        Host-link bandwidth per chip for KV swapping (``preemption="swap"``), in B/s.
    handoff : callable, optional
        Prefill pool: called with a request id whose prompt is done (and that still has
        tokens to generate); the request leaves this server.
    """

    def __init__(self, env: simpy.Environment, index: int, replica: Replica, scheduler: Scheduler,
                 table: RequestTable, log: list[IterationLog], host_overhead_s: float = 0.0,
                 swap_bytes_per_s: float = 0.0, handoff: Callable[[int], None] | None = None) -> None:
        self.env, self.index, self.replica, self.scheduler = env, index, replica, scheduler
        self.table, self.log, self.host_overhead_s = table, log, host_overhead_s
        self.swap_bytes_per_s, self.handoff = swap_bytes_per_s, handoff
        self.host_link = simpy.Resource(env, capacity=1)
        self.outstanding = 0
        self.closed = False  # no more arrivals will come
        self._wake: simpy.Event = env.event()
        self._batches = 0  # pipelined: batches in flight
        self.decoding: Any = None  # a ServeDecoding: the strategy's rows and side work

    def add(self, rid: int) -> None:
        """A request routed here (or handed over with its KV in place)."""
        self.table.replica[rid] = self.index
        self.scheduler.add(rid)
        self.outstanding += 1
        self.wake()

    def wake(self) -> None:
        if not self._wake.triggered:
            self._wake.succeed()

    def kv_load(self) -> float:
        kv = self.scheduler.kv
        return kv.used / kv.n_blocks if kv.n_blocks else 0.0

    def loop(self) -> Generator[Any, Any, None]:
        """Process: compose and run iterations until no work is left and none will come."""
        env, sched = self.env, self.scheduler
        pipelined = self.replica.model.n_stages > 1
        while True:
            self.table.now_s = env.now
            batch = sched.compose()
            if batch is None:
                if not sched.has_work() and self.closed:
                    return
                if not sched.running and not sched.in_flight and sched.n_waiting:
                    raise ServeError(self._stuck())
                self._wake = env.event()
                yield self._wake
                continue
            if self.host_overhead_s > 0:
                yield env.timeout(self.host_overhead_s)
            if sched.swap_bytes > 0:
                yield from self._swap(sched.swap_bytes)
                sched.swap_bytes = 0.0
            sched.in_flight.update(batch.ids.tolist())
            if pipelined:
                free = env.event()
                self._batches += 1
                env.process(self._run(batch, free))
                yield free
                # At most one batch per stage in flight (vLLM's virtual engines).
                while self._batches >= self.replica.model.n_stages:
                    self._wake = env.event()
                    yield self._wake
            else:
                yield env.process(self._run(batch, None))

    def _run(self, batch: Batch, free: simpy.Event | None) -> Generator[Any, Any, None]:
        env, sched, t = self.env, self.scheduler, self.table
        before = t.computed[batch.ids].copy()
        queue_len = sched.n_waiting
        q, k, n_logits, side_j = batch.q, batch.k, batch.n_logits, 0.0
        if self.decoding is not None:
            # The strategy's rows and side work (draft passes run before the verify).
            decode = before >= t.prompt[batch.ids]
            q, k, n_logits, side_s, side_j = self.decoding.iteration(q, k, n_logits, decode)
            if side_s > 0:
                yield env.timeout(side_s)
        run = yield env.process(self.replica.run(q, k, n_logits, free))
        sched.in_flight.difference_update(batch.ids.tolist())
        if free is not None:
            self._batches -= 1
        in_decode = before >= t.prompt[batch.ids]
        decode_tokens = int(batch.q[in_decode].sum())
        self.table.now_s = env.now
        sampled = sched.complete(batch, run.end_s)
        self.log.append((self.index, run.start_s, run.end_s, batch.n_tokens - decode_tokens, decode_tokens,
                         int(batch.ids.size), queue_len, sched.kv.used, sched.kv.n_blocks,
                         run.dynamic_j + side_j))
        finished = sampled[t.finish_s[sampled] >= 0]
        self.outstanding -= int(finished.size)
        if self.handoff is not None:
            for rid in sampled[t.finish_s[sampled] < 0].tolist():
                sched.leave(rid)
                self.outstanding -= 1
                self.handoff(rid)
        self.wake()

    def _swap(self, n_bytes: float) -> Generator[Any, Any, None]:
        """Move ``n_bytes`` of KV per chip over the host link (each chip its own shard)."""
        if self.swap_bytes_per_s <= 0:
            raise ServeError(f"replica {self.index}: preemption by swap needs a host link "
                             "(the system has no host memory); use preemption='recompute'")
        with self.host_link.request() as req:
            yield req
            yield self.env.timeout(n_bytes / self.swap_bytes_per_s)

    def _stuck(self) -> str:
        t, kv = self.table, self.scheduler.kv
        rid = (self.scheduler.swapped or self.scheduler.waiting)[0]
        need = -(-int(t.known(rid)) // kv.block_tokens)
        return (f"replica {self.index}: request {rid} ({t.prompt[rid]} prompt + {t.output[rid]} output "
                f"tokens) cannot be scheduled: it needs {need} KV blocks of {kv.block_tokens} tokens; "
                f"the cache holds {kv.n_blocks} ({kv.watermark_blocks} kept free) and nothing else "
                "is running to free any")


class Router:
    """Picks a server for each new request."""

    def __init__(self, servers: Sequence[ReplicaServer], policy: RoutePolicy = "round_robin") -> None:
        if policy not in ROUTE_POLICIES:
            raise ValueError(f"unknown routing policy {policy!r}")
        self.servers, self.policy = list(servers), policy
        self._next = 0

    def pick(self) -> ReplicaServer:
        if self.policy == "round_robin" or len(self.servers) == 1:
            server = self.servers[self._next % len(self.servers)]
            self._next += 1
            return server
        if self.policy == "least_outstanding":
            return min(self.servers, key=lambda s: (s.outstanding, s.index))
        return min(self.servers, key=lambda s: (s.kv_load(), s.outstanding, s.index))

    def close(self) -> None:
        for server in self.servers:
            server.closed = True
            server.wake()


def arrivals(env: simpy.Environment, arrival_s: np.ndarray, router: Router) -> Generator[Any, Any, None]:
    """Process: release request ``i`` at ``arrival_s[i]`` (non-decreasing) to a server;
    close the router's servers once every request has arrived."""
    for rid, t in enumerate(arrival_s.tolist()):
        if t > env.now:
            yield env.timeout(t - env.now)
        router.pick().add(rid)
    router.close()


class KVTransfer:
    """Disaggregated serving: moves a request's KV from the prefill pool to the decode
    pool over a link both pools share, then routes it to a decode server.

    Parameters
    ----------
    env : simpy.Environment
    decode : Router
        The decode pool.
    bytes_of : callable
        KV bytes of a request id (what crosses the link), in B.
    bytes_per_s : float
        Bandwidth between the pools for one request's transfer, in B/s.
    latency_s : float
        Fixed time per transfer, in s.
    n_links : int
        Transfers that can proceed at once.
    """

    def __init__(self, env: simpy.Environment, decode: Router, bytes_of: Callable[[int], float],
                 bytes_per_s: float, latency_s: float = 0.0, n_links: int = 1) -> None:
        self.env, self.decode, self.bytes_of = env, decode, bytes_of
        self.bytes_per_s, self.latency_s = bytes_per_s, latency_s
        self.link = simpy.Resource(env, capacity=n_links)
        self.pending = 0
        self.prefill_done = False
        self.moved_bytes = 0.0

    def __call__(self, rid: int) -> None:
        self.pending += 1
        self.env.process(self._move(rid))

    def _move(self, rid: int) -> Generator[Any, Any, None]:
        with self.link.request() as req:
            yield req
            n_bytes = self.bytes_of(rid)
            self.moved_bytes += n_bytes
            yield self.env.timeout(self.latency_s + n_bytes / self.bytes_per_s)
        self.decode.pick().add(rid)
        self.pending -= 1
        if self.prefill_done and self.pending == 0:
            self.decode.close()

    def prefill_closed(self) -> None:
        """The prefill pool will hand over nothing more once its transfers land."""
        self.prefill_done = True
        if self.pending == 0:
            self.decode.close()


def drain(env: simpy.Environment, loops: Sequence[simpy.Process],
          then: Callable[[], None]) -> Generator[Any, Any, None]:
    """Process: call ``then`` once every loop in ``loops`` has returned."""
    yield simpy.AllOf(env, list(loops))
    then()
