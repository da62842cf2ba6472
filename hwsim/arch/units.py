"""Compute units of a chip: its matrix engines and its vector (SIMD) units.

Split from :mod:`hwsim.arch.model`, which re-exports every name here. Each field's
unit is in its name.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hwsim.dtypes import RATE_FAMILY, DType
from hwsim.quantities import (
    ArrayDim,
    EnergyPj,
    Flag,
    Fraction,
    FrequencyHz,
    Multiplier,
    PerCycle,
    SmallCount,
    UnitCount,
    ZeroToOne,
)

Dataflow = Literal["weight_stationary", "output_stationary", "input_stationary"]


class _Frozen(BaseModel):
    # No custom __init__ here (as Plan has): pydantic would call it for every nested
    # model, and the loaders need pydantic's errors with their full dotted paths.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComputeUnit(_Frozen):
    """A group of identical matrix engines.

    ``kind: systolic_array`` is costed cycle by cycle from its dataflow (fill, drain,
    folds); ``kind: tensor_core`` is costed as output tiles spread in waves over
    ``count`` units, each tile a multiple of the ``rows`` x ``cols`` MMA granule.
    """

    kind: Literal["systolic_array", "tensor_core"] = "systolic_array"
    rows: ArrayDim = Field(description="PE rows (systolic) or MMA M granule (tensor core)")
    cols: ArrayDim = Field(description="PE columns (systolic) or MMA N granule")
    count: UnitCount = Field(description="number of identical units on the chip")
    dataflow: Dataflow = "weight_stationary"
    clock_hz: FrequencyHz
    flops_per_cycle: dict[DType, PerCycle] = Field(
        description="dense FLOP per cycle per unit for each supported dtype (2 per MAC)"
    )
    energy_per_mac_pj: dict[DType, EnergyPj] = Field(
        default_factory=dict, description="energy of one MAC including operand delivery"
    )
    achievable_fraction: Fraction = Field(
        default=1.0, description="fraction of peak math rate a large kernel sustains"
    )
    achievable_fraction_by_dtype: dict[DType, Fraction] = Field(
        default_factory=dict,
        description="per-dtype overrides of achievable_fraction (the achieved peak of each "
        "dtype's instructions: fp8 kernels reach a smaller share of their doubled peak)",
    )
    stationary_double_buffered: Flag = Field(
        default=False,
        description="systolic arrays: the next fold's stationary operand loads while the "
        "current fold streams (TPU MXU weight staging), hiding the fill",
    )
    cluster_size: SmallCount = Field(
        default=1,
        description="units that share one operand fetch from the first shared level "
        "(Hopper thread-block clusters with TMA multicast: 2)",
    )

    @field_validator("flops_per_cycle")
    @classmethod
    def _some_dtype(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("must list at least one dtype")
        return value

    @model_validator(mode="after")
    def _energy_dtypes_supported(self) -> ComputeUnit:
        for field in ("energy_per_mac_pj", "achievable_fraction_by_dtype"):
            extra = set(getattr(self, field)) - set(self.flops_per_cycle)
            if extra:
                raise ValueError(f"{field} lists {sorted(extra)} which flops_per_cycle does not support")
        return self

    def rate_key(self, dtype: str) -> str:
        """The entry of ``flops_per_cycle`` that ``dtype`` runs at: its own, else its
        element format's for a block-scaled format (:data:`hwsim.dtypes.RATE_FAMILY`:
        a chip with fp4 math runs NVFP4 and MXFP4)."""
        if dtype in self.flops_per_cycle or dtype not in RATE_FAMILY:
            return dtype
        family = RATE_FAMILY[dtype]
        return family if family in self.flops_per_cycle else dtype

    def fraction(self, dtype: str) -> float:
        """Fraction of the ``dtype`` peak a large kernel sustains."""
        return self.achievable_fraction_by_dtype.get(self.rate_key(dtype), self.achievable_fraction)  # type: ignore[call-overload]

    def mac_energy_pj(self, dtype: str) -> float:
        """Energy of one ``dtype`` MAC (0 where the chip states none), in pJ."""
        return self.energy_per_mac_pj.get(self.rate_key(dtype), 0.0)  # type: ignore[call-overload]

    def peak_flops_per_s(self, dtype: str) -> float:
        """Dense peak of all units for ``dtype``, in FLOP/s (0 if unsupported)."""
        return self.count * self.clock_hz * self.flops_per_cycle.get(self.rate_key(dtype), 0.0)  # type: ignore[call-overload]


class VectorUnit(_Frozen):
    """SIMD units for softmax, norms, activations and other element-wise work."""

    count: UnitCount
    flops_per_cycle: PerCycle = Field(description="element operations per cycle per unit")
    clock_hz: FrequencyHz
    energy_per_op_pj: EnergyPj = 0.0
    exp_per_cycle: PerCycle | None = Field(
        default=None,
        description="exponentials per cycle per unit (special-function units); "
        "default: flops_per_cycle",
    )
    attention_exp_overlap: ZeroToOne = Field(
        default=0.0,
        description="share of a fused attention kernel's exponentials hidden under its "
        "matrix products (FlashAttention-3 overlaps softmax and MMA; FlashAttention-2 does not)",
    )
    dequant_ops_per_element: Multiplier = Field(
        default=2.0,
        description="lane operations to unpack, convert and scale one quantized weight element "
        "for a wider matrix unit (weight-only quantization, emulated formats): 2 is Marlin-style "
        "bit tricks (one LOP3 unpack-convert, one scale FMA, per element)",
    )

    @property
    def peak_ops_per_s(self) -> float:
        """Element operations per second over all vector units."""
        return self.count * self.flops_per_cycle * self.clock_hz
