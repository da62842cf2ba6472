"""The datacenter cost model: closed forms (TCO, racks, PUE), monotonicity, refused inputs,
and the shipped facility and node presets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim
from hwsim.cost.datacenter import (
    YEAR_S,
    Datacenter,
    Node,
    cooling_overhead_w,
    facility_power_w,
    node_power_w,
    rack_fit,
    sustained_chip_power_w,
    tco,
)
from hwsim.datacenter import list_datacenters, list_nodes, load_datacenter, load_node
from hwsim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2] / "arch_configs" / "datacenter"
BOUGHT = Node(name="n", chip="b200-sxm", n_chips=8, host_power_w=5700, network_power_w=600, rack_units=10,
              price_usd=100_000, network_usd=20_000)
RENTED = Node(name="r", chip="tpu-v6e", n_chips=8, chip_tdp_w=350, rack_units=4, usd_per_chip_hour=2.0)
DC = Datacenter(pue=1.5, usd_per_kwh=0.10, rack_power_w=40_000, rack_units=42, lifetime_years=4,
                utilization=0.5)


def test_tco_of_a_bought_node_by_hand() -> None:
    """$120k over 4 years, 6 kW average IT x PUE 1.5 at $0.10/kWh, 1000 tok/s half the time: $2.4013/Mtok."""
    cost = tco(BOUGHT, DC, n_nodes=1, tokens_per_s=1000, serving_w=10_000, idle_w=2_000)
    assert cost.capex_usd_per_s == pytest.approx(120_000 / 126_230_400, rel=1e-12)  # 4 x 365.25 x 86400 s
    assert cost.it_power_w == pytest.approx(6_000)  # 0.5 x 10 kW + 0.5 x 2 kW
    assert cost.facility_power_w == pytest.approx(9_000)
    assert cost.energy_usd_per_s == pytest.approx(9.0 * 0.10 / 3600)  # 9 kW at $0.10/kWh
    # (9.5064263e-4 + 2.5e-4) $/s over 500 tokens/s of lifetime
    assert cost.usd_per_million_tokens == pytest.approx(2.4012853, rel=1e-6)
    assert cost.capex_share + cost.energy_share == pytest.approx(1.0)
    assert cost.rental_share == 0.0


def test_tco_of_a_rented_node_is_its_rate() -> None:
    """8 chips at $2/chip-hour serving 2000 tok/s 80 % of the time: $2.7778/Mtok, no energy added."""
    dc = DC.model_copy(update={"utilization": 0.8})
    cost = tco(RENTED, dc, n_nodes=1, tokens_per_s=2000, serving_w=4_000, idle_w=1_000)
    assert cost.usd_per_million_tokens == pytest.approx(1e6 * 16 / 3600 / 1600)
    assert cost.energy_usd_per_s == 0.0 and cost.capex_usd_per_s == 0.0 and cost.rental_share == 1.0


def test_a_fraction_of_a_node_costs_its_fraction() -> None:
    """Half a node serving half the tokens costs the same per token as the whole node."""
    whole = tco(BOUGHT, DC, n_nodes=1, tokens_per_s=1000, serving_w=10_000, idle_w=2_000)
    half = tco(BOUGHT, DC, n_nodes=0.5, tokens_per_s=500, serving_w=5_000, idle_w=1_000)
    assert half.usd_per_million_tokens == pytest.approx(whole.usd_per_million_tokens)
    assert YEAR_S == 365.25 * 86400


def test_facility_power_and_cooling_overhead() -> None:
    """IT x PUE at the meter; (PUE - 1) x IT for cooling and power distribution."""
    assert facility_power_w(1000.0, DC) == pytest.approx(1500.0)
    assert cooling_overhead_w(1000.0, DC) == pytest.approx(500.0)


def test_rack_count_closed_form() -> None:
    """A 14.3 kW, 10U node: a 40 kW 42U rack holds floor(40/14.3) = 2 (power binds); a 100 kW rack
    floor(42/10) = 4 (space binds); a 10 kW node fills a 40 kW rack exactly with 4."""
    node_w = node_power_w(BOUGHT, 1000.0)
    assert node_w == pytest.approx(14_300.0)
    fit = rack_fit(BOUGHT, node_w, DC)
    assert (fit.nodes_per_rack, fit.chips_per_rack, fit.binding) == (2, 16, "power")
    assert fit.rack_power_density_w == pytest.approx(28_600.0)
    big = rack_fit(BOUGHT, node_w, DC.model_copy(update={"rack_power_w": 100_000.0}))
    assert (big.nodes_per_rack, big.binding) == (4, "space")
    assert rack_fit(BOUGHT, 10_000.0, DC).nodes_per_rack == 4
    assert rack_fit(BOUGHT, 50_000.0, DC).nodes_per_rack == 0  # a node over the rack's budget


def test_sustained_power_is_the_smaller_limit() -> None:
    """The chip's power limit and the node's TDP: the smaller holds; neither is an error."""
    assert sustained_chip_power_w(RENTED, None) == 350.0
    assert sustained_chip_power_w(RENTED, 300.0) == 300.0
    with pytest.raises(ConfigError, match="chip_tdp_w"):
        sustained_chip_power_w(BOUGHT, None)


@settings(max_examples=60, deadline=None)
@given(pue=st.floats(1.0, 2.9), extra=st.floats(0.0, 1.0), kwh=st.floats(0.0, 1.0), more=st.floats(0.0, 1.0),
       tokens=st.floats(1.0, 1e6), factor=st.floats(1.0, 100.0), w=st.floats(0.0, 1e5))
def test_cost_is_monotone(pue: float, extra: float, kwh: float, more: float, tokens: float, factor: float,
                          w: float) -> None:
    """A higher PUE or electricity price is never cheaper; more tokens/s is never dearer per token."""
    dc = DC.model_copy(update={"pue": pue, "usd_per_kwh": kwh})

    def cost(d: Datacenter, t: float) -> float:
        return tco(BOUGHT, d, n_nodes=1, tokens_per_s=t, serving_w=w, idle_w=w / 2).usd_per_million_tokens

    base = cost(dc, tokens)
    assert cost(dc.model_copy(update={"pue": min(pue + extra, 3.0)}), tokens) >= base
    assert cost(dc.model_copy(update={"usd_per_kwh": kwh + more}), tokens) >= base
    assert cost(dc, tokens * factor) <= base * (1 + 1e-12)


@pytest.mark.parametrize("kwargs", [{"tokens_per_s": 0.0}, {"tokens_per_s": float("nan")},
                                    {"n_nodes": 0.0}, {"serving_w": -1.0}, {"idle_w": float("inf")}])
def test_impossible_tco_inputs_are_refused(kwargs: dict[str, float]) -> None:
    """A zero or NaN throughput, no nodes, negative or infinite power: ConfigError naming the argument."""
    args = {"n_nodes": 1.0, "tokens_per_s": 10.0, "serving_w": 100.0, "idle_w": 10.0} | kwargs
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        tco(BOUGHT, DC, **args)


@pytest.mark.parametrize(("fields", "path"), [({"pue": 0.9}, "pue"), ({"usd_per_kwh": -0.1}, "usd_per_kwh"),
                                              ({"utilization": 0.0}, "utilization"),
                                              ({"utilization": 1.5}, "utilization"),
                                              ({"rack_power_w": 0}, "rack_power_w"),
                                              ({"lifetime_years": float("inf")}, "lifetime_years"),
                                              ({"pue_typo": 1.2}, "pue_typo")])
def test_bad_datacenter_fields_are_config_errors(fields: dict[str, float], path: str) -> None:
    """Impossible facility values (PUE below 1, utilisation outside (0, 1]...) name their field."""
    with pytest.raises(ConfigError, match=rf"datacenter: {path}:"):
        load_datacenter(fields)


def test_bad_files_name_the_file_and_path(tmp_path: Path) -> None:
    """A datacenter or node YAML with bad values: ConfigError with file: dotted.path: message."""
    bad = tmp_path / "dc.yaml"
    bad.write_text("version: 1\npue: 0.5\nrack_units: 0\n")
    with pytest.raises(ConfigError) as err:
        load_datacenter(bad)
    assert any(str(bad) in p and ": pue:" in p for p in err.value.problems)
    assert any(": rack_units:" in p for p in err.value.problems)
    node = tmp_path / "node.yaml"
    node.write_text("version: 1\nname: x\nchip: h100-sxm\nn_chips: 8\nrack_units: 8\nprice_usd: 1.0e+5\n"
                    "usd_per_chip_hour: 2.0\n")
    with pytest.raises(ConfigError, match="exactly one of price_usd"):
        load_node(node)
    with pytest.raises(ConfigError, match="unknown datacenter preset"):
        load_datacenter("no-such-facility")
    with pytest.raises(ConfigError, match="no node preset"):
        load_node("no-such-chip")


def test_every_shipped_preset_loads_and_every_number_has_a_source() -> None:
    """datacenter/*.yaml and arch_configs/datacenter/nodes/*.yaml load; each node names a shipped chip; every
    numeric line carries a source key, a derivation (D) or the word assumption."""
    assert {"default", "hyperscale", "enterprise-air"} <= set(list_datacenters())
    assert set(list_nodes()) >= {"b200-sxm", "mi300x", "gaudi3", "tpu-v6e", "wse3", "xeon-8480"}
    for name in list_datacenters():
        assert load_datacenter(name).name == name
    for chip in list_nodes():
        node = load_node(chip)
        assert node.chip == chip and chip in hwsim.list_archs()
    for path in [*ROOT.glob("*.yaml"), *ROOT.glob("nodes/*.yaml")]:
        for line in path.read_text().splitlines():
            words = line.startswith(("version", "description", "name"))
            if re.match(r"^\w+:\s*[-+0-9.]", line) and not words:
                assert re.search(r"#.*(\[[A-Z0-9-]+\]|\bD\b|assumption)", line), f"{path.name}: {line}"
