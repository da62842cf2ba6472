"""Pure cost functions: (operator, chip) -> :class:`OpCost`. No SimPy, no I/O, no state."""

from __future__ import annotations

from dataclasses import replace

from hwsim.arch.model import Chip
from hwsim.arch.system import System
from hwsim.cost.approx_algorithms import algorithm_attention_cost
from hwsim.cost.approx_attention import approx_attention_cost
from hwsim.cost.area import AreaBreakdown, ChipTechnology, chip_area, chip_technology
from hwsim.cost.attention import attention_cost
from hwsim.cost.collective import collective_cost
from hwsim.cost.die_cost import (
    chip_cost_usd,
    cost_per_million_tokens_usd,
    die_cost_usd,
    die_yield,
    dies_per_wafer,
)
from hwsim.cost.embedding import embedding_bag_cost
from hwsim.cost.host import host_cost
from hwsim.cost.matmul import matmul_cost
from hwsim.cost.model import LevelTraffic, OpCost, check_cost, make_cost, streaming_traffic
from hwsim.cost.ssm import conv1d_cost, scan_cost
from hwsim.cost.technology import Technology
from hwsim.cost.vector import elementwise_cost, embedding_cost, fake_quant_cost, optimizer_cost
from hwsim.errors import SimulationError
from hwsim.workload.ops import Attention, Collective, Elementwise, Embedding, MatMul, Op, Optimizer, op_label
from hwsim.workload.ops_embedding import EmbeddingBag
from hwsim.workload.ops_qat import FakeQuant
from hwsim.workload.ops_ssm import CausalConv1d, SelectiveScan


def cost_op(op: Op, chip: Chip, *, fewest_kernels: bool = False) -> OpCost:
    """Cost of ``op`` running alone on ``chip``; with ``fewest_kernels``, of its best mapping
    among those launching the fewest kernels (a GEMM without split-K), which an eager pass
    may prefer: there the host pays ``chip.host_dispatch_s`` for every kernel.

    Raises
    ------
    MappingError
        If the chip cannot run the op (e.g. an unsupported dtype).
    SimulationError
        If its cost is not finite and non-negative (the message names the op and values).
    """
    # Checked here, once per op (the engine memoises it), not per candidate mapping.
    try:
        return check_cost(_cost_op(op, chip, fewest_kernels))
    except SimulationError as exc:
        raise SimulationError(f"{chip.name}: {op_label(op)} {op}: {exc}") from None


def _cost_op(op: Op, chip: Chip, fewest_kernels: bool) -> OpCost:
    if isinstance(op, MatMul):
        return matmul_cost(chip, op, fewest_kernels)
    if isinstance(op, Attention):
        if op.algorithm is not None:
            return algorithm_attention_cost(chip, op)
        return attention_cost(chip, op) if op.approx is None else approx_attention_cost(chip, op)
    if isinstance(op, Elementwise):
        return elementwise_cost(chip, op)
    if isinstance(op, Embedding):
        return embedding_cost(chip, op)
    if isinstance(op, Optimizer):
        return optimizer_cost(chip, op)
    if isinstance(op, FakeQuant):
        return fake_quant_cost(chip, op)
    if isinstance(op, SelectiveScan):
        return scan_cost(chip, op)
    if isinstance(op, CausalConv1d):
        return conv1d_cost(chip, op)
    if isinstance(op, EmbeddingBag):  # the chip alone; a system adds its host tier (api.CostCache)
        return embedding_bag_cost(chip, op)
    raise TypeError(f"no cost model for {type(op).__name__}")


def collective_op_cost(system: System, op: Collective, stride: int = 1) -> OpCost:
    """One chip's view of a collective: its network time (as the busy time), its own
    buffer read and written at every level, and its share of the link energy."""
    chip = system.chip
    net = host_cost(system, op) if op.group == "host" else collective_cost(system, op, stride)
    # A host read only lands in the chip's memory; a host write only leaves it.
    read_b = 0.0 if op.op_kind in ("host_read", "host_update") else op.n_bytes
    write_b = 0.0 if op.op_kind in ("host_write", "host_update") else op.n_bytes
    try:
        cost = make_cost(chip, flops=op.flops, compute_cycles=0.0, compute_s=net.latency_s,
                         traffic=streaming_traffic(chip, read_b, write_b),
                         n_kernels=0 if op.op_kind == "host_update" else 1,  # the host CPU's work
                         compute_energy_j=0.0, detail=f"{net.algorithm} over {net.fabric}")
        return check_cost(replace(cost, link_energy_j=net.energy_j / max(1, op.group_size)))
    except SimulationError as exc:
        raise SimulationError(f"{system.name}: {op_label(op)} {op}: {exc}") from None


__all__ = [
    "AreaBreakdown",
    "ChipTechnology",
    "LevelTraffic",
    "OpCost",
    "chip_area",
    "chip_cost_usd",
    "chip_technology",
    "collective_op_cost",
    "cost_op",
    "cost_per_million_tokens_usd",
    "die_cost_usd",
    "die_yield",
    "dies_per_wafer",
    "Technology",
]
