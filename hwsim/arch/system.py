"""Multi-chip systems: one chip type joined by nested interconnect fabrics.

A :class:`System` is ``n_chips`` copies of one :class:`~hwsim.arch.model.Chip` joined by
:class:`Fabric` levels listed innermost first (NVSwitch inside a node, then InfiniBand
between nodes), optionally with host memory and an external weight store. Ranks are
numbered innermost first; a torus or mesh counts each of its dimensions as a nested
level of its own (``dims[0]`` fastest). :meth:`System.group_levels` uses that layout to
say which levels a parallel group spans, which is all the collective cost model
(:mod:`hwsim.cost.collective`) needs to know about placement.

A ``full_mesh`` gives every pair of chips links of its own (AMD Infinity Fabric between the
GPUs of a platform, Gaudi's on-die RoCE ports): one hop to any peer, and a group of ``m``
members sends over ``m - 1`` peers' links at once.

Bandwidths are per direction. A link's ``latency_s`` is one hop: neighbour to
neighbour on a ring, torus or mesh, chip to chip through the switch on a switch. The
``Fabric`` properties are datasheet (peak) figures; the cost model applies the link's
``achievable_fraction``.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from hwsim._paths import preset_names, resolve
from hwsim._yaml import read_yaml, validation_problems
from hwsim.arch.model import Chip, Version, _Frozen
from hwsim.errors import ConfigError
from hwsim.quantities import BandwidthBytesPerS, CapacityBytes, EnergyPj, Flag, Fraction, LatencyS, SmallCount

Topology = Literal["ring", "switch", "full_mesh", "torus_2d", "torus_3d", "mesh_2d"]

SYSTEMS_DIR = "arch_configs/systems"
"""Where the system presets live, relative to the shipped data (``_paths.data_dir``)."""

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
        return self

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


class ExternalMemory(_Frozen):
    """Memory outside the chips: host DRAM over PCIe, or a weight-streaming appliance."""

    capacity_bytes: CapacityBytes = Field(description="bytes each chip may use")
    bandwidth_bytes_per_s: BandwidthBytesPerS = Field(description="per chip, per direction")
    latency_s: LatencyS = 0.0
    energy_pj_per_byte: EnergyPj = Field(default=0.0, description="one byte moved, both ends")
    access_granularity_bytes: CapacityBytes = Field(
        default=64.0,
        description="smallest unit a random read moves (a gathered embedding row is rounded "
        "up to it): 64 B, one DDR burst and CPU cache line (see MemoryLevel)",
    )


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


class System(_Frozen):
    """Chips joined by fabrics (innermost first), with optional host and external memory."""

    version: Version = 1
    name: str = Field(min_length=1)
    description: str = ""
    chip: Chip
    fabrics: tuple[Fabric, ...] = Field(
        default=(), description="innermost first; chips = product of their sizes; none for one chip"
    )
    host: ExternalMemory | None = Field(default=None, description="host DRAM over PCIe (offload)")
    external_memory: ExternalMemory | None = Field(
        default=None, description="weight-streaming appliance (Cerebras MemoryX)"
    )

    @field_validator("fabrics")
    @classmethod
    def _unique_names(cls, value: tuple[Fabric, ...]) -> tuple[Fabric, ...]:
        names = [f.name for f in value]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"fabric names must be unique; repeated: {', '.join(dup)}")
        n_chips = math.prod(f.size for f in value)
        if n_chips > MAX_CHIPS:
            raise ValueError(f"the fabrics join {n_chips:.3g} chips, more than the plausible {MAX_CHIPS:.0e}")
        return value

    @property
    def n_chips(self) -> int:
        """Chips in the system."""
        return math.prod(f.size for f in self.fabrics)

    def _levels(self) -> list[tuple[Fabric, int, int]]:
        """``(fabric, dim, radix)`` for every nested level, innermost first."""
        return [(f, i, d) for f in self.fabrics for i, d in enumerate(f.dims)]

    def group_levels(self, size: int, stride: int = 1) -> list[GroupLevel]:
        """The levels a group of ``size`` chips at rank ``stride`` spans (members > 1).

        Raises
        ------
        ValueError
            If ``size`` or ``stride`` is below 1, or ``size * stride`` exceeds ``n_chips``.
        """
        if size < 1 or stride < 1:
            raise ValueError(f"group size ({size}) and stride ({stride}) must be at least 1")
        if size * stride > self.n_chips:
            raise ValueError(
                f"a group of {size} chips at rank stride {stride} needs {size * stride} chips; "
                f"system '{self.name}' has {self.n_chips}"
            )
        levels = self._levels()
        placement = _placement(tuple(radix for _, _, radix in levels), size, stride)
        return [
            GroupLevel(fabric, dim, radix, members, step)
            for (fabric, dim, radix), (members, step) in zip(levels, placement, strict=True)
            if members > 1
        ]

    def group_fabrics(self, size: int, stride: int = 1) -> list[tuple[Fabric, int]]:
        """Which fabrics (torus dimensions counted apart) a group spans, and its members in each.

        Examples
        --------
        On a 4x4x4 torus a group of 16 at stride 4 spans dims y and z:
        ``[(torus, 4), (torus, 4)]``.
        """
        return [(g.fabric, g.members) for g in self.group_levels(size, stride)]


def single_chip_system(chip: Chip) -> System:
    """A system of one chip and no fabrics."""
    return System(name=chip.name, description=chip.description, chip=chip)


# Loading ----------------------------------------------------------------------------


def list_systems() -> list[str]:
    """Names of the shipped system presets (``arch_configs/systems/*.yaml``)."""
    return preset_names(SYSTEMS_DIR)


def _default_chip_loader(name: str) -> Chip:
    from hwsim.arch.load import load_arch  # lazy: load.py may dispatch to this module

    return load_arch(name)


def system_from_dict(
    data: Any, source: str = "<dict>", chip_loader: Callable[[str], Chip] | None = None
) -> System:
    """Validate a mapping (as read from YAML) into a :class:`System`.

    ``chip`` is either a chip preset name or path (loaded with ``chip_loader``, by default
    :func:`hwsim.arch.load.load_arch`) or an inline chip mapping.

    Raises
    ------
    ConfigError
        Listing every problem as ``source: dotted.path: message``.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: <root>: expected a mapping of system fields"])
    data = dict(data)
    if isinstance(data.get("chip"), str):
        loader = chip_loader or _default_chip_loader
        try:
            data["chip"] = loader(data["chip"])
        except ConfigError as exc:
            raise ConfigError([f"{source}: chip: {line}" for line in exc.problems]) from None
    try:
        return System.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(source, exc)) from None


def _is_system_mapping(data: Any) -> bool:
    return isinstance(data, dict) and bool({"chip", "fabrics"} & set(data))


def load_system(name_or_path: str | Path | System | Chip) -> System:
    """Load a system by preset name (``"dgx-h100"``) or YAML path.

    A chip (a :class:`Chip`, a chip preset name, or a chip YAML file, i.e. one with
    neither ``chip:`` nor ``fabrics:``) becomes a one-chip system. A chip given by path
    inside a system file is looked up next to that file first.

    Raises
    ------
    ConfigError
        For an unknown name (with close matches), an unreadable or malformed file, or
        invalid fields (one line per problem, naming the file and dotted path).
    """
    if isinstance(name_or_path, System):
        return name_or_path
    if isinstance(name_or_path, Chip):
        return single_chip_system(name_or_path)
    path = resolve(name_or_path, SYSTEMS_DIR) or resolve(name_or_path, "arch_configs")
    if path is None:
        from hwsim.arch.load import list_archs

        known = list_systems()
        close = difflib.get_close_matches(str(name_or_path), known + list_archs(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            [f"{name_or_path}: unknown system preset or file{hint} (known systems: {', '.join(known)})"]
        )
    data = read_yaml(path)
    if isinstance(data, dict) and not _is_system_mapping(data):
        from hwsim.arch.load import arch_from_dict

        return single_chip_system(arch_from_dict(data, str(path)))

    def chip_loader(name: str) -> Chip:
        beside = path.parent / name
        return _default_chip_loader(str(beside) if beside.is_file() else name)

    return system_from_dict(data, str(path), chip_loader)


def with_fabric_dims(system: System, fabric: str, dims: tuple[int, ...]) -> System:
    """A copy of ``system`` whose fabric ``fabric`` joins ``dims`` chips (re-validated), so
    a preset's chip count is a parameter (``groq-576`` with 4 racks: ``("c2c-cluster", (4,))``).

    Raises
    ------
    ConfigError
        If ``system`` has no fabric ``fabric``, or the new dims do not fit its topology.
    """
    names = [f.name for f in system.fabrics]
    if fabric not in names:
        known = ", ".join(names) or "none"
        raise ConfigError([f"{system.name}: fabrics: no fabric named {fabric!r} (has: {known})"])
    data = system.model_dump()
    data["fabrics"][names.index(fabric)]["dims"] = tuple(dims)
    resized = system_from_dict(data, f"{system.name} ({fabric}.dims = {list(dims)})")
    return resized.model_copy(update={"name": f"{system.name}@{resized.n_chips}"})
