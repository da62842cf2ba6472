"""Memory outside the chips, and the host CPU that may compute on it.

- :class:`ExternalMemory`: host DRAM over PCIe, a weight-streaming appliance, and the
  extra tiers a :class:`~hwsim.arch.system.System` may name (``tiers: {nvme: ..., cxl:
  ...}``): NVMe/SSD arrays (ZeRO-Infinity, FlexGen) and CXL memory expanders. Each is
  what *one chip* sees: its share of the capacity and the bandwidth of its path to the
  tier, one direction (an NVMe array of 8 drives over 8 GPUs gives each GPU one drive's
  bandwidth), a latency per transfer and an energy per byte moved (both ends).
- :class:`HostCpu`: a CPU preset (``xeon-8480``, ``epyc-9654``, ``grace``) beside the
  accelerators, with the share of its sockets each accelerator's offloaded work may use;
  ZeRO-Offload's CPU Adam runs on it (:func:`hwsim.cost.collective.host_update_cost`).

Tier names in a plan's placement: ``device`` (alias ``hbm``) for the chip's own memory,
``host`` for :attr:`System.host`, ``external_memory`` for the weight-streaming appliance,
and the keys of :attr:`System.tiers`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from hwsim.arch.model import Chip, _Frozen
from hwsim.quantities import BandwidthBytesPerS, CapacityBytes, EnergyPj, LatencyS, real_in

#: Names a system's ``tiers`` may not use: they name the chip's memory and the fixed tiers.
RESERVED_TIERS = frozenset({"device", "hbm", "host", "external_memory"})

SocketShare = Annotated[float, real_in(1e-6, 1024.0, "sockets", positive=True)]


class ExternalMemory(_Frozen):
    """Memory outside the chips (host DRAM over PCIe, a weight-streaming appliance, an
    NVMe array, a CXL expander), as one chip sees it."""

    capacity_bytes: CapacityBytes = Field(description="bytes each chip may use")
    bandwidth_bytes_per_s: BandwidthBytesPerS = Field(description="per chip, per direction (reads)")
    write_bandwidth_bytes_per_s: BandwidthBytesPerS | None = Field(
        default=None, description="per chip, writes into the tier if slower than reads (NVMe); None: same")
    latency_s: LatencyS = 0.0
    energy_pj_per_byte: EnergyPj = Field(default=0.0, description="one byte moved, both ends")
    access_granularity_bytes: CapacityBytes = Field(
        default=64.0,
        description="smallest unit a random read moves (a gathered embedding row is rounded "
        "up to it): 64 B, one DDR burst and CPU cache line (see MemoryLevel)",
    )

    def transfer_time_s(self, n_bytes: float, write: bool = False) -> float:
        """One transfer of ``n_bytes`` to (``write``) or from the tier, in s."""
        bandwidth = self.write_bandwidth_bytes_per_s if write and self.write_bandwidth_bytes_per_s else (
            self.bandwidth_bytes_per_s)
        return self.latency_s + n_bytes / bandwidth


class HostCpu(_Frozen):
    """The host CPU beside the accelerators: a CPU chip preset and the sockets' share each
    accelerator may use (DGX H100: 2 sockets for 8 GPUs, 0.25 each)."""

    chip: Chip = Field(description="a CPU preset (by name in YAML: xeon-8480, epyc-9654, grace)")
    sockets_per_chip: SocketShare = Field(
        default=1.0, description="CPU sockets' worth of compute and memory bandwidth per accelerator")
