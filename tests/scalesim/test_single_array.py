"""single_array chips, the buffer_split field, and the systolic closed forms checked
without SCALE-Sim: hwsim.simulate reports the closed-form cycles, the O(1) buffer
model equals an element-by-element replay of SCALE-Sim's estimate-mode read buffer."""

from __future__ import annotations

import math
import random

import pytest

import hwsim
from hwsim.arch import Chip, arch_from_dict, single_array, with_overrides
from hwsim.cost import cost_op
from hwsim.errors import ConfigError
from hwsim.mapping.systolic import (
    _repeated_groups,
    buffer_capacity_words,
    systolic_gemm_cycles,
    systolic_gemm_traffic,
    systolic_level_bytes,
)
from hwsim.workload import MatMul

WS, OS, IS = "weight_stationary", "output_stationary", "input_stationary"


@pytest.mark.parametrize("dataflow", [WS, OS, IS])
def test_single_array_is_a_valid_chip(dataflow: str) -> None:
    """One systolic array, a shared sram split in three and a dram; it survives a
    round trip through the YAML schema."""
    chip = single_array(rows=32, cols=16, dataflow=dataflow, sram_bytes=3 * 2**20, dram_bytes_per_s=2e10)
    assert isinstance(chip, Chip)
    unit = chip.compute_units
    assert (unit.kind, unit.rows, unit.cols, unit.count) == ("systolic_array", 32, 16, 1)
    assert unit.dataflow == dataflow
    assert chip.level_names == ("sram", "dram") and chip.home_level == "dram"
    sram = chip.memory["sram"]
    assert sram.scope == "shared" and sram.capacity_bytes == 3 * 2**20
    assert sram.buffer_split == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert chip.memory["dram"].bandwidth_bytes_per_s == 2e10
    assert chip.peak_flops_per_s("bf16") == 2 * 32 * 16 * 1e9
    assert arch_from_dict(chip.model_dump(), "single") == chip


def test_single_array_separate_buffer_sizes() -> None:
    """Three sizes become the sram capacity and its split; bad sizes are refused."""
    chip = single_array(sram_bytes=(6144 << 10, 6144 << 10, 2048 << 10))
    assert chip.memory["sram"].capacity_bytes == 14336 << 10
    assert chip.memory["sram"].buffer_split == pytest.approx((6 / 14, 6 / 14, 2 / 14))
    for bad in [(1, 2), (1, 0, 1)]:
        with pytest.raises(ConfigError, match="sram_bytes"):
            single_array(sram_bytes=bad)


@pytest.mark.parametrize("split", [[0.5, 0.5, 0.5], [0.5, 0.0, 0.5], [-0.1, 0.5, 0.5]])
def test_buffer_split_is_validated(split: list[float]) -> None:
    """Fractions must be positive and sum to at most 1; the error names the field."""
    data = single_array().model_dump()
    data["memory"]["sram"]["buffer_split"] = split
    with pytest.raises(ConfigError) as info:
        arch_from_dict(data, "bad.yaml")
    assert "memory.sram.buffer_split" in str(info.value)


def test_presets_keep_one_buffer() -> None:
    """No shipped preset declares SCALE-Sim scratchpads: their GEMM bytes are unchanged."""
    for name in hwsim.list_archs():
        assert all(level.buffer_split is None for level in hwsim.load_arch(name).memory.values())


@pytest.mark.parametrize("dataflow", [WS, OS, IS])
@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (128, 128, 128), (300, 129, 200), (1, 4096, 4096),
                                          (512, 512, 512)])
@pytest.mark.parametrize("double_buffered", [False, True])
def test_simulate_reports_closed_form_cycles(
    dataflow: str, m: int, k: int, n: int, double_buffered: bool
) -> None:
    """hwsim.simulate(gemm, single_array) reports the closed-form stall-free cycles, and
    with a wide DRAM its latency is those cycles at the clock."""
    chip = single_array(rows=128, cols=128, dataflow=dataflow, sram_bytes=12 * 2**20,
                        dram_bytes_per_s=1e15, double_buffered=double_buffered)
    cycles, _ = systolic_gemm_cycles(m, k, n, 128, 128, dataflow, double_buffered=double_buffered)
    result = hwsim.simulate(hwsim.ops.gemm(m, k, n, dtype="bf16"), chip)
    frame = result.to_frame()
    assert frame["compute_cycles"].tolist() == [cycles]
    assert result.latency_s == pytest.approx(cycles / 1e9, rel=1e-9)


def test_cycles_per_fold_by_dataflow() -> None:
    """WS and IS pay the stationary load: 2R + C + T - 2 per fold; OS: R + C + T - 2."""
    assert systolic_gemm_cycles(20, 30, 40, 8, 8, WS) == (4 * 5 * (16 + 8 + 20 - 2), 20)
    assert systolic_gemm_cycles(20, 30, 40, 8, 8, OS) == (3 * 5 * (8 + 8 + 30 - 2), 15)
    assert systolic_gemm_cycles(20, 30, 40, 8, 8, IS) == (4 * 3 * (16 + 8 + 40 - 2), 12)


def test_sram_counts_closed_form() -> None:
    """SCALE-Sim's SRAM reads and writes per dataflow (DETAILED_ACCESS_REPORT)."""
    m, k, n, r, c = 20, 30, 40, 8, 8
    ws = systolic_gemm_traffic(m, k, n, r, c, WS, 1 << 20, 1 << 20)
    assert (ws.ifmap_sram_reads, ws.filter_sram_reads, ws.ofmap_sram_writes) == (m * k * 5, k * n, m * n * 4)
    os_ = systolic_gemm_traffic(m, k, n, r, c, OS, 1 << 20, 1 << 20)
    assert (os_.ifmap_sram_reads, os_.filter_sram_reads, os_.ofmap_sram_writes) == (
        m * k * 5, k * n * 3, m * n + 15 * (r + c))
    is_ = systolic_gemm_traffic(m, k, n, r, c, IS, 1 << 20, 1 << 20)
    assert (is_.ifmap_sram_reads, is_.filter_sram_reads, is_.ofmap_sram_writes) == (
        m * k, k * n * 3, m * n * 4)
    # Everything fits: DRAM reads each operand once; the ofmap writes every partial sum.
    assert (ws.ifmap_dram_reads, ws.filter_dram_reads, ws.ofmap_dram_writes) == (m * k, k * n, m * n * 4)
    assert os_.ofmap_dram_writes == m * n


def _replay(groups: list[tuple[int, int, int]], cap: int) -> int:
    """Element-by-element replay of SCALE-Sim's estimate-mode read buffer: take every
    word not seen since the last swap; swap (forget all) after ``cap`` new words."""
    seen: set[tuple[int, int]] = set()
    fetched = 0
    gid = 0
    for count, size, passes in groups:
        for _ in range(count):
            for _ in range(passes):
                for word in range(size):
                    if (gid, word) in seen:
                        continue
                    seen.add((gid, word))
                    fetched += 1
                    if len(seen) == cap:
                        seen = set()
            gid += 1
    return fetched


def test_buffer_model_equals_replay() -> None:
    """The O(1) group formulas equal the replay for random group sequences."""
    rng = random.Random(3)
    for _ in range(400):
        cap = rng.randint(1, 60)
        groups = [(rng.randint(1, 9), rng.randint(1, 80), rng.randint(1, 4))
                  for _ in range(rng.randint(1, 3))]
        total, x = 0, 0
        for count, size, passes in groups:
            words, x = _repeated_groups(x, count, size, passes, cap)
            total += words
        assert total == _replay(groups, cap), (cap, groups)


def test_buffer_capacity_counts_whole_sets() -> None:
    """A buffer of W words holds 50 sets of floor(W / 100) words between swaps."""
    assert buffer_capacity_words(64 * 1024) == 50 * 655
    assert buffer_capacity_words(99) == 0


def test_b_shared_batch_reads_the_filter_once_when_it_fits() -> None:
    """A batch sharing B fetches it once when it fits its buffer, every time when not."""
    one = systolic_gemm_traffic(64, 256, 256, 32, 32, WS, 1 << 20, 1 << 20)
    fits = systolic_gemm_traffic(64, 256, 256, 32, 32, WS, 1 << 20, 1 << 20, batch=4, b_shared=True)
    assert fits.filter_dram_reads == one.filter_dram_reads
    assert fits.ifmap_dram_reads == 4 * one.ifmap_dram_reads
    tight = systolic_gemm_traffic(64, 256, 256, 32, 32, WS, 1 << 20, 2000, batch=4, b_shared=True)
    assert tight.filter_dram_reads == 4 * 256 * 256


def test_opt_in_scratchpads_on_a_preset() -> None:
    """A preset whose innermost level declares scratchpads gets SCALE-Sim bytes there;
    an outer level without them only takes the finished outputs."""
    chip = with_overrides(hwsim.load_arch("tpu-v4"), {"memory.vmem.buffer_split": (0.4, 0.4, 0.2)})
    op = MatMul(1024, 2048, 4096)
    cost = cost_op(op, chip)
    expected = systolic_level_bytes(chip, op.m, op.k, op.n, op.dtype)
    assert [(t.level, t.read_bytes, t.write_bytes) for t in cost.traffic] == list(expected)
    u = chip.compute_units
    inner = systolic_gemm_traffic(op.m, op.k, op.n, u.rows, u.cols, u.dataflow,
                                  64 * 2**20 * 0.4 / 2, 64 * 2**20 * 0.4 / 2, 64 * 2**20 * 0.2 / 2)
    assert expected[0] == ("vmem", 2 * inner.sram_reads, 2 * inner.ofmap_sram_writes)
    assert expected[1] == ("cmem", 2 * inner.dram_reads, 2 * inner.ofmap_dram_writes)
    assert expected[2][2] == 2 * op.m * op.n
    assert inner.ofmap_dram_writes == op.m * op.n * math.ceil(op.k / u.rows) + u.cols - 1
