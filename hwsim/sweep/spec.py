"""Sweep specifications: what to vary, how to sample it, what to keep and what to optimise.

A :class:`SweepSpec` is written in YAML (keys = field names) or built in Python::

    name: tpu-like
    arch: systolic-128
    workloads: [{model: llama2-7b, phase: decode}]
    parameters:
      compute_units.rows: [64, 128, 256]                 # a list: these values
      memory.dram.bandwidth_bytes_per_s: {low: 5.0e+10, high: 8.0e+11, log: true, num: 5}
    derived:
      compute_units.flops_per_cycle.bf16: "2 * compute_units.rows * compute_units.cols"
    sampler: {method: grid}                              # grid | random | lhs | sobol
    constraints: ["area_mm2 <= 400", fits]
    objectives: {latency_s: min, energy_per_token_j: min, area_mm2: min}

Parameter paths are dotted paths into the architecture (``memory.sram.capacity_bytes``)
or, prefixed ``workload.``, workload options applied to every workload
(``workload.batch``). Structural problems are found here; problems that need the base
architecture (unknown paths, values that fail validation) by :mod:`hwsim.sweep.check`.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hwsim._yaml import validation_problems
from hwsim.errors import ConfigError
from hwsim.quantities import Count, Flag, Real, Seed, exact_int, real_in
from hwsim.sweep.capacity import CAPACITY_METRICS, CAPACITY_OPTIONS, CapacitySpec

SPEC_VERSION = 1
WORKLOAD_KEYS = ("batch", "context_len", "prompt_len", "new_tokens", "seq_len", "n_layers", "dtype",
                 "attention_impl", "sparsity", "precision", "weight_dtype", "kv_dtype", "attention_window",
                 "attention_density")
WORKLOAD_PREFIX = "workload."
#: Every metric a row carries, usable in objectives and constraints.
METRICS = ("latency_s", "energy_j", "energy_per_token_j", "tokens_per_s", "power_w", "compute_utilization",
           "area_mm2", "chip_cost_usd", "cost_per_mtok_usd", "published_ppl_delta")
#: Metrics usable in objectives and constraints: those above and, filled by capacity
#: workloads only, :data:`~hwsim.sweep.capacity.CAPACITY_METRICS`.
ALL_METRICS = METRICS + CAPACITY_METRICS
Value = bool | int | float | str


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Frozen):
    """One swept parameter: a list of ``values``, or a range ``low``..``high``.

    A range is sampled uniformly (``log: true``: uniformly in its logarithm), rounded
    when ``integer``; grid sampling takes ``num`` points along it (both ends included).
    """

    values: list[Value] | None = None
    low: Real | None = None
    high: Real | None = None
    log: Flag = False
    integer: Flag = False
    num: Count | None = Field(default=None, ge=2, description="grid points along a range")

    @model_validator(mode="before")
    @classmethod
    def _list_shorthand(cls, data: Any) -> Any:
        return {"values": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpec:
        is_range = self.low is not None or self.high is not None
        if self.values is not None:
            if is_range or self.log or self.integer or self.num is not None:
                raise ValueError("give either values or a range (low, high, log, integer, num), not both")
            if not self.values:
                raise ValueError("values is empty: nothing to sweep")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give values: [...] or both low and high")
        if not self.low < self.high:
            raise ValueError(f"empty range: low ({self.low:g}) must be less than high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.integer and math.ceil(self.low) > math.floor(self.high):
            raise ValueError("the range holds no integer")
        return self

    @property
    def is_range(self) -> bool:
        """True for a ``low``..``high`` range, False for a list of values."""
        return self.values is None

    def bounds(self) -> list[Value]:
        """The extreme values this parameter can take (checked against the architecture)."""
        if self.values is not None:
            return list(self.values)
        assert self.low is not None and self.high is not None
        if self.integer:
            return [math.ceil(self.low), math.floor(self.high)]
        return [self.low, self.high]


class WorkloadSpec(_Frozen):
    """A workload evaluated at every point (see :func:`hwsim.load_workload`), or with
    ``phase: capacity`` a capacity search under the ``capacity`` block's SLO
    (:mod:`hwsim.sweep.capacity`)."""

    model: str
    phase: Literal["prefill", "decode", "request", "train", "capacity"] = "decode"
    label: str | None = Field(default=None, description="name in the results' workload column")
    batch: Count | None = None
    context_len: Count | None = None
    prompt_len: Count | None = None
    new_tokens: Count | None = None
    seq_len: Count | None = None
    n_layers: Count | None = None
    dtype: str | None = None
    attention_impl: Literal["flash", "naive"] | None = None
    sparsity: str | None = None
    precision: str | None = Field(default=None, description="a precision scheme (docs/precision.md)")
    weight_dtype: str | None = None
    kv_dtype: str | None = None
    attention_window: Count | None = None
    attention_density: float | None = Field(default=None, gt=0, le=1)
    capacity: CapacitySpec | None = Field(default=None, description="phase capacity: SLO, requests, search")

    @model_validator(mode="after")
    def _capacity_block(self) -> WorkloadSpec:
        if self.phase != "capacity":
            if self.capacity is not None:
                raise ValueError("a capacity block needs phase: capacity "
                                 f"(this workload's phase is {self.phase})")
            return self
        if self.capacity is None:
            raise ValueError("phase capacity needs a capacity block with at least an slo "
                             "(e.g. capacity: {slo: {ttft_s: 0.5}})")
        other = [k for k in self.options() if k not in CAPACITY_OPTIONS]
        if other:
            raise ValueError(f"{', '.join(other)}: not an option of a capacity workload (the request "
                             f"shape is in its capacity block; options: {', '.join(CAPACITY_OPTIONS)})")
        return self

    @property
    def is_capacity(self) -> bool:
        """A capacity search rather than one simulated pass."""
        return self.phase == "capacity"

    def options(self) -> dict[str, Any]:
        """The lowering options this workload sets (None left out)."""
        return {k: getattr(self, k) for k in WORKLOAD_KEYS if getattr(self, k) is not None}

    @property
    def name(self) -> str:
        """``label``, or model, phase and options, e.g. ``llama2-7b decode batch=8``."""
        if self.label:
            return self.label
        return " ".join([self.model, self.phase, *(f"{k}={v}" for k, v in self.options().items())])


class SamplerSpec(_Frozen):
    """How to draw points: every combination (grid) or ``n_points`` samples."""

    method: Literal["grid", "random", "lhs", "sobol"] = "grid"
    n_points: Count | None = None
    seed: Seed = 0

    @model_validator(mode="after")
    def _n_points(self) -> SamplerSpec:
        if self.method == "grid" and self.n_points is not None:
            raise ValueError("grid sampling takes every combination; n_points conflicts with it "
                             "(use random, lhs or sobol to draw n_points)")
        if self.method != "grid" and self.n_points is None:
            raise ValueError(f"{self.method} sampling needs n_points")
        return self


class SearchSpec(_Frozen):
    """Multi-objective search with Optuna instead of sampling."""

    method: Literal["nsga2", "tpe"] = "nsga2"
    n_trials: Count = 100
    seed: Seed = 0
    batch_size: Count = Field(default=8, description="trials asked, evaluated in parallel, then told")
    population_size: Count | None = Field(default=None, ge=2, description="NSGA-II population")


class CostOptions(_Frozen):
    """Options of the cost-per-token model (:func:`hwsim.cost.die_cost.cost_per_million_tokens_usd`)."""

    node_nm: Annotated[float, real_in(0.1, 1e4, "nm", positive=True)] | None = Field(
        default=None, description="technology node; None: the model's")
    lifetime_years: Annotated[float, real_in(1e-3, 1e3, "years", positive=True)] = 4.0
    utilization: Annotated[float, real_in(0.0, 1.0, positive=True, hard=True)] = 1.0
    usd_per_kwh: Annotated[float, real_in(0.0, 1e6, "USD/kWh")] = 0.10


class SweepSpec(_Frozen):
    """A whole sweep: base architecture, workloads, parameters, sampling, constraints,
    objectives (see the module docstring for the YAML form)."""

    version: Annotated[int, BeforeValidator(exact_int)] = SPEC_VERSION
    name: str = "sweep"
    description: str = ""
    arch: str = Field(description="base architecture: preset name or YAML path")
    workloads: list[WorkloadSpec] = Field(min_length=1)
    parameters: dict[str, ParamSpec]
    derived: dict[str, str] = Field(default_factory=dict)
    sampler: SamplerSpec = SamplerSpec()
    search: SearchSpec | None = None
    constraints: list[str] = Field(default_factory=list)
    objectives: dict[str, Literal["min", "max"]] = Field(min_length=1)
    cost: CostOptions = CostOptions()

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != SPEC_VERSION:
            raise ValueError(f"unsupported version {value}; this hwsim reads version {SPEC_VERSION}")
        return value

    @field_validator("parameters")
    @classmethod
    def _some_parameters(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        if not value:
            raise ValueError("no parameters: the space is empty")
        return value

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = [k for k in value if k not in ALL_METRICS]
        if unknown:
            raise ValueError(f"unknown objective {', '.join(unknown)}; known: {', '.join(ALL_METRICS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        both = sorted(set(self.parameters) & set(self.derived))
        if both:
            raise ValueError(f"{', '.join(both)} both sampled (parameters) and derived; choose one")
        names = [w.name for w in self.workloads]
        if len(set(names)) != len(names):
            raise ValueError("two workloads share a name; give them distinct labels")
        if self.sampler.method != "grid":
            nums = [p for p, s in self.parameters.items() if s.num is not None]
            if nums:
                raise ValueError(f"num ({', '.join(nums)}) is for grid sampling only; "
                                 f"{self.sampler.method} draws n_points")
        return self

    @property
    def has_capacity(self) -> bool:
        """Some workload is a capacity search (its rows carry the capacity metrics)."""
        return any(w.is_capacity for w in self.workloads)

    @property
    def param_paths(self) -> list[str]:
        """Sampled then derived parameter paths, in spec order."""
        return [*self.parameters, *self.derived]

    def sweep_id(self, mode: str = "sample") -> str:
        """Identity of the sweep: a hash of the canonical spec and what decides its points
        (the sampler for ``mode="sample"``, the search for ``mode="search"``)."""
        data = self.model_dump(mode="json")
        data.pop("search" if mode == "sample" else "sampler")
        for w in data["workloads"]:  # the ids of sweeps written before capacity workloads stay
            if w.get("capacity") is None:
                w.pop("capacity", None)
        data["mode"] = mode
        # Point ids follow the order of parameters (grid order, sample dimensions), which
        # sorted keys would hide.
        data["order"] = [list(self.parameters), list(self.derived)]
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def spec_from_dict(data: Any, source: str = "<dict>") -> SweepSpec:
    """Validate a mapping (as read from YAML) into a :class:`SweepSpec`.

    Raises
    ------
    ConfigError
        One line per problem, ``source: dotted.path: message``.
    """
    if not isinstance(data, dict):
        raise ConfigError([f"{source}: <root>: expected a mapping of sweep fields"])
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(source, exc)) from None
