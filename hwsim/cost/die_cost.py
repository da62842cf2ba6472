"""Die yield, die and chip cost, and cost per token: pure functions of (chip, table).

Split from :mod:`hwsim.cost.area`, whose modelled die area they price: a good die is a
wafer's cost over its gross dies times their yield, a packaged chip adds its off-chip
memory and package, and a token's cost is capital amortised plus energy (constants in
``hwsim/data/technology.yaml``; ``docs/area_cost.md``).
"""

from __future__ import annotations

import math

from hwsim.arch.model import Chip
from hwsim.cost.area import AreaBreakdown, _check_node, _dram_phy, _interp_node, chip_area, chip_technology
from hwsim.cost.technology import Technology
from hwsim.errors import ConfigError

_YIELD_MODELS = ("murphy", "poisson", "negative_binomial")


def die_yield(area_mm2: float, defect_density_per_cm2: float, model: str = "murphy",
              alpha: float | None = None) -> float:
    """Fraction of dies with no killer defect.

    With ``AD = area x D0`` (area in cm2): Poisson ``exp(-AD)``; Murphy
    ``((1 - exp(-AD)) / AD)^2``; negative binomial ``(1 + AD / alpha)^-alpha``. All give
    1 at zero area and fall with area and defect density.

    Parameters
    ----------
    defect_density_per_cm2
        Killer defects per cm2 (the table's ``defect_density_per_cm2``: 0.1, TSMC N7/N5
        after ramp).
    alpha
        Clustering of the negative-binomial model (the table's ``negative_binomial_alpha``);
        needed for that model only.
    """
    d0 = defect_density_per_cm2
    a = 1.0 if alpha is None and model != "negative_binomial" else alpha
    problems = []
    if not area_mm2 >= 0:
        problems.append(f"area_mm2: must be >= 0, got {area_mm2!r}")
    if not d0 >= 0:
        problems.append(f"defect_density_per_cm2: must be >= 0, got {d0!r}")
    if a is None:
        problems.append("alpha: the negative-binomial model needs its clustering parameter")
    elif not a > 0:
        problems.append(f"alpha: must be > 0, got {a!r}")
    if model not in _YIELD_MODELS:
        problems.append(f"model: unknown {model!r}; expected one of {', '.join(_YIELD_MODELS)}")
    if problems:
        raise ConfigError(problems)
    assert a is not None
    ad = area_mm2 / 100.0 * d0
    if ad == 0:
        return 1.0
    if model == "poisson":
        return math.exp(-ad)
    if model == "murphy":
        return (-math.expm1(-ad) / ad) ** 2
    return (1 + ad / a) ** -a


def dies_per_wafer(area_mm2: float, wafer_diameter_mm: float = 300.0) -> float:
    """Gross dies per wafer, ``pi (d/2)^2 / A - pi d / sqrt(2 A)`` (edge loss), >= 0.

    A continuous estimate (not floored), so sweeps see a smooth cost.
    """
    if not area_mm2 > 0 or not wafer_diameter_mm > 0:
        raise ConfigError([f"area_mm2, wafer_diameter_mm: must be > 0, "
                           f"got {area_mm2!r}, {wafer_diameter_mm!r}"])
    d = wafer_diameter_mm
    return max(0.0, math.pi * (d / 2) ** 2 / area_mm2 - math.pi * d / math.sqrt(2 * area_mm2))


def wafer_cost_usd(node_nm: float, tech: Technology) -> float:
    """Foundry price of one wafer at ``node_nm`` (interpolated, clamped), in USD."""
    return _interp_node(tech.wafer_cost_usd, _check_node(node_nm))


def die_cost_usd(area_mm2: float, node_nm: float, tech: Technology) -> float:
    """Cost of one good die: wafer cost / (dies per wafer x yield), in USD.

    A part too large for one die per wafer is taken as wafer-scale (WSE): it costs one
    wafer, its defects absorbed by redundant cores (yield 1, an assumption).
    """
    wafer = wafer_cost_usd(node_nm, tech)
    dpw = dies_per_wafer(area_mm2, tech.wafer_diameter_mm)
    if dpw < 1.0:
        return wafer
    return wafer / (dpw * die_yield(area_mm2, tech.defect_density_per_cm2))


def chip_cost_usd(chip: Chip, tech: Technology, node_nm: float | None = None, *,
                  area: AreaBreakdown | None = None) -> float:
    """Manufacturing cost of one packaged chip: die (modelled area) + off-chip memory +
    packaging, in USD.

    Memory is HBM capacity at ``hbm_usd_per_gb`` and DDR/GDDR/LPDDR at ``dram_usd_per_gb``
    (GB = 1e9 B); host memory is not counted. A chip with HBM pays a 2.5D interposer
    package, others an organic flip-chip. Test and assembly are not included. Refused, as
    :func:`chip_area` is, for a chip that does not state its technology facts.

    ``area``: the chip's :func:`chip_area` at this node and table when the caller has it
    already (a sweep needs both); computed here otherwise.
    """
    if area is None:
        area = chip_area(chip, tech, node_nm)
    node = chip_technology(chip, node_nm).process_node_nm
    die = die_cost_usd(area.total_mm2, node, tech)
    memory = 0.0
    has_hbm = False
    for name, level in chip.memory.items():
        if name.lower().startswith("hbm"):
            has_hbm = True
            memory += level.capacity_bytes / 1e9 * tech.hbm_usd_per_gb
        elif _dram_phy(name) is not None:
            memory += level.capacity_bytes / 1e9 * tech.dram_usd_per_gb
    package = tech.packaging_usd.interposer_2p5d if has_hbm else tech.packaging_usd.organic_flip_chip
    return die + memory + package


def cost_per_million_tokens_usd(chip_cost_usd: float, power_w: float, tokens_per_s: float, *,
                                lifetime_years: float = 4.0, utilization: float = 1.0,
                                usd_per_kwh: float = 0.10, n_chips: int = 1) -> float:
    """Capital amortised plus energy, per million tokens, in USD.

    ``chip_cost_usd`` and ``power_w`` are per chip; ``tokens_per_s`` is the throughput of
    all ``n_chips`` together while serving::

        capital_usd_per_s = n_chips x chip_cost_usd / (lifetime_years x 365.25 x 86400 x utilization)
        energy_usd_per_s  = n_chips x power_w / 3.6e6 x usd_per_kwh
        cost = 1e6 / tokens_per_s x (capital_usd_per_s + energy_usd_per_s)

    ``utilization`` is the share of the lifetime spent serving: the capital is spread over
    the busy seconds only; energy is counted while serving (idle energy is not modelled).
    Linear in ``1 / tokens_per_s``. No PUE, cooling, host or network cost.
    """
    problems = [f"{name}: must be > 0, got {value!r}" for name, value in (
        ("tokens_per_s", tokens_per_s), ("lifetime_years", lifetime_years),
        ("utilization", utilization), ("n_chips", n_chips)) if not value > 0]
    problems += [f"{name}: must be >= 0, got {value!r}" for name, value in (
        ("chip_cost_usd", chip_cost_usd), ("power_w", power_w), ("usd_per_kwh", usd_per_kwh))
        if not value >= 0]
    if utilization > 1:
        problems.append(f"utilization: must be <= 1, got {utilization!r}")
    if problems:
        raise ConfigError(problems)
    busy_s = lifetime_years * 365.25 * 86400 * utilization
    capital_usd_per_s = n_chips * chip_cost_usd / busy_s
    energy_usd_per_s = n_chips * power_w / 3.6e6 * usd_per_kwh
    return 1e6 / tokens_per_s * (capital_usd_per_s + energy_usd_per_s)
