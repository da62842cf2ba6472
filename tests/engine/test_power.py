"""The power limit: an energy bucket of ``burst_energy_j`` that over-limit ops spend and
idle time and under-limit ops refill; once it is empty an op runs at the clock that draws
exactly the limit, with dynamic power ~ clock**power_clock_exponent (closed forms on
back-to-back GEMMs)."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.arch.load import with_overrides
from hwsim.arch.model import Chip
from hwsim.workload.graph import OperatorGraph, Pass, Segment, Workload
from hwsim.workload.ops import Elementwise, MatMul

REL = 1e-6


def _chip(burst_j: float, alpha: float = 1.0) -> Chip:
    chip = hwsim.load_arch("h100-sxm")
    return chip.model_copy(update={"burst_energy_j": burst_j, "launch_overhead_s": 0.0,
                                   "power_clock_exponent": alpha})


def _repeat(ops: dict[str, object], repeat: int, eager: bool = False) -> Workload:
    g = OperatorGraph()
    prev = None
    for name, op in ops.items():
        g.add_op(name, op, after=[prev] if prev else [])  # type: ignore[arg-type]
        prev = name
    return Workload("t", "op", (Pass("p", (Segment("s", g, repeat),), eager=eager),), {}, {"dtype": "bf16"})


GEMM = MatMul(4096, 4096, 4096, "bf16")
COPY = Elementwise("copy", 4096, 4096, "bf16")


def _alone(chip: Chip, op: object) -> tuple[float, float]:
    """(latency without a power limit, dynamic energy) of one op."""
    free = chip.model_copy(update={"power_limit_w": None})
    r = hwsim.simulate(_repeat({"a": op}, 1), free)
    return r.latency_s, r.energy_j - chip.idle_power_w * r.latency_s


def _headroom(chip: Chip) -> float:
    return chip.power_limit_w - chip.idle_power_w  # type: ignore[operator]


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("burst_j", [0.0, 0.15, 1.0, 100.0])
def test_back_to_back_gemms_closed_form(burst_j: float, fold: bool) -> None:
    """With energy per op independent of clock (exponent 1), n identical over-limit GEMMs
    take n*t plus the energy beyond the bucket at the headroom power:
    t_n = n t + max(0, n (E - H t) - B) / H."""
    chip = _chip(burst_j)
    t, e = _alone(chip, GEMM)
    headroom = _headroom(chip)
    assert e > headroom * t, "the test GEMM must draw more than the limit"
    n = 12
    r = hwsim.simulate(_repeat({"a": GEMM}, n), chip, fold=fold)
    expected = n * t + max(0.0, n * (e - headroom * t) - burst_j) / headroom
    assert r.latency_s == pytest.approx(expected, rel=REL)


def test_lone_op_within_bucket_runs_at_full_speed() -> None:
    chip = _chip(10.0, alpha=3.0)
    t, e = _alone(chip, GEMM)
    r = hwsim.simulate(_repeat({"a": GEMM}, 1), chip)
    assert r.latency_s == pytest.approx(t, rel=REL)
    assert r.energy_j == pytest.approx(e + chip.idle_power_w * t, rel=REL)


@pytest.mark.parametrize("fold", [True, False])
def test_under_limit_kernels_refill_the_bucket(fold: bool) -> None:
    """A copy between GEMMs (well under the limit) repays the headroom it leaves unused,
    r = H t_c - E_c, which the next GEMM spends: with the bucket drained by the first
    GEMM, t_n = n (t_g + t_c) + (n (E_g - H t_g) - B - (n - 1) r) / H."""
    t_g, e_g = _alone(_chip(0.0), GEMM)
    t_c, e_c = _alone(_chip(0.0), COPY)
    headroom = _headroom(_chip(0.0))
    over, refill = e_g - headroom * t_g, headroom * t_c - e_c
    burst = 0.6 * over
    chip = _chip(burst)
    assert over > burst > refill > 0.0, "the closed form needs these"
    n = 6
    r = hwsim.simulate(_repeat({"a": GEMM, "b": COPY}, n), chip, fold=fold)
    expected = n * (t_g + t_c) + (n * over - burst - (n - 1) * refill) / headroom
    assert r.latency_s == pytest.approx(expected, rel=REL)


def test_work_whose_average_is_under_the_limit_is_not_slowed() -> None:
    """GEMMs separated by enough under-limit work run at full clock however many there are,
    once the bucket covers one GEMM's excess."""
    t_g, e_g = _alone(_chip(0.0), GEMM)
    t_c, e_c = _alone(_chip(0.0), COPY)
    chip = _chip(2.0 * (e_g - _headroom(_chip(0.0)) * t_g))
    k = 1 + int((e_g - _headroom(chip) * t_g) / (_headroom(chip) * t_c - e_c))  # copies to repay one GEMM
    ops = {"g": GEMM} | {f"c{i}": COPY for i in range(k)}
    n = 40
    r = hwsim.simulate(_repeat(ops, n), chip)
    assert r.latency_s == pytest.approx(n * (t_g + k * t_c), rel=REL)


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0])
def test_throttled_clock_follows_the_power_law(alpha: float) -> None:
    """With no home-memory energy and no fixed overhead, a GEMM held to the limit runs at
    s = (H / P1)**(1/alpha) of full clock: P(s) = P1 s**alpha = H."""
    chip = with_overrides(_chip(0.0, alpha), {
        "memory.hbm.read_energy_pj_per_byte": 0.0, "memory.hbm.write_energy_pj_per_byte": 0.0,
        "kernel_overhead_s": 0.0})
    t, e = _alone(chip, GEMM)
    s = (_headroom(chip) / (e / t)) ** (1.0 / alpha)
    n = 5
    r = hwsim.simulate(_repeat({"a": GEMM}, n), chip)
    assert r.latency_s == pytest.approx(n * t / s, rel=1e-6)
    # At the lower clock each GEMM also costs less energy: s**(alpha - 1) of it.
    assert r.energy_j - chip.idle_power_w * r.latency_s == pytest.approx(n * e * s ** (alpha - 1), rel=1e-6)


def test_a_steeper_power_law_throttles_less() -> None:
    """The same over-limit work slows less when lowering the clock also lowers the voltage."""
    w = _repeat({"a": GEMM}, 20)
    times = [hwsim.simulate(w, _chip(0.15, a)).latency_s for a in (1.0, 2.0, 3.0)]
    assert times[0] > times[1] > times[2]


@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_more_burst_energy_is_never_slower(alpha: float) -> None:
    w = hwsim.load_workload("llama2-7b", phase="prefill", batch=1, prompt_len=1024, n_layers=4)
    times = [hwsim.simulate(w, _chip(b, alpha)).latency_s for b in (0.0, 0.1, 0.5, 2.0, 50.0)]
    assert all(a >= b * (1 - 1e-12) for a, b in zip(times, times[1:], strict=False))
    free = hwsim.simulate(w, _chip(0.0).model_copy(update={"power_limit_w": None})).latency_s
    assert times[-1] == pytest.approx(free, rel=REL)


@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_power_limit_holds_average_power_of_long_runs(alpha: float) -> None:
    """A long compute-bound run draws exactly the limit, plus the burst it started with."""
    chip = _chip(0.15, alpha)
    r = hwsim.simulate(_repeat({"a": GEMM}, 400), chip)
    assert r.energy_j == pytest.approx(chip.power_limit_w * r.latency_s + 0.15, rel=REL)


def test_folded_and_unfolded_runs_agree_on_time_and_energy() -> None:
    """Folding repeated layers changes nothing the power walk computes."""
    chip = hwsim.load_arch("h100-sxm")
    w = hwsim.load_workload("llama2-7b", phase="prefill", batch=1, prompt_len=2048, n_layers=8)
    a, b = hwsim.simulate(w, chip, fold=True), hwsim.simulate(w, chip, fold=False)
    assert a.latency_s == pytest.approx(b.latency_s, rel=1e-9)
    assert a.energy_j == pytest.approx(b.energy_j, rel=1e-9)
