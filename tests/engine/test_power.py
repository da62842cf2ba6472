"""The power limit: an energy bucket of ``burst_energy_j`` that over-limit ops spend and
only idle time refills (closed forms on back-to-back GEMMs)."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.arch.model import Chip
from hwsim.workload.graph import OperatorGraph, Pass, Segment, Workload
from hwsim.workload.ops import Elementwise, MatMul

REL = 1e-6


def _chip(burst_j: float) -> Chip:
    chip = hwsim.load_arch("h100-sxm")
    return chip.model_copy(update={"burst_energy_j": burst_j, "launch_overhead_s": 0.0})


def _repeat(ops: dict[str, object], repeat: int, eager: bool = False) -> Workload:
    g = OperatorGraph()
    prev = None
    for name, op in ops.items():
        g.add_op(name, op, after=[prev] if prev else [])  # type: ignore[arg-type]
        prev = name
    return Workload("t", "op", (Pass("p", (Segment("s", g, repeat),), eager=eager),), {}, {"dtype": "bf16"})


GEMM = MatMul(4096, 4096, 4096, "bf16")


def _alone(chip: Chip, op: object) -> tuple[float, float]:
    """(latency without a power limit, dynamic energy) of one op."""
    free = chip.model_copy(update={"power_limit_w": None})
    r = hwsim.simulate(_repeat({"a": op}, 1), free)
    return r.latency_s, r.energy_j - chip.idle_power_w * r.latency_s


@pytest.mark.parametrize("fold", [True, False])
@pytest.mark.parametrize("burst_j", [0.0, 0.15, 1.0, 100.0])
def test_back_to_back_gemms_closed_form(burst_j: float, fold: bool) -> None:
    """n identical over-limit GEMMs take n*t plus the energy beyond the bucket at the
    headroom power: t_n = n t + max(0, n (E - H t) - B) / H."""
    chip = _chip(burst_j)
    t, e = _alone(chip, GEMM)
    headroom = chip.power_limit_w - chip.idle_power_w  # type: ignore[operator]
    assert e > headroom * t, "the test GEMM must draw more than the limit"
    n = 12
    r = hwsim.simulate(_repeat({"a": GEMM}, n), chip, fold=fold)
    expected = n * t + max(0.0, n * (e - headroom * t) - burst_j) / headroom
    assert r.latency_s == pytest.approx(expected, rel=REL)


def test_lone_op_within_bucket_runs_at_full_speed() -> None:
    chip = _chip(10.0)
    t, _ = _alone(chip, GEMM)
    assert hwsim.simulate(_repeat({"a": GEMM}, 1), chip).latency_s == pytest.approx(t, rel=REL)


def test_memory_bound_kernels_do_not_refill_the_bucket() -> None:
    """Clocks once lowered stay low while kernels keep coming: a copy between GEMMs (well
    under the limit) adds its own time and no relief."""
    chip = _chip(0.0)
    copy = Elementwise("copy", 4096, 4096, "bf16")
    t_g, e_g = _alone(chip, GEMM)
    t_c, _ = _alone(chip, copy)
    headroom = chip.power_limit_w - chip.idle_power_w  # type: ignore[operator]
    n = 6
    r = hwsim.simulate(_repeat({"a": GEMM, "b": copy}, n), chip)
    assert r.latency_s == pytest.approx(n * (e_g / headroom + t_c), rel=REL)


def test_more_burst_energy_is_never_slower() -> None:
    w = hwsim.load_workload("llama2-7b", phase="prefill", batch=1, prompt_len=1024, n_layers=4)
    times = [hwsim.simulate(w, _chip(b)).latency_s for b in (0.0, 0.1, 0.5, 2.0, 50.0)]
    assert all(a >= b * (1 - 1e-12) for a, b in zip(times, times[1:], strict=False))
    free = hwsim.simulate(w, _chip(0.0).model_copy(update={"power_limit_w": None})).latency_s
    assert times[-1] == pytest.approx(free, rel=REL)


def test_power_limit_holds_average_power_of_long_runs() -> None:
    """A long compute-bound run draws exactly the limit, plus the burst it started with."""
    chip = _chip(0.15)
    r = hwsim.simulate(_repeat({"a": GEMM}, 400), chip)
    assert r.energy_j == pytest.approx(chip.power_limit_w * r.latency_s + 0.15, rel=REL)
