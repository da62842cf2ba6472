"""Memoised op costs shared across simulations and serving runs of the same chips."""

from __future__ import annotations

from hwsim.arch.model import Chip
from hwsim.arch.system import System, single_chip_system
from hwsim.cost import OpCost, collective_op_cost, cost_op
from hwsim.cost.embedding import embedding_bag_cost
from hwsim.cost.model import check_cost
from hwsim.workload.ops import Collective, Op
from hwsim.workload.ops_embedding import EmbeddingBag
from hwsim.workload.plan import Plan


class CostCache:
    """Memoised op costs for one chip (and, for collectives, one system and plan);
    share it across simulations of the same chip."""

    def __init__(self, chip: Chip, system: System | None = None, plan: Plan | None = None,
                 chip_costs: dict[tuple[Op, bool], OpCost] | None = None) -> None:
        self.chip = chip
        self.system = system
        self.plan = plan
        # Costs of ops other than collectives depend on the chip alone: ``chip_costs``,
        # keyed by (op, fewest_kernels), may be shared by caches of the same chip under
        # different plans.
        self._chip_costs: dict[tuple[Op, bool], OpCost] = {} if chip_costs is None else chip_costs
        self._net_costs: dict[Op, OpCost] = {}

    def __call__(self, op: Op, fewest_kernels: bool = False) -> OpCost:
        if isinstance(op, Collective):
            cost = self._net_costs.get(op)
            if cost is None:
                system = self.system or single_chip_system(self.chip)
                stride = (self.plan or Plan()).strides.get(op.group, 1)
                cost = self._net_costs[op] = collective_op_cost(system, op, stride)
            return cost
        if isinstance(op, EmbeddingBag) and self.system is not None and self.system.host is not None:
            # Embedding tables may spill to the system's host memory: a system cost.
            cost = self._net_costs.get(op)
            if cost is None:
                cost = self._net_costs[op] = check_cost(embedding_bag_cost(self.chip, op, self.system.host))
            return cost
        key = (op, fewest_kernels)
        cost = self._chip_costs.get(key)
        if cost is None:
            cost = self._chip_costs[key] = cost_op(op, self.chip, fewest_kernels=fewest_kernels)
        return cost

    def __len__(self) -> int:
        return len(self._chip_costs) + len(self._net_costs)


class ServeCache:
    """One :class:`CostCache` per (system, replica plan) of serving runs: pass one to
    several :func:`serve` calls on the same systems to cost each op once. Op costs depend
    on the op (its shapes and dtype), the chip and, for collectives, the system and plan,
    so sharing never changes a result."""

    def __init__(self) -> None:
        # Systems are unhashable (they hold mappings): entries are found by plan, then by
        # the system's identity or, for a system loaded again by name, its equality.
        self._caches: dict[Plan, list[tuple[System, CostCache]]] = {}

    def __call__(self, system: System, plan: Plan) -> CostCache:
        entries = self._caches.setdefault(plan, [])
        for known, cache in entries:
            if known is system:
                return cache
        for known, cache in entries:
            if known == system:
                return cache
        cache = CostCache(system.chip, system, plan)
        entries.append((system, cache))
        return cache

    def __len__(self) -> int:
        return sum(len(v) for v in self._caches.values())
