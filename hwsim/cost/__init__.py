"""Pure cost functions: (operator, chip) -> :class:`OpCost`. No SimPy, no I/O, no state."""

from __future__ import annotations

from hwsim.arch.model import Chip
from hwsim.cost.attention import attention_cost
from hwsim.cost.matmul import matmul_cost
from hwsim.cost.model import LevelTraffic, OpCost
from hwsim.cost.vector import elementwise_cost, embedding_cost, optimizer_cost
from hwsim.workload.ops import Attention, Elementwise, Embedding, MatMul, Op, Optimizer


def cost_op(op: Op, chip: Chip) -> OpCost:
    """Cost of ``op`` running alone on ``chip``.

    Raises
    ------
    MappingError
        If the chip cannot run the op (e.g. an unsupported dtype).
    """
    if isinstance(op, MatMul):
        return matmul_cost(chip, op)
    if isinstance(op, Attention):
        return attention_cost(chip, op)
    if isinstance(op, Elementwise):
        return elementwise_cost(chip, op)
    if isinstance(op, Embedding):
        return embedding_cost(chip, op)
    if isinstance(op, Optimizer):
        return optimizer_cost(chip, op)
    raise TypeError(f"no cost model for {type(op).__name__}")


__all__ = ["LevelTraffic", "OpCost", "cost_op"]
