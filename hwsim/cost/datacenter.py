"""The datacenter view: facility power, racks and total cost of ownership per token.

Pure closed forms of a :class:`Datacenter` (the facility: PUE, electricity price, rack
power and space, lifetime, utilisation) and a :class:`Node` (how chips of one kind are
housed: chips per server, the server's host and network power, rack units, price or rental
rate). No files are read here; :mod:`hwsim.datacenter` loads the shipped presets.

The model
---------
- **Facility power** = IT power x PUE; the cooling and power-distribution overhead is
  ``(PUE - 1) x IT power`` (PUE = total facility power / IT power, The Green Grid).
- **Racks** are provisioned on nameplate power: a node draws ``n_chips x sustained chip
  power + host + network`` at most, and a rack holds
  ``min(floor(rack_power_w / node_w), floor(rack_units / node_rack_units))`` nodes; the
  smaller term names the binding limit (``power`` or ``space``).
- **Sustained thermal limit** of a chip: the smaller of the chip's ``power_limit_w`` and the
  node's ``chip_tdp_w`` (either may be missing, not both).
- **Cost per million output tokens** of a deployment that serves ``tokens_per_s`` while busy,
  for a ``utilization`` share of its life::

      capex_usd_per_s   = (node price + network share) x n_nodes / (lifetime_years x year_s)
      it_w              = utilization x serving_w + (1 - utilization) x idle_w
      energy_usd_per_s  = it_w x PUE / 3.6e6 x usd_per_kwh
      rental_usd_per_s  = usd_per_chip_hour x n_chips / 3600      (cloud: instead of both)
      usd_per_mtok      = 1e6 x (capex + energy + rental) / (tokens_per_s x utilization)

  A node given by a rental rate (a cloud TPU) pays neither capex nor energy: the rate
  includes them. Staff, facility construction, software and financing are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hwsim.errors import ConfigError

#: Seconds in a year of 365.25 days.
YEAR_S = 365.25 * 86400.0
_J_PER_KWH = 3.6e6

PositiveW = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegW = Annotated[float, Field(ge=0, allow_inf_nan=False)]
NonNegUsd = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Datacenter(_Frozen):
    """A facility's parameters (YAML keys = field names; sources in the shipped presets)."""

    version: Literal[1] = 1
    name: str = "datacenter"
    description: str = ""
    pue: float = Field(default=1.58, ge=1.0, le=3.0, allow_inf_nan=False,
                       description="power usage effectiveness: facility power / IT power")
    usd_per_kwh: float = Field(default=0.0806, ge=0.0, le=10.0, allow_inf_nan=False,
                               description="electricity price at the meter, USD per kWh")
    rack_power_w: PositiveW = Field(default=40_000.0, description="power a rack may draw (nameplate)")
    rack_units: int = Field(default=42, gt=0, le=100, description="usable rack units per rack")
    lifetime_years: float = Field(default=4.0, gt=0, le=20, allow_inf_nan=False,
                                  description="years the capital is amortised over")
    utilization: float = Field(default=0.7, gt=0, le=1, allow_inf_nan=False,
                               description="share of the lifetime spent serving at the measured rate")


class Node(_Frozen):
    """How chips of one kind are housed: one server (or one system, as a CS-3)."""

    version: Literal[1] = 1
    name: str
    description: str = ""
    chip: str = Field(description="the chip preset these nodes hold")
    n_chips: int = Field(gt=0, le=1024, description="chips per node")
    chip_tdp_w: PositiveW | None = Field(
        default=None, description="sustained (thermal design) power per chip; default: power_limit_w")
    host_power_w: NonNegW = Field(default=0.0, description="CPUs, DRAM, fans, storage at full load")
    network_power_w: NonNegW = Field(default=0.0, description="NICs and the node's share of the switches")
    rack_units: float = Field(gt=0, le=100, allow_inf_nan=False, description="rack units the node occupies")
    price_usd: NonNegUsd | None = Field(default=None, description="purchase price of the node, host included")
    network_usd: NonNegUsd = Field(default=0.0, description="the node's share of the cluster network")
    usd_per_chip_hour: NonNegUsd | None = Field(
        default=None, description="rental rate (cloud only): includes capex, energy and facility")

    @model_validator(mode="after")
    def _one_price(self) -> Node:
        if (self.price_usd is None) == (self.usd_per_chip_hour is None):
            raise ValueError(f"node '{self.name}': give exactly one of price_usd (bought) and "
                             "usd_per_chip_hour (rented)")
        if self.usd_per_chip_hour is not None and self.network_usd:
            raise ValueError(f"node '{self.name}': network_usd: a rented node's rate includes its network")
        return self

    @property
    def rented(self) -> bool:
        return self.usd_per_chip_hour is not None


def _check(problems: list[str], name: str, value: float, *, lower: float = 0.0, strict: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and (
        value > lower if strict else value >= lower)
    if not ok:
        problems.append(f"{name}: must be a finite number {'>' if strict else '>='} {lower:g}, got {value!r}")


def sustained_chip_power_w(node: Node, chip_power_limit_w: float | None) -> float:
    """The sustained thermal limit of one chip (W): the smaller of the chip's power limit
    and the node's ``chip_tdp_w``.

    Raises
    ------
    ConfigError
        If neither is known.
    """
    known = [w for w in (chip_power_limit_w, node.chip_tdp_w) if w is not None]
    if not known:
        raise ConfigError([f"node '{node.name}': chip_tdp_w: the chip '{node.chip}' has no power_limit_w; "
                           "give its thermal design power"])
    return float(min(known))


def node_power_w(node: Node, chip_w: float) -> float:
    """Nameplate power of a node (W): ``n_chips x chip_w + host + network``."""
    problems: list[str] = []
    _check(problems, "chip_w", chip_w)
    if problems:
        raise ConfigError(problems)
    return node.n_chips * chip_w + node.host_power_w + node.network_power_w


def facility_power_w(it_power_w: float, dc: Datacenter) -> float:
    """Power at the utility meter (W) for ``it_power_w`` of IT load: IT x PUE."""
    problems: list[str] = []
    _check(problems, "it_power_w", it_power_w)
    if problems:
        raise ConfigError(problems)
    return it_power_w * dc.pue


def cooling_overhead_w(it_power_w: float, dc: Datacenter) -> float:
    """Cooling and power-distribution overhead (W): ``(PUE - 1) x IT power``."""
    return facility_power_w(it_power_w, dc) - it_power_w


@dataclass(frozen=True)
class RackFit:
    """How many nodes one rack holds, and what limits it (``power`` or ``space``)."""

    nodes_per_rack: int
    chips_per_rack: int
    binding: Literal["power", "space"]
    node_power_w: float
    rack_power_density_w: float
    """IT power of a full rack at nameplate (W)."""


def rack_fit(node: Node, node_w: float, dc: Datacenter) -> RackFit:
    """Nodes (and chips) per rack under the rack's power budget and its rack units.

    Raises
    ------
    ConfigError
        If ``node_w`` is not a positive number of watts.
    """
    problems: list[str] = []
    _check(problems, "node_power_w", node_w, strict=True)
    if problems:
        raise ConfigError(problems)
    by_power = math.floor(dc.rack_power_w / node_w * (1 + 1e-12))  # x(1+eps): exact fits are fits
    by_space = math.floor(dc.rack_units / node.rack_units * (1 + 1e-12))
    n = min(by_power, by_space)
    return RackFit(n, n * node.n_chips, "power" if by_power <= by_space else "space", node_w, n * node_w)


@dataclass(frozen=True)
class TCO:
    """Cost of a deployment per second of its life and per million output tokens (USD)."""

    capex_usd_per_s: float
    energy_usd_per_s: float
    rental_usd_per_s: float
    it_power_w: float
    facility_power_w: float
    usd_per_million_tokens: float
    capex_share: float
    energy_share: float
    rental_share: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def tco(node: Node, dc: Datacenter, *, n_nodes: float, tokens_per_s: float, serving_w: float,
        idle_w: float) -> TCO:
    """Total cost of ownership of ``n_nodes`` nodes serving ``tokens_per_s`` output tokens/s
    while busy (formulas: module docstring).

    Parameters
    ----------
    n_nodes : float
        Nodes the deployment uses (a fraction for part of a node, e.g. one socket of two).
    tokens_per_s : float
        Output tokens per second of the whole deployment while serving.
    serving_w, idle_w : float
        IT power of the whole deployment (chips, host, network) while serving and idle, W.

    Raises
    ------
    ConfigError
        For a non-positive throughput or node count, or negative power.
    """
    problems: list[str] = []
    _check(problems, "n_nodes", n_nodes, strict=True)
    _check(problems, "tokens_per_s", tokens_per_s, strict=True)
    _check(problems, "serving_w", serving_w)
    _check(problems, "idle_w", idle_w)
    if problems:
        raise ConfigError(problems)
    u = dc.utilization
    it_w = u * serving_w + (1.0 - u) * idle_w
    if node.rented:
        assert node.usd_per_chip_hour is not None
        capex = energy = 0.0
        rental = node.usd_per_chip_hour * node.n_chips * n_nodes / 3600.0
    else:
        assert node.price_usd is not None
        capex = (node.price_usd + node.network_usd) * n_nodes / (dc.lifetime_years * YEAR_S)
        energy = it_w * dc.pue / _J_PER_KWH * dc.usd_per_kwh
        rental = 0.0
    total = capex + energy + rental
    per_mtok = 1e6 * total / (tokens_per_s * u)
    share = (lambda x: x / total) if total > 0 else (lambda x: 0.0)
    return TCO(capex, energy, rental, it_w, it_w * dc.pue, per_mtok,
               share(capex), share(energy), share(rental))
