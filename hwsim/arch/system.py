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
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from hwsim._paths import preset_names, resolve
from hwsim._yaml import read_yaml, validation_problems
from hwsim.arch.fabric import (
    MAX_CHIPS,
    Fabric,
    GroupLevel,
    Link,
    _placement,
)
from hwsim.arch.model import Chip, Version, _Frozen
from hwsim.arch.tiers import RESERVED_TIERS, ExternalMemory, HostCpu
from hwsim.errors import ConfigError

SYSTEMS_DIR = "arch_configs/systems"
"""Where the system presets live, relative to the shipped data (``_paths.data_dir``)."""


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
    tiers: dict[str, ExternalMemory] = Field(
        default_factory=dict, description="further memory tiers by name (nvme, cxl), as one chip sees them"
    )
    host_cpu: HostCpu | None = Field(default=None, description="the host CPU, for offloaded compute")
    pools: dict[Literal["prefill", "decode"], System] = Field(
        default_factory=dict,
        description="a mixed system: the prefill and decode pools' own systems (chips of different kinds)",
    )
    pool_link: Link | None = Field(default=None, description="the link KV crosses between pools")

    @field_validator("tiers")
    @classmethod
    def _tier_names(cls, value: dict[str, ExternalMemory]) -> dict[str, ExternalMemory]:
        reserved = sorted(set(value) & RESERVED_TIERS)
        if reserved:
            raise ValueError(f"{', '.join(reserved)}: reserved tier name (the chip's memory, host and "
                             "external_memory are fields of their own)")
        return value

    @field_validator("pools")
    @classmethod
    def _both_pools(cls, value: dict[str, System]) -> dict[str, System]:
        if value and sorted(value) != ["decode", "prefill"]:
            raise ValueError(f"a mixed system needs a 'prefill' and a 'decode' pool, got {sorted(value)}")
        return value

    def tier(self, name: str) -> ExternalMemory | None:
        """The off-chip memory a placement's tier ``name`` means (None if the system lacks it)."""
        if name == "host":
            return self.host
        if name == "external_memory":
            return self.external_memory
        return self.tiers.get(name)

    @property
    def tier_names(self) -> list[str]:
        """The off-chip tiers this system has, by placement name."""
        fixed = [n for n in ("host", "external_memory") if self.tier(n) is not None]
        return fixed + list(self.tiers)

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
    problems = _resolve_parts(data, source, chip_loader)
    if problems:
        raise ConfigError(problems)
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


def _resolve_parts(data: dict, source: str, chip_loader: Callable[[str], Chip] | None) -> list[str]:
    """Load the parts given by name in place: the host CPU's chip preset and a mixed
    system's pools (preset names, paths or inline mappings). A mixed system without a
    ``chip`` of its own takes its prefill pool's chip, fabrics and host (so ``simulate``
    runs on the prefill pool)."""
    problems: list[str] = []
    cpu = data.get("host_cpu")
    if isinstance(cpu, dict) and isinstance(cpu.get("chip"), str):
        try:
            data["host_cpu"] = cpu | {"chip": (chip_loader or _default_chip_loader)(cpu["chip"])}
        except ConfigError as exc:
            problems += [f"{source}: host_cpu.chip: {line}" for line in exc.problems]
    pools = data.get("pools")
    if isinstance(pools, dict):
        loaded = {}
        for role, value in pools.items():
            try:
                loaded[role] = (load_system(value) if isinstance(value, str)
                                else system_from_dict(value, f"{source}: pools.{role}", chip_loader))
            except ConfigError as exc:
                problems += [line if line.startswith(source) else f"{source}: pools.{role}: {line}"
                             for line in exc.problems]
        data["pools"] = loaded
        prefill = loaded.get("prefill")
        if "chip" not in data and isinstance(prefill, System):
            data |= {"chip": prefill.chip, "fabrics": prefill.fabrics, "host": data.get("host", prefill.host)}
    return problems


def _is_system_mapping(data: Any) -> bool:
    return isinstance(data, dict) and bool({"chip", "fabrics", "pools"} & set(data))


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
