"""Python callers get ConfigError (not TypeError or pydantic's ValidationError) for bad
arguments, and a SimulationError rather than a non-physical number from the cost layer."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

import hwsim
from hwsim.arch import single_array
from hwsim.cost.model import LevelTraffic, check_cost, make_cost
from hwsim.cost.power import PowerShape, limit_clock
from hwsim.errors import ConfigError, SimulationError


@pytest.mark.parametrize(("kwargs", "line"), [
    ({"tp": "2"}, "plan: tp: expected a number, got the string '2'"),
    ({"tp": True}, "plan: tp: expected a number, got the boolean true"),
    ({"dp": 0}, "plan: dp: must be greater than 0, got 0"),
    ({"grad_bucket_bytes": math.inf}, "plan: grad_bucket_bytes: expected a finite number, got inf"),
    ({"zero_stage": True}, "plan: zero_stage: expected a number, got the boolean true"),
    ({"sequence_parallel": 1}, "plan: sequence_parallel: expected true or false, got 1"),
    ({"tpp": 2}, "plan: tpp: Extra inputs are not permitted; did you mean tp?"),
    ({"dp": 4, "ep": 3}, "plan: <root>: ep=3 must divide dp=4"),
])
def test_plan_from_python_raises_config_error(kwargs, line) -> None:
    """A bad Plan built in Python is a ConfigError with ``plan: field: problem`` lines."""
    with pytest.raises(ConfigError) as info:
        hwsim.Plan(**kwargs)
    assert any(p.startswith(line) for p in info.value.problems), info.value.problems


def test_plan_stays_a_frozen_model() -> None:
    plan = hwsim.Plan(tp=2, offload=["weights"])
    assert plan.offload == ("weights",) and plan.n_chips == 2
    with pytest.raises(Exception, match="frozen"):
        plan.tp = 4  # type: ignore[misc]


def test_unknown_workload_option_names_the_closest() -> None:
    """``batchsize=4`` is a ConfigError that names the option and suggests ``batch``."""
    with pytest.raises(ConfigError) as info:
        hwsim.load_workload("llama2-7b", phase="decode", batchsize=4)
    assert str(info.value).startswith("load_workload: batchsize: unknown option; did you mean batch?")


@pytest.mark.parametrize(("kwargs", "line"), [
    ({"plan": "tp2"}, "plan: expected a Plan"),
    ({"plan": {"tp": 2}}, "plan: expected a Plan"),
    ({"lm_head": "yes"}, "lm_head: expected true or false"),
    ({"batch": True}, "batch: must be a positive integer"),
])
def test_bad_workload_values_are_config_errors(kwargs, line) -> None:
    with pytest.raises(ConfigError, match=f"workload llama2-7b: {line}"):
        hwsim.load_workload("llama2-7b", phase="train", **kwargs)


@pytest.mark.parametrize(("call", "line"), [
    (lambda: hwsim.ops.elementwise("gelu", 5), "elementwise: shape: expected (rows, cols), got 5"),
    (lambda: hwsim.ops.elementwise("gelu", None), "elementwise: shape: expected (rows, cols), got None"),
    (lambda: hwsim.ops.attention(1, 8, 8, 1, 8, 64, is_causal="no"), "attention: is_causal: expected"),
    (lambda: hwsim.ops.gemm(True, 2, 3), "gemm: m: must be a positive integer, got True"),
    (lambda: hwsim.load_arch(None), "None: unknown architecture preset or file"),
    (lambda: hwsim.load_system(5), "5: unknown system preset or file"),
])
def test_single_op_and_loader_misuse_is_a_config_error(call, line) -> None:
    with pytest.raises(ConfigError) as info:
        call()
    assert str(info.value).startswith(line), str(info.value)


def test_single_array_arguments_are_checked_by_path() -> None:
    """single_array validates its chip as a mapping, so a bad argument names its field."""
    with pytest.raises(ConfigError) as info:
        single_array(rows=0, clock_hz=math.inf)
    assert "single_array: compute_units.rows: must be greater than 0, got 0" in info.value.problems
    assert "single_array: compute_units.clock_hz: expected a finite number, got inf" in info.value.problems
    with pytest.raises(ConfigError, match="single_array: sram_bytes: expected one size or three"):
        single_array(sram_bytes=(1, 2))


def _cost(**changes: float):
    chip = hwsim.load_arch("h100-sxm")
    args = {"flops": 1e9, "compute_cycles": 1e3, "compute_s": 1e-6, "n_kernels": 1, "compute_energy_j": 1e-3,
            "traffic": tuple(LevelTraffic(n, 1e6, 1e6) for n in chip.level_names)}
    return check_cost(make_cost(chip, **(args | changes), detail="tile 128x128"))


@pytest.mark.parametrize(("field", "value"), [
    ("compute_s", math.inf), ("compute_energy_j", -1.0), ("flops", math.nan), ("compute_cycles", -math.inf),
])
def test_a_cost_that_is_not_physical_fails_loudly(field, value) -> None:
    """check_cost (which cost_op applies to the mapping it keeps) refuses a non-finite or
    negative value, naming it and the mapping."""
    assert _cost().latency_s > 0
    with pytest.raises(SimulationError, match=rf"{field}={value!r}.*\(mapping: tile 128x128\)"):
        _cost(**{field: value})


def test_negative_traffic_is_named_by_level() -> None:
    with pytest.raises(SimulationError, match=r"hbm.read_bytes=-5.0"):
        _cost(traffic=(LevelTraffic("smem", 1.0, 1.0), LevelTraffic("l2", 1.0, 1.0),
                       LevelTraffic("hbm", -5.0, 1.0)))


def test_cost_op_names_the_op_whose_cost_is_not_physical() -> None:
    """A chip built past the loaders (model_construct skips validation) with a NaN clock:
    the op is refused naming the chip, the op and the value (here by the power solver's
    guard, which ranks the candidate mappings first)."""
    chip = hwsim.load_arch("h100-sxm")
    units = chip.compute_units.model_construct(**{**dict(chip.compute_units), "clock_hz": math.nan})
    broken = chip.model_construct(**{**dict(chip), "compute_units": units})
    with pytest.raises(SimulationError, match=r"h100-sxm: matmul MatMul\(m=64, k=64, n=64.*nan"):
        hwsim.simulate(hwsim.ops.gemm(64, 64, 64), broken)
    uncapped = broken.model_construct(**{**dict(broken), "power_limit_w": None})
    with pytest.raises(SimulationError, match=r"h100-sxm: matmul MatMul\(m=64.*compute_s=nan"):
        hwsim.simulate(hwsim.ops.gemm(64, 64, 64), uncapped)


def test_a_result_that_is_not_physical_fails_loudly() -> None:
    """Result refuses non-finite or negative totals, naming the field."""
    result = hwsim.simulate(hwsim.ops.gemm(128, 128, 128), "h100-sxm")
    assert result.latency_s > 0
    with pytest.raises(SimulationError, match=r"latency_s=inf"):
        replace(result, latency_s=math.inf)
    with pytest.raises(SimulationError, match=r"energy_breakdown_j.compute_j=-1.0"):
        replace(result, energy_breakdown_j={**result.energy_breakdown_j, "compute_j": -1.0})
    with pytest.raises(SimulationError, match=r"bytes_by_level.hbm_bytes=nan"):
        replace(result, bytes_by_level={**result.bytes_by_level, "hbm_bytes": math.nan})


def test_power_solver_refuses_a_nan_instead_of_crashing() -> None:
    """A NaN reaching the clock solver is a SimulationError, not scipy's ValueError."""
    shape = PowerShape(duration_s=1.0, overhead_s=0.0, core_s=1.0, core_j=math.nan, home_j=0.0)
    with pytest.raises(SimulationError, match="power limit: the op's energy above the limit is not finite"):
        limit_clock(shape, headroom=100.0, alpha=2.0)
    fine = PowerShape(duration_s=1.0, overhead_s=0.0, core_s=1.0, core_j=500.0, home_j=0.0)
    assert 0.1 <= limit_clock(fine, headroom=100.0, alpha=2.0) < 1.0
