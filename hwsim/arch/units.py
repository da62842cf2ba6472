"""Compute units of a chip: its matrix engines and its vector (SIMD) units.

Split from :mod:`hwsim.arch.model`, which re-exports every name here. Each field's
unit is in its name. A vector unit's softmax costs (lane operations per score, how its
exponentials are made, whether a fused score pipeline runs beside the matrix units) are
chip facts a design declares; their defaults reproduce the presets' numbers.
"""

from __future__ import annotations

from typing import Annotated, Literal

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
    int_in,
    real_in,
)

Dataflow = Literal["weight_stationary", "output_stationary", "input_stationary"]
#: Query rows or keys of one fused attention block (FlashAttention's Br, Bc): a power of
#: two from 16 to 256, the range FlashAttention kernels use (checked by the validator).
AttentionBlockDim = Annotated[int, int_in(16, 256)]
#: Lane operations per softmax score besides its exponential: 0 to 1,000.
LaneOps = Annotated[float, real_in(0.0, 1e3)]
#: Lane operations to make one exponential on the lanes: 1 to 1,000.
ExpOps = Annotated[float, real_in(1.0, 1e3)]
ExpImpl = Literal["special_function", "polynomial", "lookup_table"]


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
    attention_block: tuple[AttentionBlockDim, AttentionBlockDim] | None = Field(
        default=None,
        description="query rows x keys (FlashAttention's Br x Bc) of one block of a fused "
        "attention kernel, where the chip's kernel library fixes them; unset, the cost model "
        "keeps the cheapest power-of-two block whose tiles fit the per-unit buffer "
        "(hwsim.mapping.attention)",
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
        if self.attention_block is not None:
            for dim in self.attention_block:
                if dim & (dim - 1):
                    raise ValueError(f"attention_block: {dim} is not a power of two")
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
    softmax_ops_per_element: LaneOps = Field(
        default=3.0,
        description="lane operations per attention score for its softmax besides the "
        "exponential: 3 is scale, running max and running sum",
    )
    exp_impl: ExpImpl = Field(
        default="special_function",
        description="how the softmax's exponentials are made: special_function units "
        "(exp_per_cycle each), a polynomial on the lanes (exp_ops_per_element lane operations "
        "each: range reduction and a Horner chain), or a lookup_table (exp_ops_per_element lane "
        "operations each for the index and interpolation, and at most exp_lookups_per_cycle "
        "table reads per cycle)",
    )
    exp_ops_per_element: ExpOps = Field(
        default=1.0,
        description="lane operations per exponential: the one issue slot of a special-function "
        "exponential (its energy), or the chip's polynomial or table cost",
    )
    exp_lookups_per_cycle: PerCycle | None = Field(
        default=None,
        description="exp_impl lookup_table: table reads per cycle per unit (its ports); "
        "default: one per lane (flops_per_cycle)",
    )
    fused_score_pipeline: Flag = Field(
        default=False,
        description="tensor-core chips: a fused attention kernel's exponentials run in a "
        "pipeline beside its block products (warp-specialised ping-pong, a dedicated softmax "
        "engine), so a block costs max(products, exponentials) where that beats products "
        "plus the unhidden share (attention_exp_overlap)",
    )

    @model_validator(mode="after")
    def _exp_fields_agree(self) -> VectorUnit:
        if self.exp_lookups_per_cycle is not None and self.exp_impl != "lookup_table":
            raise ValueError("exp_lookups_per_cycle is read only when exp_impl is lookup_table")
        if self.exp_impl != "special_function" and self.exp_per_cycle is not None:
            raise ValueError(f"exp_per_cycle (special-function units) conflicts with exp_impl "
                             f"{self.exp_impl}")
        return self

    @property
    def exp_per_cycle_per_unit(self) -> float:
        """Exponentials one unit makes per cycle: its special-function rate, else its
        lanes over the lane operations of one exponential (a table no faster than its
        ports)."""
        if self.exp_impl == "special_function":
            return self.exp_per_cycle or self.flops_per_cycle
        rate = self.flops_per_cycle / self.exp_ops_per_element
        if self.exp_impl == "lookup_table":
            rate = min(rate, self.exp_lookups_per_cycle or self.flops_per_cycle)
        return rate

    def score_lane_ops(self, softcap: bool = False) -> float:
        """Lane operations one attention score costs in time on the lanes: the softmax's
        own, its exponential at the exponential rate (in lane-cycle equivalents) and a soft
        cap's 4 (divide, tanh, multiply, with tanh as one)."""
        ops = self.softmax_ops_per_element + self.flops_per_cycle / self.exp_per_cycle_per_unit
        return ops + (4.0 if softcap else 0.0)

    def score_energy_ops(self, softcap: bool = False) -> float:
        """Lane operations one attention score costs in energy: the softmax's own, one
        exponential's and a soft cap's."""
        return self.softmax_ops_per_element + self.exp_ops_per_element + (4.0 if softcap else 0.0)

    @property
    def peak_ops_per_s(self) -> float:
        """Element operations per second over all vector units."""
        return self.count * self.flops_per_cycle * self.clock_hz
