"""Silicon area of a chip: pure functions of (chip, table); its cost is priced in
:mod:`hwsim.cost.die_cost`.

The model, structure by structure (constants and their sources in the technology table,
``hwsim/data/technology.yaml``, read at the edge by :func:`hwsim.load_technology` and
passed in as ``tech``; table in ``docs/area_cost.md``):

- **compute**: for each dtype the chip supports, ``count x flops_per_cycle / 2`` MACs per
  cycle, each a processing element (PE) of ``mult + accumulate + register bits x overhead``
  at 45 nm (Horowitz's ISSCC 2014 areas; the per-bit overhead derived from the TPU v1
  PE), scaled to the node (Stillmaker & Baas, via Accelergy). The array is sized by its
  most expensive dtype; every other dtype adds a fraction of its own arithmetic.
- **vector**: ``count x flops_per_cycle`` fp32 FMA lanes with their registers.
  Compute and vector are multiplied by a per-kind core overhead (a GPU SM is much more
  than its tensor cores): 1.0 for a systolic array; 6.26 for a tensor-core unit, the one
  fitted constant, fitted on V100 alone (GV100, 815 mm2) and checked out of sample on
  A100 and H100.
- **sram**: every on-die memory level (a level is off-chip when its name starts with
  ``hbm``, ``dram``, ``ddr``, ``lpddr``, ``gddr``, ``host``, ...; a ``per_unit`` level
  counts once per compute unit) at the node's bitcell area over a product-level array
  efficiency.
- **phy**: HBM stacks (from bandwidth and capacity at the chip's HBM generation), DDR /
  LPDDR / GDDR channels, and SerDes lanes (NVLink, ICI, PCIe).
- **other**: a fixed share of the die (control, NoC, clocking, pads).

The chip's own technology facts are its fields: ``process_node_nm``, ``n_serdes_lanes``
and (with an HBM level) ``hbm_generation``. A chip without one of them has no modelled
area: :func:`chip_area` refuses it, naming the missing field, rather than assume one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

from hwsim.arch.model import Chip, MemoryLevel
from hwsim.cost.technology import HBM_GENERATIONS, MacArea, Technology
from hwsim.errors import ConfigError

_MIB_BITS = 8 * 2**20
#: Memory level name prefixes of off-die memory; every other level is on-die SRAM (wse2's
#: 40 GB on-wafer SRAM included). A naming rule, so code rather than table data.
OFF_CHIP_PREFIXES = ("hbm", "dram", "ddr", "lpddr", "gddr", "host", "external", "offchip", "cxl",
                     "memoryx")
#: Off-chip DRAM level name prefix -> its PHY kind in ``phy_mm2`` (HBM is sized in stacks).
_DRAM_PHYS = (("lpddr", "lpddr_channel"), ("gddr", "gddr_device"), ("ddr", "ddr_channel"),
              ("dram", "ddr_channel"))


def _interp_node(table: dict[float, float], node_nm: float) -> float:
    """Piecewise-linear in node between the table's nodes, clamped at both ends."""
    points = sorted((float(n), float(v)) for n, v in table.items())
    if node_nm <= points[0][0]:
        return points[0][1]
    if node_nm >= points[-1][0]:
        return points[-1][1]
    for (n0, v0), (n1, v1) in pairwise(points):
        if n0 <= node_nm <= n1:
            return v0 + (v1 - v0) * (node_nm - n0) / (n1 - n0)
    raise AssertionError("unreachable")


def _check_node(node_nm: float) -> float:
    if not (isinstance(node_nm, (int, float)) and math.isfinite(node_nm) and node_nm > 0):
        raise ConfigError([f"node_nm: must be a positive number of nanometres, got {node_nm!r}"])
    return float(node_nm)


def logic_area_scale(node_nm: float, tech: Technology) -> float:
    """Area of the same logic at ``node_nm`` relative to 45 nm (1.0 at 45 nm)."""
    node_nm = _check_node(node_nm)
    table = tech.logic_area_scale_vs_45nm
    smallest = min(float(n) for n in table)
    if node_nm < smallest:  # IRDS: area scales with the node below the table
        return float(table[min(table, key=float)]) * node_nm / smallest
    return _interp_node(table, node_nm)


def sram_mm2_per_mib(node_nm: float, tech: Technology) -> float:
    """Product-level on-die SRAM area per MiB at ``node_nm``, in mm2."""
    bitcell_um2 = _interp_node(tech.sram_bitcell_um2, _check_node(node_nm))
    return _MIB_BITS * bitcell_um2 * 1e-6 / tech.sram_array_efficiency


def _arith_um2(spec: MacArea) -> float:
    return spec.mult_um2 + spec.accumulate_um2


def _overhead_um2_per_bit(tech: Technology) -> float:
    """Register and wiring area per stored bit of a PE at 45 nm, from the TPU v1 PE."""
    cal = tech.pe_calibration
    pe_um2 = cal.die_mm2 * cal.array_fraction_of_die / cal.n_pe * 1e6
    pe_45_um2 = pe_um2 / logic_area_scale(cal.node_nm, tech)
    spec = tech.mac_dtypes[cal.dtype]
    bits = 3 * spec.operand_bits + spec.accumulator_bits
    return (pe_45_um2 - _arith_um2(spec)) / bits


def mac_area_um2(dtype: str, node_nm: float, tech: Technology) -> float:
    """Area of one MAC processing element for ``dtype`` at ``node_nm``, in um2."""
    return _mac_area_um2(dtype, tech, _overhead_um2_per_bit(tech), logic_area_scale(node_nm, tech))


def _mac_area_um2(dtype: str, tech: Technology, overhead_um2_per_bit: float, scale: float) -> float:
    """:func:`mac_area_um2` with the per-bit overhead and the node's logic scale given
    (computed once per chip, not once per dtype)."""
    if dtype not in tech.mac_dtypes:
        raise ConfigError([f"technology: mac_dtypes.{dtype}: no MAC area for this dtype"])
    spec = tech.mac_dtypes[dtype]
    bits = 3 * spec.operand_bits + spec.accumulator_bits
    return (_arith_um2(spec) + bits * overhead_um2_per_bit) * scale


def _compute_mm2(chip: Chip, tech: Technology, overhead_um2_per_bit: float, scale: float) -> float:
    cu = chip.compute_units
    macs = {d: cu.count * rate / 2 for d, rate in cu.flops_per_cycle.items()}
    array_um2 = {d: n * _mac_area_um2(d, tech, overhead_um2_per_bit, scale) for d, n in macs.items()}
    widest = max(array_um2, key=lambda d: array_um2[d])
    extra = tech.extra_dtype_fraction
    extras_um2 = sum(extra * macs[d] * _arith_um2(tech.mac_dtypes[d]) * scale for d in macs if d != widest)
    return (array_um2[widest] + extras_um2) * 1e-6


def _vector_mm2(chip: Chip, tech: Technology, overhead_um2_per_bit: float, scale: float) -> float:
    lane = tech.vector_lane
    lane_45_um2 = lane.mult_um2 + lane.accumulate_um2 + lane.register_bits * overhead_um2_per_bit
    lane_um2 = lane_45_um2 * scale
    vu = chip.vector_units
    return vu.count * vu.flops_per_cycle * lane_um2 * 1e-6


def is_off_chip(level_name: str) -> bool:
    """Whether a memory level is off the die (HBM, DRAM, host...), by its name."""
    return level_name.lower().startswith(OFF_CHIP_PREFIXES)


def _sram_mm2(chip: Chip, node_nm: float, tech: Technology) -> float:
    total_bytes = 0.0
    for name, level in chip.memory.items():
        if not is_off_chip(name):
            copies = chip.compute_units.count if level.scope == "per_unit" else 1
            total_bytes += level.capacity_bytes * copies
    return total_bytes / 2**20 * sram_mm2_per_mib(node_nm, tech)


def hbm_stacks(level: MemoryLevel, generation: str, tech: Technology) -> int:
    """HBM stacks needed for ``level``'s bandwidth and capacity at ``generation``."""
    gen = next((stack for name, stack in tech.hbm_generations.items() if name == generation), None)
    if gen is None:
        known = ", ".join(tech.hbm_generations)
        raise ConfigError([f"hbm_generation: unknown {generation!r}; expected one of {known}"])
    need = max(level.bandwidth_bytes_per_s / gen.bandwidth_bytes_per_s,
               level.capacity_bytes / gen.capacity_bytes)
    return max(1, math.ceil(need - 1e-9))


def _dram_phy(level_name: str) -> str | None:
    """The PHY kind of a DDR / LPDDR / GDDR level (``ddr_channel``...), else None."""
    lower = level_name.lower()
    return next((kind for prefix, kind in _DRAM_PHYS if lower.startswith(prefix)), None)


def _has_hbm(chip: Chip) -> bool:
    return any(name.lower().startswith("hbm") for name in chip.memory)


def _phy_mm2(chip: Chip, hbm_generation: str | None, serdes_lanes: int, tech: Technology) -> float:
    """PHY area (held constant across nodes: analogue and bump-limited), in mm2."""
    phy = tech.phy_mm2
    channel_bw = tech.channel_bandwidth_bytes_per_s
    area = serdes_lanes * phy.serdes_lane
    for name, level in chip.memory.items():
        if name.lower().startswith("hbm"):
            assert hbm_generation is not None  # chip_technology refuses an HBM chip without one
            area += hbm_stacks(level, hbm_generation, tech) * phy.hbm_stack
        elif (kind := _dram_phy(name)) is not None:
            per_channel = getattr(channel_bw, kind)
            area += math.ceil(level.bandwidth_bytes_per_s / per_channel - 1e-9) * getattr(phy, kind)
    return area


@dataclass(frozen=True)
class ChipTechnology:
    """The technology facts the area model uses for one chip."""

    process_node_nm: float
    n_serdes_lanes: int
    hbm_generation: str | None


def chip_technology(chip: Chip, node_nm: float | None = None, *, serdes_lanes: int | None = None,
                    hbm_generation: str | None = None) -> ChipTechnology:
    """The chip's process node, SerDes lanes and HBM generation: each argument given,
    else the chip's field.

    Raises
    ------
    ConfigError
        One line per fact that is neither given nor a field of the chip (never a default:
        a chip copied from a preset and renamed keeps its fields; one written from scratch
        must state them).
    """
    node = node_nm if node_nm is not None else chip.process_node_nm
    lanes = serdes_lanes if serdes_lanes is not None else chip.n_serdes_lanes
    hbm = hbm_generation if hbm_generation is not None else chip.hbm_generation
    problems = []
    if node is None:
        problems.append(f"{chip.name}: process_node_nm: not set; the area and cost model needs the "
                        "chip's process node (e.g. process_node_nm: 4 for TSMC 4N)")
    if lanes is None:
        problems.append(f"{chip.name}: n_serdes_lanes: not set; the area model sizes the off-chip "
                        "SerDes PHYs (NVLink, ICI, PCIe lanes) from it; write 0 for none")
    elif lanes < 0:
        problems.append(f"serdes_lanes: must be >= 0, got {lanes}")
    if hbm is None and _has_hbm(chip):
        problems.append(f"{chip.name}: hbm_generation: not set; the area model sizes the HBM PHYs "
                        f"from it (one of {', '.join(HBM_GENERATIONS)})")
    if problems:
        raise ConfigError(problems)
    assert node is not None and lanes is not None
    return ChipTechnology(_check_node(node), lanes, hbm)


@dataclass(frozen=True)
class AreaBreakdown:
    """Die area of a chip by structure, in mm2."""

    compute_mm2: float
    sram_mm2: float
    vector_mm2: float
    phy_mm2: float
    other_mm2: float

    @property
    def total_mm2(self) -> float:
        """Die area, in mm2."""
        return self.compute_mm2 + self.sram_mm2 + self.vector_mm2 + self.phy_mm2 + self.other_mm2

    def as_dict(self) -> dict[str, float]:
        """Every part and the total, keyed with their ``_mm2`` names."""
        return {"compute_mm2": self.compute_mm2, "sram_mm2": self.sram_mm2,
                "vector_mm2": self.vector_mm2, "phy_mm2": self.phy_mm2,
                "other_mm2": self.other_mm2, "total_mm2": self.total_mm2}


def chip_area(chip: Chip, tech: Technology, node_nm: float | None = None, *,
              serdes_lanes: int | None = None, hbm_generation: str | None = None) -> AreaBreakdown:
    """Modelled die area of ``chip`` (see the module docstring).

    Parameters
    ----------
    tech
        The technology table (:func:`hwsim.load_technology`).
    node_nm
        Process node; default: the chip's ``process_node_nm``.
    serdes_lanes
        Off-chip SerDes lanes (NVLink, ICI, PCIe); default: the chip's ``n_serdes_lanes``.
    hbm_generation
        ``hbm2``, ``hbm2e``, ``hbm3`` or ``hbm3e`` for sizing HBM PHYs; default: the
        chip's ``hbm_generation``.

    Raises
    ------
    ConfigError
        If a fact the model needs is neither given nor a field of the chip
        (:func:`chip_technology`), or a value is out of range.
    """
    facts = chip_technology(chip, node_nm, serdes_lanes=serdes_lanes, hbm_generation=hbm_generation)
    node = facts.process_node_nm
    factor = tech.core_overhead_factor[chip.compute_units.kind]
    # The node's logic scale and the PE's per-bit overhead, once for every structure.
    scale, overhead = logic_area_scale(node, tech), _overhead_um2_per_bit(tech)
    compute = _compute_mm2(chip, tech, overhead, scale) * factor
    vector = _vector_mm2(chip, tech, overhead, scale) * factor
    sram = _sram_mm2(chip, node, tech)
    phy = _phy_mm2(chip, facts.hbm_generation, facts.n_serdes_lanes, tech)
    share = tech.other_fraction
    other = share / (1 - share) * (compute + vector + sram + phy)
    return AreaBreakdown(compute, sram, vector, phy, other)
