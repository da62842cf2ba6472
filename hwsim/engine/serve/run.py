"""A whole serving run: pools of replicas, their KV caches, the loops, one environment.

:func:`kv_capacity` turns a replica's memory into KV blocks (vLLM's rule: memory times
``memory_fraction``, less weights, peak activations and workspace, divided by the bytes
one block takes on the busiest chip). :func:`run_serving` builds every replica server
of every pool on one environment, releases the requests, runs to the last completion
and returns the raw state (:class:`ServeRun`); :mod:`hwsim.engine.serve.result` turns
it into frames and metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import simpy

from hwsim.arch.system import System
from hwsim.dtypes import dtype_bytes
from hwsim.engine.inference import stage_send_s
from hwsim.engine.iteration import ReplicaModel
from hwsim.engine.replica import Replica
from hwsim.engine.serve.decoding import ServeDecoding, make_kv
from hwsim.engine.serve.kv import KVBlocks, KVLayout
from hwsim.engine.serve.loop import IterationLog, KVTransfer, ReplicaServer, Router, arrivals, drain
from hwsim.engine.serve.scheduler import Scheduler, SchedulerConfig
from hwsim.engine.serve.table import RequestTable
from hwsim.workload.layers import kv_bytes_per_token, layer_state_bytes, stage_bounds
from hwsim.workload.memory import memory_per_chip, workspace_allowance_bytes

Role = Literal["both", "prefill", "decode"]


@dataclass(frozen=True)
class KVCapacity:
    """A replica's KV cache: blocks, and how the chip's memory was shared out (bytes per chip)."""

    n_blocks: int
    block_bytes: float
    memory_bytes: float
    usable_bytes: float
    weights_bytes: float
    activations_bytes: float
    workspace_bytes: float
    layout: KVLayout

    @property
    def kv_bytes(self) -> float:
        return self.n_blocks * self.block_bytes


def kv_layout(model: ReplicaModel, block_tokens: int) -> KVLayout:
    """How a request's KV grows on the replica's busiest chip: the stage whose layers
    hold the most per token (then per request), its full-attention (MLA: latent) layers
    apart from its sliding-window ones, and its state-space layers' fixed state."""
    spec, plan = model.spec, model.plan
    width = dtype_bytes(model.kv_dtype)
    best: KVLayout | None = None
    for first, end in stage_bounds(spec.num_hidden_layers, plan.pp):
        growing = state = 0.0
        windows: dict[int, float] = {}
        for i in range(first, end):
            layer = spec.layer(i)
            state += layer_state_bytes(layer, plan.tp, width)
            per_token = kv_bytes_per_token(layer, plan.tp, width)
            window = layer.mixer.window
            if window is None:
                growing += per_token
            else:
                windows[window] = windows.get(window, 0.0) + per_token
        layout = KVLayout(block_tokens, growing, tuple(sorted(windows.items())), state)
        if best is None or _layout_size(layout) > _layout_size(best):
            best = layout
    assert best is not None
    return best


def _layout_size(layout: KVLayout) -> tuple[float, float]:
    """What ranks the stages' layouts: bytes per token, then per request."""
    return layout.growing_bytes_per_token + sum(b for _, b in layout.windows), layout.state_bytes


def kv_capacity(model: ReplicaModel, memory_fraction: float, block_tokens: int,
                max_batched_tokens: int) -> KVCapacity:
    """KV blocks of one replica: ``memory_fraction`` of the home memory, less weights,
    the activations of an iteration of ``max_batched_tokens`` tokens and the workspace."""
    chip = model.chip
    memory = chip.level_capacity_bytes(chip.home_level)
    usage = memory_per_chip(model.spec, "prefill", model.plan, batch=1, prompt_len=max_batched_tokens,
                            dtype=model.dtype, attention_impl=model.attention_impl, precision=model.precision,
                            workspace_bytes=workspace_allowance_bytes(memory))
    usable = memory * memory_fraction
    left = usable - usage.weights_bytes - usage.activations_bytes - usage.workspace_bytes
    layout = kv_layout(model, block_tokens)
    block = layout.block_bytes
    n_blocks = max(0, math.floor(left / block)) if block > 0 else 0
    return KVCapacity(n_blocks, block, memory, usable, usage.weights_bytes, usage.activations_bytes,
                      usage.workspace_bytes, layout)


@dataclass(frozen=True)
class Pool:
    """``replicas`` identical replicas of ``model`` on ``system``'s chips, serving ``role``."""

    system: System
    model: ReplicaModel
    replicas: int
    role: Role
    kv: KVCapacity
    decoding: Any = None  # a DecodingModel when the run's strategy is not plain greedy

    @property
    def n_chips(self) -> int:
        return self.replicas * self.model.plan.tp * self.model.plan.pp


@dataclass
class ServeRun:
    """What a serving run leaves: the request table, the iteration log and the pools."""

    table: RequestTable
    log: list[IterationLog]
    pools: tuple[Pool, ...]
    end_s: float
    transferred_bytes: float = 0.0
    servers: list[ReplicaServer] = field(default_factory=list)


def _servers(env: simpy.Environment, pool: Pool, first_index: int, table: RequestTable,
             log: list[IterationLog], config: SchedulerConfig, host_overhead_s: float) -> list[ReplicaServer]:
    model = pool.model
    send = stage_send_s(pool.system, model) if model.plan.pp > 1 else None
    host = pool.system.host
    swap_bw = host.bandwidth_bytes_per_s if host is not None else 0.0
    out = []
    for i in range(pool.replicas):
        replica = Replica(env, model, send, name=f"{pool.role}{i}")
        kv = KVBlocks(pool.kv.n_blocks, config.block_tokens, table.n,
                      watermark_blocks=math.floor(config.watermark * pool.kv.n_blocks), layout=pool.kv.layout)
        kv = make_kv(kv, pool.decoding, table.prompt)
        scheduler = Scheduler(config, table, kv)
        scheduler.bytes_per_block = pool.kv.block_bytes
        server = ReplicaServer(env, first_index + i, replica, scheduler, table, log, host_overhead_s, swap_bw)
        if pool.decoding is not None:
            server.decoding = scheduler.decoding = ServeDecoding(pool.decoding)
        out.append(server)
    return out


def run_serving(table: RequestTable, pools: Sequence[Pool], config: SchedulerConfig,
                route: str = "round_robin", host_overhead_s: float = 0.0,
                transfer_bytes_per_s: float = 0.0, transfer_latency_s: float = 0.0) -> ServeRun:
    """Serve every request of ``table`` on ``pools`` (one pool of role ``both``, or a
    ``prefill`` and a ``decode`` pool joined by a link of ``transfer_bytes_per_s``)."""
    env = simpy.Environment()
    log: list[IterationLog] = []
    servers: list[ReplicaServer] = []
    by_role: dict[str, list[ReplicaServer]] = {}
    for pool in pools:
        made = _servers(env, pool, len(servers), table, log, config, host_overhead_s)
        servers += made
        by_role[pool.role] = made
    transfer = None
    if "prefill" in by_role:
        decode_pool = next(p for p in pools if p.role == "decode")
        plan = decode_pool.model.plan
        block_bytes = decode_pool.kv.block_bytes * plan.tp * plan.pp  # every chip of the replica
        layout = decode_pool.kv.layout
        transfer = KVTransfer(env, Router(by_role["decode"], route),  # type: ignore[arg-type]
                              lambda rid: float(layout.blocks(int(table.computed[rid]))) * block_bytes,
                              transfer_bytes_per_s, transfer_latency_s)
        for server in by_role["prefill"]:
            server.handoff = transfer
        entry = Router(by_role["prefill"], route)  # type: ignore[arg-type]
        prefill_loops = [env.process(s.loop()) for s in by_role["prefill"]]
        env.process(drain(env, prefill_loops, transfer.prefill_closed))
        for s in by_role["decode"]:
            env.process(s.loop())
    else:
        entry = Router(servers, route)  # type: ignore[arg-type]
        for s in servers:
            env.process(s.loop())
    env.process(arrivals(env, table.arrival_s, entry))
    env.run()
    moved = transfer.moved_bytes if transfer is not None else 0.0
    return ServeRun(table, log, tuple(pools), env.now, moved, servers)
