"""Mixed systems: a prefill pool of one chip kind and a decode pool of another, from a
system YAML and from Python, with the KV handed over the system's pool link."""

from __future__ import annotations

from pathlib import Path

import pytest

import hwsim
from hwsim.arch.system import system_from_dict
from hwsim.errors import ConfigError

SMALL = {"n_layers": 2}
KV_BYTES_PER_TOKEN = 2 * 2 * 4096 * 2  # llama2-7b, 2 layers: K and V, 4096 wide, bf16


def _mixed(bandwidth: float) -> hwsim.System:
    return system_from_dict({"name": "h100-prefill-mi300x-decode",
                             "pools": {"prefill": "dgx-h100", "decode": "mi300x-8"},
                             "pool_link": {"bandwidth_bytes_per_s": bandwidth, "latency_s": 1e-5,
                                           "energy_pj_per_bit": 5.0}})


def test_mixed_system_loads_from_yaml(tmp_path: Path) -> None:
    """A system YAML naming two pools of different chips loads, and serving on it runs
    the prefill pool on H100s and the decode pool on MI300Xs."""
    path = tmp_path / "mixed.yaml"
    path.write_text("version: 1\nname: mixed\npools:\n  prefill: dgx-h100\n  decode: mi300x-8\n"
                    "pool_link:\n  bandwidth_bytes_per_s: 5.0e+10\n  latency_s: 1.0e-5\n"
                    "  energy_pj_per_bit: 5.0\n")
    system = hwsim.load_system(path)
    assert system.pools["prefill"].chip.name == "h100-sxm"
    assert system.pools["decode"].chip.name == "mi300x"
    assert system.chip.name == "h100-sxm"  # the prefill pool's, for simulate()
    served = hwsim.serve(hwsim.Requests.offline(16, 256, 16), path, model="llama2-7b", **SMALL)
    pools = {p["role"]: p for p in served.config["pools"]}
    assert pools["prefill"]["arch"] == "dgx-h100" and pools["decode"]["arch"] == "mi300x-8"
    assert served.energy_breakdown_j["transfer_j"] > 0
    assert (served.requests["e2e_s"] > served.requests["ttft_s"]).all()


def test_kv_transfer_over_the_pool_link_is_costed() -> None:
    """One request: the E2E difference between two pool-link bandwidths is its KV bytes
    (whole 16-token blocks of the prompt) times the difference of 1/bandwidth."""
    requests = hwsim.Requests.offline(1, 512, 8)
    slow, fast = 1e9, 1e10
    runs = {bw: hwsim.serve(requests, _mixed(bw), model="llama2-7b", **SMALL) for bw in (slow, fast)}
    e2e = {bw: r.requests.iloc[0]["e2e_s"] for bw, r in runs.items()}
    moved = (e2e[slow] - e2e[fast]) / (1 / slow - 1 / fast)
    assert moved * (1 + 1e-6) >= 32 * 16 * KV_BYTES_PER_TOKEN
    assert moved <= 33 * 16 * KV_BYTES_PER_TOKEN * (1 + 1e-6)
    # The link's own energy per bit, not the pools' fabrics'.
    assert runs[slow].energy_breakdown_j["transfer_j"] == pytest.approx(moved * 8 * 5.0e-12, rel=1e-6)


def test_pool_options_pick_the_mixed_systems_pools() -> None:
    """From Python: pool options without an arch take the system's pool of their role."""
    served = hwsim.serve(hwsim.Requests.offline(8, 128, 8), _mixed(5e10), model="llama2-7b",
                         pools=[{"role": "prefill", "replicas": 2, "plan": {"tp": 2}},
                                {"role": "decode", "replicas": 1, "plan": {"tp": 4}}], **SMALL)
    pools = {p["role"]: p for p in served.config["pools"]}
    assert pools["prefill"]["arch"] == "dgx-h100" and pools["prefill"]["plan"] == "tp2"
    assert pools["decode"]["arch"] == "mi300x-8" and pools["decode"]["plan"] == "tp4"
    assert served.output_tokens_per_s > 0


def test_a_mixed_system_needs_both_pools() -> None:
    with pytest.raises(ConfigError, match="needs a 'prefill' and a 'decode' pool"):
        system_from_dict({"name": "half", "pools": {"prefill": "dgx-h100"}})
    with pytest.raises(ConfigError, match="pools.decode"):
        system_from_dict({"name": "bad", "pools": {"prefill": "dgx-h100", "decode": "no-such-system"}})


def test_serving_streams_placed_weights_and_checks_the_tier() -> None:
    """Half the weights on NVMe: serving streams them every iteration (slower than all in
    HBM); a tier the system lacks is a ConfigError naming the placement path."""
    requests = hwsim.Requests.offline(8, 256, 16)
    plan = hwsim.Plan(placement={"weights": {"hbm": 0.5, "nvme": 0.5}})
    placed = hwsim.serve(requests, "dgx-h100-tiered", model="llama2-7b", plan=plan, **SMALL)
    resident = hwsim.serve(requests, "dgx-h100-tiered", model="llama2-7b", **SMALL)
    assert placed.output_tokens_per_s < resident.output_tokens_per_s
    with pytest.raises(ConfigError, match=r"placement\.weights\.nvme: the system has no tier 'nvme'"):
        hwsim.serve(requests, "dgx-h100", model="llama2-7b", plan=plan, **SMALL)
