"""The technology table of the area and cost model: a schema, no I/O.

The shipped table is ``hwsim/data/technology.yaml`` (every constant with its source); it
is read at the edge (:func:`hwsim.technology.load_technology`) and passed into the pure
functions of :mod:`hwsim.cost.area`. What belongs to one chip (its process node, SerDes
lanes, HBM generation) is a :class:`~hwsim.arch.model.Chip` field, not an entry here.

In the file a constant may be written ``{value: ..., source: "..."}``, and a mapping may
carry a ``source`` key beside its entries; both are read as the bare value here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: HBM generations a chip may name (``Chip.hbm_generation``); the table must size each.
HBM_GENERATIONS = ("hbm2", "hbm2e", "hbm3", "hbm3e")


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeCalibration(_Table):
    """The processing element the register overhead per bit is derived from (TPU v1)."""

    die_mm2: float = Field(gt=0)
    array_fraction_of_die: float = Field(gt=0, le=1)
    n_pe: int = Field(gt=0)
    node_nm: float = Field(gt=0)
    dtype: str


class MacArea(_Table):
    """Arithmetic of one MAC of a dtype at 45 nm, and the bits its PE registers hold
    (each dtype's entry keeps its own ``source``)."""

    mult_um2: float = Field(gt=0)
    accumulate_um2: float = Field(gt=0)
    operand_bits: int = Field(gt=0)
    accumulator_bits: int = Field(gt=0)
    source: str = ""


class VectorLane(_Table):
    """One fp32 FMA lane with its operand registers, at 45 nm."""

    mult_um2: float = Field(gt=0)
    accumulate_um2: float = Field(gt=0)
    register_bits: int = Field(gt=0)


class HbmStack(_Table):
    """Peak bandwidth and largest capacity of one HBM stack of a generation."""

    bandwidth_bytes_per_s: float = Field(gt=0)
    capacity_bytes: float = Field(gt=0)


class PhyArea(_Table):
    """Area of one off-chip interface, in mm2 (held constant across nodes)."""

    hbm_stack: float = Field(ge=0)
    ddr_channel: float = Field(ge=0)
    lpddr_channel: float = Field(ge=0)
    gddr_device: float = Field(ge=0)
    serdes_lane: float = Field(ge=0)


class ChannelBandwidth(_Table):
    """Bandwidth of one DDR / LPDDR channel or GDDR device, in bytes/s."""

    ddr_channel: float = Field(gt=0)
    lpddr_channel: float = Field(gt=0)
    gddr_device: float = Field(gt=0)


class Packaging(_Table):
    """Package price, in USD: a 2.5D interposer (with HBM) or an organic flip-chip."""

    interposer_2p5d: float = Field(ge=0)
    organic_flip_chip: float = Field(ge=0)


def _bare(value: Any) -> Any:
    """``{value: v, source: s}`` -> ``v``; a mapping's own ``source`` entry dropped."""
    if isinstance(value, dict) and "value" in value and set(value) <= {"value", "source"}:
        return value["value"]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "source"}
    return value


class Technology(_Table):
    """Area, price and yield constants by process node (see ``technology.yaml``)."""

    version: Literal[1] = 1
    sources: dict[str, str] = Field(default_factory=dict, description="citation keys -> references")
    logic_area_scale_vs_45nm: dict[float, float] = Field(min_length=1)
    pe_calibration: PeCalibration
    mac_dtypes: dict[str, MacArea] = Field(min_length=1)
    extra_dtype_fraction: float = Field(ge=0)
    vector_lane: VectorLane
    core_overhead_factor: dict[Literal["systolic_array", "tensor_core"], float]
    other_fraction: float = Field(ge=0, lt=1)
    sram_bitcell_um2: dict[float, float] = Field(min_length=1)
    sram_array_efficiency: float = Field(gt=0, le=1)
    hbm_generations: dict[Literal["hbm2", "hbm2e", "hbm3", "hbm3e"], HbmStack]
    phy_mm2: PhyArea
    channel_bandwidth_bytes_per_s: ChannelBandwidth
    wafer_cost_usd: dict[float, float] = Field(min_length=1)
    wafer_diameter_mm: float = Field(gt=0)
    defect_density_per_cm2: float = Field(ge=0)
    negative_binomial_alpha: float = Field(gt=0)
    hbm_usd_per_gb: float = Field(ge=0)
    dram_usd_per_gb: float = Field(ge=0)
    packaging_usd: Packaging

    @model_validator(mode="before")
    @classmethod
    def _unwrap_sources(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {k: (v if k == "sources" else _bare(v)) for k, v in data.items()}

    @model_validator(mode="after")
    def _covers_what_it_needs(self) -> Technology:
        missing = [g for g in HBM_GENERATIONS if g not in self.hbm_generations]
        if missing:
            raise ValueError(f"hbm_generations: missing {', '.join(missing)}")
        if self.pe_calibration.dtype not in self.mac_dtypes:
            raise ValueError(f"pe_calibration.dtype: {self.pe_calibration.dtype!r} is not in mac_dtypes")
        for kind in ("systolic_array", "tensor_core"):
            if kind not in self.core_overhead_factor:
                raise ValueError(f"core_overhead_factor: missing {kind}")
        return self
