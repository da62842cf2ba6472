"""Interconnect fabrics: links, topologies and where a parallel group sits on them.

A :class:`Fabric` is one level of a system's interconnect (NVSwitch inside a node, a
torus of TPU chips); ``_placement`` says, for a group of chips at a rank
stride, how many distinct positions it takes along each nested level
(:meth:`hwsim.arch.system.System.group_levels`). Bandwidths are per direction.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from hwsim.arch.model import _Frozen
from hwsim.quantities import BandwidthBytesPerS, EnergyPj, Flag, Fraction, LatencyS, SmallCount

Topology = Literal["ring", "switch", "full_mesh", "torus_2d", "torus_3d", "mesh_2d"]

#: Most chips a system may join: 1e9, some 10,000 times the largest cluster built.
MAX_CHIPS = 10**9
_N_DIMS = {"ring": 1, "switch": 1, "full_mesh": 1, "torus_2d": 2, "torus_3d": 3, "mesh_2d": 2}
#: Topologies where every chip reaches every other in one hop (placement does not matter).
_ONE_HOP = frozenset({"switch", "full_mesh"})
_WRAPS = frozenset({"ring", "torus_2d", "torus_3d"})


class Link(_Frozen):
    """One physical link (or lane group) between two neighbours, or a chip and a switch."""

    bandwidth_bytes_per_s: BandwidthBytesPerS = Field(description="one link, one direction")
    latency_s: LatencyS = Field(
        description="one hop: neighbour to neighbour, or chip to chip through the switch"
    )
    energy_pj_per_bit: EnergyPj = Field(default=0.0, description="one bit over one hop")
    achievable_fraction: Fraction = Field(
        default=1.0,
        description="fraction of bandwidth_bytes_per_s a large transfer sustains",
    )


class Fabric(_Frozen):
    """One interconnect level: a topology of ``prod(dims)`` chips joined by identical links."""

    name: str = Field(min_length=1)
    topology: Topology
    dims: tuple[SmallCount, ...] = Field(
        description="chips along each dimension (ring/switch: 1 dim; torus_2d/mesh_2d: 2; torus_3d: 3)"
    )
    link: Link
    links_per_neighbor: SmallCount = Field(
        default=1,
        description="parallel links to each neighbour, or from a chip to the switch (NVSwitch H100: 18)",
    )
    in_network_reduction: Flag = Field(
        default=False, description="the switch reduces in the network (NVLink SHARP, InfiniBand SHARP)"
    )
    in_network_reduction_fraction: Fraction = Field(
        default=1.0,
        description="fraction of the port bandwidth an in-switch all-reduce sustains",
    )
    in_network_reduction_latency_s: LatencyS | None = Field(
        default=None,
        description="fixed time of one in-switch all-reduce in place of its two hops (up to the "
        "switch and back), beyond collective_latency_s; default: two link latencies",
    )
    collective_latency_s: LatencyS = Field(
        default=0.0,
        description="fixed time of one collective call beyond its hops: the collective kernel "
        "starting on every member and its completion (NCCL's base latency); default 0",
    )

    @field_validator("dims")
    @classmethod
    def _dims_match_topology(cls, value: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        topology = info.data.get("topology")
        if topology is not None and len(value) != _N_DIMS[topology]:
            need = _N_DIMS[topology]
            raise ValueError(f"{topology} needs {need} dim{'s' if need > 1 else ''}, got {len(value)}")
        return value

    @model_validator(mode="after")
    def _reduction_needs_switch(self) -> Fabric:
        if self.in_network_reduction and self.topology != "switch":
            raise ValueError(
                f"fabric '{self.name}': in_network_reduction needs a switch, not a {self.topology}"
            )
        if self.in_network_reduction_latency_s is not None and not self.in_network_reduction:
            raise ValueError(
                f"fabric '{self.name}': in_network_reduction_latency_s needs in_network_reduction: true"
            )
        return self

    @property
    def in_switch_latency_s(self) -> float:
        """Fixed time of one in-switch all-reduce beyond the call's, in s: the preset's
        ``in_network_reduction_latency_s``, else two hops (up to the switch and down)."""
        if self.in_network_reduction_latency_s is not None:
            return self.in_network_reduction_latency_s
        return 2 * self.link.latency_s

    @property
    def size(self) -> int:
        """Chips the fabric joins."""
        return math.prod(self.dims)

    @property
    def wraps(self) -> bool:
        """Whether each dimension closes into a ring (ring and tori, not meshes)."""
        return self.topology in _WRAPS

    @property
    def port_bytes_per_s(self) -> float:
        """Peak bandwidth to one neighbour (or into the switch), one direction, in B/s.
        In a ``full_mesh`` every pair of chips has its own ``links_per_neighbor`` links."""
        return self.links_per_neighbor * self.link.bandwidth_bytes_per_s

    @property
    def neighbors(self) -> int:
        """Chips one hop away from an (interior) chip."""
        if self.topology in _ONE_HOP:
            return self.size - 1
        return sum(min(d - 1, 2) for d in self.dims)

    @property
    def injection_bytes_per_s(self) -> float:
        """Peak bandwidth one chip sends into the fabric over all its ports, one direction."""
        if self.topology == "switch":
            return self.port_bytes_per_s if self.size > 1 else 0.0
        return self.neighbors * self.port_bytes_per_s  # a full mesh sends to every peer at once

    @property
    def diameter_hops(self) -> int:
        """Hops between the two farthest chips."""
        if self.topology in _ONE_HOP:
            return 1 if self.size > 1 else 0
        if self.wraps:
            return sum(d // 2 for d in self.dims)
        return sum(d - 1 for d in self.dims)

    @property
    def bisection_bytes_per_s(self) -> float:
        """Peak bandwidth across the narrowest cut into two halves, one direction, in B/s."""
        if self.size < 2:
            return 0.0
        if self.topology == "switch":  # non-blocking: each chip of one half sends at full rate
            return self.size // 2 * self.port_bytes_per_s
        if self.topology == "full_mesh":  # every pair across the cut has its own links
            return self.size // 2 * (self.size - self.size // 2) * self.port_bytes_per_s
        widest = max(self.dims)  # cutting the longest dimension crosses the fewest links
        links_per_line = 2 if self.wraps and widest > 2 else 1
        return self.size // widest * links_per_line * self.port_bytes_per_s


@dataclass(frozen=True)
class GroupLevel:
    """Where a parallel group sits on one level (a switch, ring, or one torus dimension).

    Attributes
    ----------
    fabric : Fabric
        The fabric the level belongs to.
    dim : int
        Dimension index within the fabric (0 for rings and switches).
    radix : int
        Chips along this level.
    members : int
        Distinct positions of the group along this level.
    step : int
        Distance between neighbouring members along this level, in hops (1: adjacent).
    """

    fabric: Fabric
    dim: int
    radix: int
    members: int
    step: int

    @property
    def is_switch(self) -> bool:
        """One hop to every member, placement irrelevant: a switch or a full mesh."""
        return self.fabric.topology in _ONE_HOP

    @property
    def is_closed_ring(self) -> bool:
        """The members form a ring closed by wraparound links, usable in both directions."""
        return self.fabric.wraps and self.members > 2 and self.members * self.step == self.radix


@functools.lru_cache(maxsize=4096)
def _placement(radices: tuple[int, ...], size: int, stride: int) -> tuple[tuple[int, int], ...]:
    """``(members, step)`` per level of the ranks ``0, stride, ..., (size - 1) * stride``."""
    coords: list[set[int]] = [set() for _ in radices]
    for i in range(size):
        rank = i * stride
        for k, radix in enumerate(radices):
            rank, coord = divmod(rank, radix)
            coords[k].add(coord)
    out = []
    for seen in coords:
        ordered = sorted(seen)
        step = functools.reduce(math.gcd, (b - a for a, b in zip(ordered, ordered[1:], strict=False)), 0)
        out.append((len(ordered), step or 1))
    return tuple(out)
