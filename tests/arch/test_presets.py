"""Every shipped architecture preset loads and matches its datasheet in closed form."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hwsim._paths import data_dir
from hwsim._yaml import read_yaml
from hwsim.arch import Chip, list_archs, load_arch

PRESETS = list_archs()
EXPECTED_PRESETS = {
    "a100-sxm",
    "groq-lpu",
    "h100-sxm",
    "h200-sxm",
    "systolic-128",
    "tpu-v4",
    "tpu-v5e",
    "wse2",
}


def test_expected_presets_are_shipped() -> None:
    """list_archs() names at least the presets the project documents."""
    assert set(PRESETS) >= EXPECTED_PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads(name: str) -> None:
    """Each preset validates into a Chip whose name equals its file stem."""
    chip = load_arch(name)
    assert isinstance(chip, Chip)
    assert chip.name == name
    assert chip.version == 1


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_by_path(name: str) -> None:
    """Loading a preset by its file path gives the same Chip as loading it by name."""
    path = data_dir("arch_configs") / f"{name}.yaml"
    assert load_arch(path) == load_arch(str(path)) == load_arch(name)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_is_self_consistent(name: str) -> None:
    """Each preset has 16/8-bit math, an energy per listed dtype and the largest home level."""
    chip = load_arch(name)
    units = chip.compute_units
    assert set(units.flops_per_cycle) & {"bf16", "fp16", "int8"}
    assert set(units.energy_per_mac_pj) == set(units.flops_per_cycle)
    home = chip.level_capacity_bytes(chip.home_level)
    assert all(home >= chip.level_capacity_bytes(lvl) for lvl in chip.level_names)


@pytest.mark.parametrize(
    ("name", "dtype", "datasheet_flops_per_s"),
    [
        ("h100-sxm", "bf16", 989.4e12),
        ("h100-sxm", "fp8", 1978.9e12),
        ("h200-sxm", "bf16", 989.4e12),
        ("a100-sxm", "bf16", 312e12),
        ("a100-sxm", "tf32", 156e12),
        ("a100-sxm", "fp32", 19.5e12),
        ("a100-sxm", "int8", 624e12),
        ("tpu-v4", "bf16", 275e12),
        ("tpu-v4", "int8", 275e12),
        ("tpu-v5e", "bf16", 197e12),
        ("tpu-v5e", "int8", 393e12),
        ("groq-lpu", "fp16", 188e12),
        ("wse2", "fp16", 7.5e15),
        ("systolic-128", "bf16", 2 * 128 * 128 * 1e9),
    ],
)
def test_dense_peak_matches_datasheet(name: str, dtype: str, datasheet_flops_per_s: float) -> None:
    """count x clock x flops_per_cycle reproduces the published dense peak within 0.5 %."""
    chip = load_arch(name)
    assert chip.peak_flops_per_s(dtype) == pytest.approx(datasheet_flops_per_s, rel=5e-3)


@pytest.mark.parametrize(
    ("name", "level", "bandwidth_bytes_per_s", "capacity_bytes"),
    [
        ("h100-sxm", "hbm", 3.35e12, 85e9),
        ("h200-sxm", "hbm", 4.8e12, 141e9),
        ("a100-sxm", "hbm", 2.039e12, 85e9),
        ("tpu-v4", "hbm", 1.2e12, 32 * 2**30),
        ("tpu-v5e", "hbm", 819e9, 16e9),
        ("wse2", "sram", 20e15, 40e9),
        ("groq-lpu", "sram", 80e12, 230e6),
    ],
)
def test_home_memory_matches_datasheet(
    name: str, level: str, bandwidth_bytes_per_s: float, capacity_bytes: float
) -> None:
    """The outermost memory level has the published bandwidth and capacity."""
    chip = load_arch(name)
    assert chip.home_level == level
    mem = chip.memory[level]
    assert mem.bandwidth_bytes_per_s == pytest.approx(bandwidth_bytes_per_s, rel=5e-3)
    assert chip.level_capacity_bytes(level) == pytest.approx(capacity_bytes, rel=5e-3)


def test_unsupported_dtype_has_zero_peak() -> None:
    """A dtype the matrix units do not list (fp8 on A100) has a peak of 0 FLOP/s."""
    chip = load_arch("a100-sxm")
    assert "fp8" not in chip.supported_dtypes
    assert chip.peak_flops_per_s("fp8") == 0.0


def test_h200_differs_from_h100_only_in_hbm() -> None:
    """h200-sxm is h100-sxm with a larger, faster HBM and nothing else changed."""
    h100 = load_arch("h100-sxm").model_dump()
    h200 = load_arch("h200-sxm").model_dump()
    hbm100, hbm200 = h100["memory"].pop("hbm"), h200["memory"].pop("hbm")
    for data in (h100, h200):
        del data["name"], data["description"]
    assert h100 == h200
    assert hbm200["capacity_bytes"] > hbm100["capacity_bytes"]
    assert hbm200["bandwidth_bytes_per_s"] > hbm100["bandwidth_bytes_per_s"]
    assert hbm200["achievable_fraction"] == hbm100["achievable_fraction"]


def test_exponent_without_dot_reads_as_float(tmp_path: Path) -> None:
    """Numbers written `1e9` (no dot, a string in YAML 1.1) load as floats, not strings."""
    path = tmp_path / "exp.yaml"
    path.write_text(
        "version: 1\n"
        "name: exp\n"
        "compute_units: {rows: 4, cols: 4, count: 1, clock_hz: 1e9,"
        " flops_per_cycle: {bf16: 32}}\n"
        "vector_units: {count: 1, flops_per_cycle: 4, clock_hz: 940e6}\n"
        "memory: {dram: {capacity_bytes: 16e9, bandwidth_bytes_per_s: 1E11}}\n"
        "idle_power_w: 1\n",
        encoding="utf-8",
    )
    raw = read_yaml(path)
    assert isinstance(raw["compute_units"]["clock_hz"], float)
    assert raw["vector_units"]["clock_hz"] == 940e6
    assert raw["memory"]["dram"]["capacity_bytes"] == 16e9
    assert raw["memory"]["dram"]["bandwidth_bytes_per_s"] == 1e11
    chip = load_arch(path)
    assert chip.compute_units.clock_hz == 1e9
    assert chip.peak_flops_per_s("bf16") == 32e9


_NUMBER_LINE = re.compile(r"^(\s*)([\w\"':.-]+):\s*([-+]?[0-9][0-9_.eE+-]*|\{.*\d.*\})\s*(#.*)?$")


def _unsourced_numbers(text: str) -> list[str]:
    """Lines with a number and no source: no comment on the line, no comment-only block
    above it in its mapping, and no comment on its parent key's line."""
    lines = text.splitlines()
    bad = []
    for i, line in enumerate(lines):
        m = _NUMBER_LINE.match(line)
        if not m or m.group(2) == "version" or m.group(4):
            continue
        indent, covered = len(m.group(1)), False
        for prev in reversed(lines[:i]):
            depth = len(prev) - len(prev.lstrip())
            if prev.lstrip().startswith("#"):
                covered = True
                break
            if prev.strip() and depth < indent:
                covered = "#" in prev
                break
        if not covered:
            bad.append(f"{i + 1}: {line.strip()}")
    return bad


@pytest.mark.parametrize("path", sorted(data_dir("arch_configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_preset_number_has_its_source(path: Path) -> None:
    """README's claim: every number in arch_configs/ has its source or derivation (or
    'assumption') in a comment beside it, above it, or on its parent key."""
    assert not _unsourced_numbers(path.read_text(encoding="utf-8")), path
