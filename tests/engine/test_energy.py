"""Energy accounting: totals, breakdown, per-op rows and idle power agree."""

from __future__ import annotations

import pytest

import hwsim

CASES = [
    pytest.param("h100-sxm", "llama2-7b", dict(phase="decode", batch=8, context_len=2048, n_layers=6),
                 id="h100-decode"),
    pytest.param("h100-sxm", "llama2-7b", dict(phase="prefill", batch=1, prompt_len=512, n_layers=6),
                 id="h100-prefill"),
    pytest.param("tpu-v4", "llama2-7b",
                 dict(phase="request", batch=1, prompt_len=128, new_tokens=4, n_layers=4),
                 id="tpu-v4-request"),
    pytest.param("tpu-v4", "bert-large", dict(phase="train", batch=8, seq_len=128, n_layers=5),
                 id="tpu-v4-train"),
    pytest.param("systolic-128", "llama2-7b", dict(phase="decode", batch=4, context_len=512, n_layers=4),
                 id="systolic-decode"),
]
REL = 1e-9


def _run(arch: str, model: str, kw: dict[str, object]) -> tuple[hwsim.Chip, hwsim.Result]:
    chip = hwsim.load_arch(arch)
    return chip, hwsim.simulate(hwsim.load_workload(model, **kw), chip)


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_energy_is_sum_of_breakdown(arch: str, model: str, kw: dict[str, object]) -> None:
    """energy_j equals the sum of energy_breakdown_j, which has compute, every level and idle."""
    chip, result = _run(arch, model, kw)
    expected_keys = {"compute_j", "idle_j", *(f"{name}_j" for name in chip.level_names)}
    assert set(result.energy_breakdown_j) == expected_keys
    assert all(v >= 0 for v in result.energy_breakdown_j.values())
    assert result.energy_j == pytest.approx(sum(result.energy_breakdown_j.values()), rel=REL)


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_idle_energy_is_idle_power_times_latency(arch: str, model: str, kw: dict[str, object]) -> None:
    """Static energy is the chip's idle power held for the whole latency."""
    chip, result = _run(arch, model, kw)
    assert result.energy_breakdown_j["idle_j"] == pytest.approx(chip.idle_power_w * result.latency_s, rel=REL)


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_frame_energy_plus_idle_is_total(arch: str, model: str, kw: dict[str, object]) -> None:
    """The per-op energy_j column plus idle energy adds up to the run's energy_j."""
    _, result = _run(arch, model, kw)
    frame = result.to_frame()
    assert (frame["energy_j"] > 0).all()
    total = frame["energy_j"].sum() + result.energy_breakdown_j["idle_j"]
    assert total == pytest.approx(result.energy_j, rel=REL)


@pytest.mark.parametrize(("arch", "model", "kw"), CASES)
def test_level_energy_is_bytes_times_energy_per_byte(arch: str, model: str, kw: dict[str, object]) -> None:
    """Each level's energy lies between its bytes times the cheaper and the dearer of its
    read and write energy per byte."""
    chip, result = _run(arch, model, kw)
    for name in chip.level_names:
        level = chip.memory[name]
        n_bytes = result.bytes_by_level[f"{name}_bytes"]
        lo, hi = sorted((level.read_energy_pj_per_byte, level.write_energy_pj_per_byte))
        energy = result.energy_breakdown_j[f"{name}_j"]
        assert n_bytes * lo * 1e-12 * (1 - REL) <= energy <= n_bytes * hi * 1e-12 * (1 + REL), name


def test_energy_per_token_is_energy_over_tokens() -> None:
    """energy_per_token_j is energy_j over the tokens generated (decode: one per sequence)."""
    _, result = _run("h100-sxm", "llama2-7b", dict(phase="decode", batch=8, context_len=2048, n_layers=6))
    assert result.tokens == 8
    assert result.energy_per_token_j == pytest.approx(result.energy_j / 8, rel=REL)
