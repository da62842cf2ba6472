"""Costs on the far side of a chip's host link: transfers to and from a memory tier
(host DRAM, a weight-streaming appliance, NVMe, CXL) and the host CPU's optimizer step.

- A transfer of ``S`` bytes to or from tier ``t`` takes ``t.latency_s + S /
  t.bandwidth_bytes_per_s`` (writes at ``write_bandwidth_bytes_per_s`` where given) and
  ``S * t.energy_pj_per_byte`` (the tier's figures are one
  chip's share of its path, :class:`hwsim.arch.tiers.ExternalMemory`). A transfer that
  names no tier goes to the system's external memory, else its host (weight streaming and
  ``Plan.offload`` as before tiers existed).
- ``host_update`` (ZeRO-Offload's CPU Adam, Ren et al. 2021): the fused AdamW of the
  ``n_bytes / dtype`` parameters whose gradients the host received, costed on the host
  CPU preset exactly as on any chip (:func:`hwsim.cost.vector.optimizer_cost`: the larger
  of ``12 n`` FLOP over the vector units' peak and each memory level's traffic over its
  bandwidth), divided by the sockets' share each accelerator has. Its energy (the CPU's
  dynamic energy for that work) is reported with the link energy. A system without a
  ``host_cpu`` does not time the update (the result warns: the update is taken as
  overlapped with the next step, ZeRO-Offload's delayed parameter update).
"""

from __future__ import annotations

from hwsim.arch.system import System
from hwsim.cost.collective import CollectiveCost
from hwsim.dtypes import dtype_bytes
from hwsim.workload.ops import Collective, Optimizer


def host_cost(system: System, op: Collective) -> CollectiveCost:
    """Cost of a host transfer or of the host CPU's update (module docstring).

    Raises
    ------
    ValueError
        If the system lacks the tier the op names, or has neither host nor external memory.
    """
    if op.op_kind == "host_update":
        return host_update_cost(system, op)
    return host_transfer_cost(system, op)


def host_transfer_cost(system: System, op: Collective) -> CollectiveCost:
    """Cost of moving ``op.n_bytes`` between one chip and the memory tier ``op.tier``
    (default: the external memory, else the host).

    Raises
    ------
    ValueError
        If the system has no such tier.
    """
    if op.tier:
        memory, name = system.tier(op.tier), op.tier
        if memory is None:
            raise ValueError(f"{system.name}: {op.op_kind} of {op.n_bytes:.3g} B to tier {op.tier!r}: the "
                             f"system has no such tier (has: {', '.join(system.tier_names) or 'none'})")
    else:
        memory, name = (system.external_memory, "external_memory") if system.external_memory else (
            system.host, "host")
        if memory is None:
            raise ValueError(f"{system.name}: {op.op_kind} of {op.n_bytes:.3g} B needs host or external "
                             "memory; the system has neither (plan offload needs one)")
    time_s = memory.transfer_time_s(op.n_bytes, write=op.op_kind == "host_write")
    energy_j = op.n_bytes * memory.energy_pj_per_byte * 1e-12
    return CollectiveCost(time_s, op.n_bytes, energy_j, "dma", name)


def cpu_adam_time_s(system: System, n_params: float, dtype: str = "bf16") -> tuple[float, float]:
    """(time in s, energy in J) of the host CPU's AdamW over ``n_params`` parameters for
    one accelerator; (0, 0) without a ``host_cpu``."""
    cpu = system.host_cpu
    if cpu is None or n_params <= 0:
        return 0.0, 0.0
    from hwsim.cost.vector import optimizer_cost  # vector.py imports the cost model's leaves

    cost = optimizer_cost(cpu.chip, Optimizer(max(1, round(n_params)), dtype, dtype))
    return cost.latency_s / cpu.sockets_per_chip, cost.compute_energy_j + sum(cost.level_energy_j)


def host_update_cost(system: System, op: Collective) -> CollectiveCost:
    """The host CPU's optimizer step on the parameters whose ``op.n_bytes`` of gradients
    it holds (module docstring)."""
    time_s, energy_j = cpu_adam_time_s(system, op.n_bytes / dtype_bytes(op.dtype), op.dtype)
    return CollectiveCost(time_s, 0.0, energy_j, "cpu_adam" if system.host_cpu else "untimed",
                          system.host_cpu.chip.name if system.host_cpu else "no host_cpu")
