"""Architecture schema: frozen pydantic models whose field names are the YAML keys.

A :class:`Chip` has matrix compute units (systolic arrays or tensor cores), vector
units, a memory hierarchy of named levels listed innermost first, an optional sparsity
unit, idle power, area and a per-kernel dispatch overhead (the compute and vector units
are in :mod:`hwsim.arch.units`). Every quantity carries its unit in its name; energies
are per action (Accelergy style), kept beside the structure.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
)

# ComputeUnit, VectorUnit and Dataflow live in units.py; importing them from here still works.
from hwsim.arch.units import ComputeUnit, VectorUnit, _Frozen
from hwsim.arch.units import Dataflow as Dataflow
from hwsim.dtypes import DTYPES
from hwsim.quantities import (
    AreaMm2,
    BandwidthBytesPerS,
    BitsPerElement,
    CapacityBytes,
    EnergyJ,
    EnergyPj,
    Fraction,
    LatencyS,
    Multiplier,
    PowerLimitW,
    PowerW,
    SmallCount,
    ZeroToOne,
    exact_int,
    real_in,
)

#: The schema version of chip and system files: exactly the integer 1 (not ``true``, ``1.0``).
Version = Annotated[Literal[1], BeforeValidator(exact_int)]
#: Dynamic power ~ clock**exponent: 1 (clock alone) to 3 (f V^2 with V following f).
ClockExponent = Annotated[float, real_in(1.0, 3.0, hard=True)]


class MemoryLevel(_Frozen):
    """One level of the memory hierarchy.

    ``capacity_bytes`` is per instance: per compute unit when ``scope`` is
    ``per_unit``, for the whole chip when ``shared``. ``bandwidth_bytes_per_s`` is the
    aggregate over all instances.
    """

    capacity_bytes: CapacityBytes
    bandwidth_bytes_per_s: BandwidthBytesPerS
    latency_s: LatencyS = 0.0
    read_energy_pj_per_byte: EnergyPj = 0.0
    write_energy_pj_per_byte: EnergyPj = 0.0
    scope: Literal["shared", "per_unit"] = "shared"
    achievable_fraction: Fraction = Field(
        default=1.0, description="fraction of bandwidth a streaming kernel sustains"
    )
    access_granularity_bytes: CapacityBytes = Field(
        default=64.0,
        description="smallest unit a random access moves (burst or sector): a gathered "
        "embedding row is rounded up to a multiple of it. Default 64 B, one DDR4/DDR5 burst "
        "(JEDEC: BL8 x 64-bit channel, BL16 x 32-bit DDR5 sub-channel) and one CPU cache "
        "line; NVIDIA GPUs fetch DRAM in 32 B sectors (CUDA C++ Best Practices Guide, "
        "'Coalesced Access to Global Memory')",
    )
    ramp_s: LatencyS = Field(
        default=0.0,
        description="extra time a long stream pays while the level ramps up to full "
        "bandwidth (request queues filling, banks and pages opening)",
    )
    ramp_bytes: CapacityBytes = Field(
        default=1.0, description="transfer size over which the ramp builds up"
    )
    buffer_split: tuple[Fraction, Fraction, Fraction] | None = Field(
        default=None,
        description="SCALE-Sim style scratchpads: fractions of capacity_bytes held by separate "
        "ifmap (A), filter (B) and ofmap (C) buffers. Set on the innermost level of a "
        "systolic-array chip, GEMM bytes are SCALE-Sim's (operands refetched once they outgrow "
        "half their buffer, every fold's outputs written through to the next level; "
        "hwsim.mapping.systolic). Unset: one buffer, GEMM bytes from the reuse of tiles",
    )

    @field_validator("buffer_split")
    @classmethod
    def _split_fractions(
        cls, value: tuple[float, float, float] | None
    ) -> tuple[float, float, float] | None:
        if value is not None and sum(value) > 1 + 1e-9:
            raise ValueError(f"fractions sum to {sum(value):g}, more than 1")
        return value

    def unit_share_bytes(self, n_units: int) -> float:
        """Bytes of this level one of ``n_units`` compute units has to itself: its own
        instance when ``per_unit``, an even share of a ``shared`` level."""
        return self.capacity_bytes if self.scope == "per_unit" else self.capacity_bytes / n_units


class VectorKernel(_Frozen):
    """How the chip's kernel library implements one element-wise kind: how many
    kernels it launches and how many tensor-sized passes over memory they make in all
    (e.g. an unfused ``silu(a) * b`` is 2 kernels and 5 passes: read a, write t,
    read t, read b, write the output)."""

    kernels: SmallCount
    passes: Multiplier = Field(description="tensor-sized reads plus writes of all its kernels")
    writes: Multiplier | None = Field(
        default=None,
        description="of those passes, the writes (default: one per output); intermediates "
        "written by one kernel and read by the next count here",
    )
    ops_per_element: Multiplier | None = Field(
        default=None,
        description="vector-lane operations per element, where the library's kernel is "
        "instruction bound rather than memory bound",
    )


class SparsityPattern(_Frozen):
    """An N:M structured pattern the sparsity unit accelerates."""

    speedup: Multiplier = Field(description="math-rate multiplier on pruned GEMMs")
    metadata_bits_per_nonzero: BitsPerElement = 0.0
    kernel_overhead_s: LatencyS = Field(
        default=0.0,
        description="fixed time each sparse GEMM adds over its dense kernel (s): the sparse "
        "path's setup, operand reordering and metadata handling that do not shrink with the "
        "math; it is why small pruned GEMMs run slower than dense ones")


SparseFormat = Literal["bitmask", "csr", "coo", "rle"]


class DensitySparsity(_Frozen):
    """A unit for a density-driven pattern (unstructured, or blocks of one size), in
    Sparseloop's terms: a storage format whose metadata costs bytes and decode work, and
    an action on the zeros it finds, ``skip`` (no cycle, no energy) or ``gate`` (the
    cycle is spent, the energy saved). A skipping unit's time follows the density,
    ``max(density, min_density) / efficiency`` of the dense time (never more)."""

    format: SparseFormat = Field(
        default="bitmask",
        description="storage of the nonzeros: bitmask (1 bit per position), csr (an index per "
        "nonzero, a 32-bit pointer per row), coo (two indices per nonzero), rle (a run length "
        "per nonzero)")
    index_bits: BitsPerElement = Field(default=8.0, description="width of one index or run length")
    action: Literal["skip", "gate"] = "skip"
    efficiency: Fraction = Field(
        default=1.0, description="share of the ideal (1/density) speed-up a skipping unit reaches")
    min_density: ZeroToOne = Field(
        default=0.0, description="density below which a skipping unit gains nothing more "
        "(load imbalance, metadata decode bound)")
    decode_ops_per_nonzero: Multiplier = Field(
        default=0.0, description="vector-lane operations to decode the metadata of one nonzero")


class SparsityUnit(_Frozen):
    """Sparsity support: N:M patterns keyed ``"2:4"`` (a constant speed-up, as sparse
    tensor cores have), and density-driven ``unstructured`` and ``blocks`` (keyed by
    block shape, ``"4x4"``) units."""

    patterns: dict[str, SparsityPattern] = Field(default_factory=dict)
    unstructured: DensitySparsity | None = None
    blocks: dict[str, DensitySparsity] = Field(default_factory=dict)

    @field_validator("blocks")
    @classmethod
    def _block_names(cls, value: dict[str, DensitySparsity]) -> dict[str, DensitySparsity]:
        for key in value:
            parts = key.split("x")
            if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
                raise ValueError(f"block {key!r}: expected 'RxC' with positive R and C, e.g. '4x4'")
        return value

    @field_validator("patterns")
    @classmethod
    def _pattern_names(cls, value: dict[str, SparsityPattern]) -> dict[str, SparsityPattern]:
        for key, pattern in value.items():
            parts = key.split(":")
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise ValueError(f"pattern {key!r}: expected 'N:M', e.g. '2:4'")
            n_kept, m_group = int(parts[0]), int(parts[1])
            if not 0 < n_kept < m_group:
                raise ValueError(f"pattern {key!r}: need 0 < N < M")
            if pattern.speedup > m_group / n_kept:
                raise ValueError(
                    f"pattern {key!r}: speedup {pattern.speedup} exceeds M/N = {m_group / n_kept:g}"
                )
        return value


class Chip(_Frozen):
    """One accelerator chip (GPU, TPU, wafer, LPU or a research array)."""

    version: Version = 1
    name: str
    description: str = ""
    compute_units: ComputeUnit
    vector_units: VectorUnit
    memory: dict[str, MemoryLevel] = Field(description="named levels, innermost first")
    sparsity: SparsityUnit | None = None
    vector_kernels: dict[str, VectorKernel] = Field(
        default_factory=dict,
        description="element-wise kinds whose kernels differ from one ideal fused pass",
    )
    idle_power_w: PowerW
    power_limit_w: PowerLimitW | None = Field(
        default=None, description="sustained board power the chip is held to (None: no cap)"
    )
    burst_energy_j: EnergyJ = Field(
        default=0.0,
        description="energy the board may draw above the limit before clocks drop; idle time "
        "and work under the limit repay it (see hwsim.engine.power)",
    )
    power_clock_exponent: ClockExponent = Field(
        default=1.0,
        description="dynamic power ~ clock**exponent when the power limit lowers clock and "
        "voltage together (f V^2: up to 3; 1: clock alone, energy per op unchanged)",
    )
    area_mm2: AreaMm2 = 0.0
    kernel_overhead_s: LatencyS = Field(
        default=0.0, description="fixed device time per kernel (prologue, fill, tail)"
    )
    host_dispatch_s: LatencyS = Field(
        default=0.0,
        description="host time to issue one kernel when a pass runs eagerly (framework "
        "dispatch and launch); graph-captured passes pay launch_overhead_s once instead",
    )
    launch_overhead_s: LatencyS = Field(
        default=0.0,
        description="host launch latency paid once per pass (one standalone kernel or one "
        "CUDA-graph replay); later kernels are enqueued while earlier ones run",
    )

    # --- Technology facts for the area and cost model (hwsim.cost.area) -----------------
    # Optional: timing and energy never read them. A chip without them has no modelled
    # area or cost (the model refuses it, naming the field) rather than a guessed node.
    process_node_nm: float | None = Field(
        default=None, gt=0,
        description="foundry process node as its marketing number (TSMC 4N = 4, N7 = 7)",
    )
    n_serdes_lanes: int | None = Field(
        default=None, ge=0,
        description="off-chip SerDes lanes, TX + RX pairs (NVLink, ICI, PCIe, Ethernet)",
    )
    hbm_generation: Literal["hbm2", "hbm2e", "hbm3", "hbm3e"] | None = Field(
        default=None, description="HBM generation its stacks are sized at (chips with an hbm level)"
    )

    @field_validator("hbm_generation")
    @classmethod
    def _hbm_generation_needs_hbm(cls, value: str | None, info: ValidationInfo) -> str | None:
        memory = info.data.get("memory")  # absent when memory itself was invalid
        if value is not None and memory is not None and not any(n.lower().startswith("hbm") for n in memory):
            raise ValueError("the chip has no memory level named hbm*")
        return value
    # --- end of technology facts ----------------------------------------------------------

    @field_validator("vector_units")
    @classmethod
    def _score_pipeline_on_tensor_cores(cls, value: VectorUnit, info: ValidationInfo) -> VectorUnit:
        compute = info.data.get("compute_units")  # absent when compute_units was invalid
        if value.fused_score_pipeline and compute is not None and compute.kind != "tensor_core":
            raise ValueError("fused_score_pipeline is a tensor-core kernel's: a systolic array's "
                             "fused attention dataflow already runs its softmax beside the products")
        return value

    @field_validator("memory")
    @classmethod
    def _levels_in_order(cls, value: dict[str, MemoryLevel], info: ValidationInfo) -> dict[str, MemoryLevel]:
        # A field validator (not a model validator) so errors carry the path ``memory``.
        if not value:
            raise ValueError("needs at least one memory level")
        compute = info.data.get("compute_units")
        block = compute.attention_block if compute is not None else None
        if compute is not None and block is not None:
            # A declared block's fp32 score tile at least must fit the unit's share of the
            # innermost level (hwsim.mapping.attention.unit_buffer_bytes).
            name, first = next(iter(value.items()))
            share = first.unit_share_bytes(compute.count)
            if 4 * block[0] * block[1] > share:
                raise ValueError(
                    f"compute_units.attention_block {block[0]} x {block[1]}: its fp32 score tile "
                    f"({4 * block[0] * block[1]} B) exceeds the {share:.0f} B per unit of '{name}'")
        seen_shared = None
        for name, level in value.items():
            if level.scope == "shared":
                seen_shared = name
            elif seen_shared is not None:
                raise ValueError(
                    f"memory '{name}': a per_unit level must sit inside (before) "
                    f"the shared level '{seen_shared}'"
                )
        return value

    # Derived views used by mapping and cost -------------------------------------------
    @property
    def level_names(self) -> tuple[str, ...]:
        """Memory level names, innermost first."""
        return tuple(self.memory)

    @property
    def home_level(self) -> str:
        """The outermost level, where weights, KV cache and activations live."""
        return self.level_names[-1]

    def level_capacity_bytes(self, name: str) -> float:
        """Total capacity of level ``name`` over all its instances, in bytes."""
        level = self.memory[name]
        n_inst = self.compute_units.count if level.scope == "per_unit" else 1
        return level.capacity_bytes * n_inst

    def peak_flops_per_s(self, dtype: str = "bf16") -> float:
        """Dense matrix peak for ``dtype`` in FLOP/s (0 if unsupported)."""
        return self.compute_units.peak_flops_per_s(dtype)

    @property
    def supported_dtypes(self) -> tuple[str, ...]:
        """Dtypes the matrix units state a throughput for, in canonical order."""
        return tuple(d for d in DTYPES if d in self.compute_units.flops_per_cycle)
