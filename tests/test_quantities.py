"""Numbers in chips, systems and plans are strict, finite and physically plausible."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import BaseModel, ValidationError

import hwsim
from hwsim import quantities as q
from hwsim.arch import arch_from_dict, load_arch, with_overrides
from hwsim.arch.system import load_system, system_from_dict
from hwsim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

#: quantity -> (its lowest and highest accepted value, its unit in messages)
RANGES = {
    "FrequencyHz": (1e3, 1e12, "Hz"), "BandwidthBytesPerS": (1e3, 1e18, "B/s"),
    "CapacityBytes": (1.0, 1e18, "B"), "EnergyPj": (0.0, 1e6, "pJ"), "EnergyJ": (0.0, 1e6, "J"),
    "LatencyS": (0.0, 1.0, "s"), "PowerW": (0.0, 1e6, "W"), "PowerLimitW": (1e-3, 1e6, "W"),
    "AreaMm2": (0.0, 1e6, "mm2"), "PerCycle": (1e-3, 1e9, "per cycle"), "Multiplier": (1e-3, 1e6, ""),
    "BitsPerElement": (0.0, 1e3, "bit"),
}


def _model(annotation: Any) -> type[BaseModel]:
    class M(BaseModel):
        x: annotation  # type: ignore[valid-type]

    return M


def _error(model: type[BaseModel], value: Any) -> str:
    with pytest.raises(ValidationError) as info:
        model(x=value)
    return str(info.value.errors()[0]["msg"])


@pytest.mark.parametrize("name", sorted(RANGES))
def test_each_quantity_takes_its_range_and_refuses_the_rest(name: str) -> None:
    """Both ends of the range load (ints too); booleans, strings, inf, NaN and values just
    outside the range are refused, the message naming the range and unit."""
    lo, hi, unit = RANGES[name]
    model = _model(getattr(q, name))
    for ok in (lo if lo > 0 else 0.0, hi, int(hi), np.float64(hi)):
        assert model(x=ok).x == float(ok)
    assert "boolean" in _error(model, True)
    assert "string" in _error(model, "1e9")
    assert "finite" in _error(model, math.inf) and "finite" in _error(model, math.nan)
    assert "plausible range" in _error(model, hi * 10) and unit in _error(model, hi * 10)
    below = _error(model, lo / 10 if lo > 0 else -1.0)
    assert "plausible range" in below or "greater than" in below


def test_fractions_and_counts() -> None:
    """A fraction is in (0, 1] (said as a definition, not plausibility); a count is a whole
    number (128.0 reads as 128, 2.5 and True do not)."""
    frac, count = _model(q.Fraction), _model(q.UnitCount)
    assert frac(x=1).x == 1.0
    assert "less than or equal to 1" in _error(frac, 1.2)
    assert "greater than 0" in _error(frac, 0.0)
    assert count(x=128.0).x == 128 and type(count(x=128.0).x) is int
    assert count(x=np.int64(7)).x == 7
    assert "integer" in _error(count, 2.5)
    assert "boolean" in _error(count, True)
    assert "finite" in _error(count, math.inf)
    assert "plausible range" in _error(count, 10**12)


def _h100() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "arch_configs" / "h100-sxm.yaml").read_text())


@pytest.mark.parametrize(("dotted", "value", "words"), [
    ("compute_units.clock_hz", True, "expected a number, got the boolean true"),
    ("compute_units.clock_hz", math.inf, "expected a finite number, got inf"),
    ("compute_units.energy_per_mac_pj.bf16", -5.0, "greater than or equal to 0"),
    ("compute_units.energy_per_mac_pj.bf16", math.nan, "finite"),
    ("compute_units.flops_per_cycle.bf16", -math.inf, "finite"),
    ("compute_units.achievable_fraction_by_dtype.fp8", 0.0, "greater than 0"),
    ("memory.hbm.bandwidth_bytes_per_s", 1e308, "1e+308 is outside the plausible range [1000, 1e+18] B/s"),
    ("memory.hbm.bandwidth_bytes_per_s", 1e-300, "1e-300 is outside the plausible range"),
    ("memory.hbm.read_energy_pj_per_byte", math.inf, "finite"),
    ("memory.hbm.capacity_bytes", "80 GB", "got the string '80 GB'"),
    ("compute_units.count", "132", "got the string '132'"),
    ("compute_units.count", True, "boolean"),
    ("version", True, "got the boolean true"),
    ("version", 1.0, "expected an integer"),
    ("version", [[1]], "expected an integer"),
    ("idle_power_w", 1e9, "outside the plausible range [0, 1e+06] W"),
    ("power_limit_w", 1e-300, "outside the plausible range"),
])
def test_impossible_chip_values_are_refused_by_dotted_path(dotted, value, words) -> None:
    """The impossible values the issue found (and their kin) fail with their full path,
    the per-dtype key included."""
    data = _h100()
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(ConfigError) as info:
        arch_from_dict(data, "h100.yaml")
    assert any(line.startswith(f"h100.yaml: {dotted}: ") and words in line for line in info.value.problems), \
        info.value.problems


@pytest.mark.parametrize(("dotted", "value"), [
    ("fabrics[0].link.bandwidth_bytes_per_s", 1e-300), ("fabrics[0].link.latency_s", math.inf),
    ("fabrics[0].link.energy_pj_per_bit", math.inf), ("fabrics[0].links_per_neighbor", True),
    ("fabrics[0].in_network_reduction", 1), ("fabrics[0].dims[0]", 8.5), ("version", True),
    ("host.bandwidth_bytes_per_s", 1e308), ("host.capacity_bytes", "2 TB"),
])
def test_impossible_system_values_are_refused(dotted, value) -> None:
    data = yaml.safe_load((ROOT / "arch_configs" / "systems" / "dgx-h100.yaml").read_text())
    fabric = data["fabrics"][0]
    targets = {"fabrics[0].link.": fabric["link"], "fabrics[0].dims[0]": fabric["dims"],
               "fabrics[0].": fabric, "host.": data["host"], "": data}
    prefix = next(p for p in targets if dotted.startswith(p))
    node, key = targets[prefix], dotted.removeprefix(prefix)
    node[0 if isinstance(node, list) else key] = value
    with pytest.raises(ConfigError) as info:
        system_from_dict(data, "dgx.yaml")
    assert any(line.startswith(f"dgx.yaml: {dotted}: ") for line in info.value.problems), info.value.problems


def test_too_many_chips_is_refused() -> None:
    """Fabrics whose product exceeds 1e9 chips are refused (1e18 would overflow floats of
    per-chip sums)."""
    system = load_system("dgx-h100")
    data = system.model_dump()
    data["fabrics"] = [dict(data["fabrics"][0], name=f"f{i}", dims=(1000,), in_network_reduction=False,
                            in_network_reduction_latency_s=None)
                       for i in range(4)]
    with pytest.raises(ConfigError, match="fabrics: the fabrics join 1e\\+12 chips"):
        system_from_dict(data)


def test_yaml_lists_still_validate_into_tuples() -> None:
    """Strict numbers did not make containers strict: YAML lists become tuple fields."""
    system = load_system("tpu-v4-64")
    assert isinstance(system.fabrics, tuple) and isinstance(system.fabrics[0].dims, tuple)
    data = _h100()
    data["memory"]["smem"]["buffer_split"] = [0.25, 0.25, 0.5]
    assert arch_from_dict(data).memory["smem"].buffer_split == (0.25, 0.25, 0.5)


@pytest.mark.parametrize("name", hwsim.list_archs())
def test_every_shipped_chip_is_inside_the_bounds(name: str) -> None:
    """Each preset loads and survives a round trip through validation (so every value,
    dict entries included, is inside its quantity's range)."""
    chip = load_arch(name)
    assert with_overrides(chip, {}) == chip


@pytest.mark.parametrize("name", hwsim.list_systems())
def test_every_shipped_system_is_inside_the_bounds(name: str) -> None:
    system = load_system(name)
    assert system_from_dict(system.model_dump()) == system


def test_bounds_keep_the_worst_chip_finite() -> None:
    """A chip at the extremes the bounds allow (slowest memory, highest energies and
    power) still simulates to finite numbers: the bounds are what stops overflow."""
    worst = with_overrides(load_arch("h100-sxm"), {
        "memory.hbm.bandwidth_bytes_per_s": 1e3, "memory.hbm.read_energy_pj_per_byte": 1e6,
        "memory.hbm.write_energy_pj_per_byte": 1e6, "compute_units.clock_hz": 1e3,
        "compute_units.energy_per_mac_pj.bf16": 1e6, "idle_power_w": 1e6, "power_limit_w": 1e-3,
        "kernel_overhead_s": 1.0,
    })
    result = hwsim.simulate(hwsim.ops.gemm(4096, 4096, 4096), worst)
    values = [result.latency_s, result.energy_j, *result.energy_breakdown_j.values()]
    assert all(math.isfinite(v) and v > 0 for v in values)
