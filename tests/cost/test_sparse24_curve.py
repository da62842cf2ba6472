"""The 2:4 sparse path's achieved speed-up as a function of GEMM size (H100 preset and
closed forms of the per-kernel overhead)."""

import pytest
import yaml

import hwsim
from hwsim._paths import data_dir
from hwsim.errors import ConfigError


def _ratio(chip, m: int, k: int = 8192, n: int = 8192) -> float:
    dense = hwsim.simulate(hwsim.ops.gemm(m, k, n, "bf16"), chip).latency_s
    return dense / hwsim.simulate(hwsim.ops.gemm(m, k, n, "bf16", sparsity="2:4"), chip).latency_s


@pytest.fixture(scope="module")
def h100():
    return hwsim.load_arch("h100-sxm")


def test_h100_speedup_at_8192_cubed_is_the_measured_1_31(h100):
    assert _ratio(h100, 8192) == pytest.approx(1.31, rel=0.01)


@pytest.mark.parametrize("m", [16, 128, 1024])
def test_h100_small_m_runs_slower_than_dense(h100, m):
    assert _ratio(h100, m) < 1.0


def test_speedup_grows_with_m_and_stays_under_the_math_speedup(h100):
    ratios = [_ratio(h100, m) for m in (1024, 2048, 4096, 8192, 16384)]
    assert ratios == sorted(ratios)
    assert ratios[-1] < h100.sparsity.patterns["2:4"].speedup


def _with_overhead(chip, overhead_s: float):
    unit = chip.sparsity
    pattern = unit.patterns["2:4"].model_copy(update={"kernel_overhead_s": overhead_s})
    return chip.model_copy(update={"sparsity": unit.model_copy(update={"patterns": {"2:4": pattern}})})


def test_overhead_adds_exactly_once_per_gemm(h100):
    w = hwsim.ops.gemm(4096, 4096, 4096, "bf16", sparsity="2:4")
    base = hwsim.simulate(w, _with_overhead(h100, 0.0)).latency_s
    more = hwsim.simulate(w, _with_overhead(h100, 1e-4)).latency_s
    assert more - base == pytest.approx(1e-4, rel=1e-6)


def test_negative_overhead_is_refused(tmp_path):
    data = yaml.safe_load((data_dir("arch_configs") / "h100-sxm.yaml").read_text())
    data["sparsity"]["patterns"]["2:4"]["kernel_overhead_s"] = -1e-4
    path = tmp_path / "neg.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="kernel_overhead_s"):
        hwsim.load_arch(str(path))
