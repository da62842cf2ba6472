"""Invalid architecture files fail with a ConfigError naming the file and dotted path."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.arch import Chip, load_arch, with_overrides
from hwsim.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"

# fixture stem -> (dotted path the error must name, words its message must contain)
INVALID = {
    "negative_bandwidth": ("memory.hbm.bandwidth_bytes_per_s", "greater than 0"),
    "unknown_key": ("compute_units.rowz", "Extra inputs"),
    "malformed": ("line 9", "malformed YAML"),
    "bad_sparsity": ("sparsity.patterns", "exceeds M/N"),
    "no_memory": ("memory", "at least one memory level"),
    "per_unit_outside": ("memory", "per_unit level must sit inside"),
    "energy_dtype": ("compute_units", "['fp8']"),
    "fraction_dtype": ("compute_units.achievable_fraction_by_dtype.bf16", "less than or equal to 1"),
    "unknown_dtype": ("compute_units.flops_per_cycle.bf17", "Input should be"),
    "not_a_number": ("compute_units.clock_hz", "expected a number"),
    "wrong_version": ("version", "Input should be 1"),
    "not_a_mapping": ("<root>", "expected a mapping"),
}


def test_every_fixture_is_covered() -> None:
    """Each invalid fixture on disk has an expected error, and the control is valid."""
    on_disk = {p.stem for p in FIXTURES.glob("*.yaml")}
    assert on_disk == set(INVALID) | {"valid_minimal"}


def test_valid_control_loads() -> None:
    """The minimal control fixture loads, so each invalid one fails for its own defect."""
    assert isinstance(load_arch(FIXTURES / "valid_minimal.yaml"), Chip)


@pytest.mark.parametrize("stem", sorted(INVALID))
def test_invalid_fixture_names_file_and_path(stem: str) -> None:
    """Loading the fixture raises ConfigError with a `file: dotted.path: message` line."""
    dotted_path, words = INVALID[stem]
    path = FIXTURES / f"{stem}.yaml"
    with pytest.raises(ConfigError) as info:
        load_arch(path)
    lines = info.value.problems
    assert any(line.startswith(f"{path}: {dotted_path}") for line in lines), lines
    assert any(words in line for line in lines), lines
    assert f"{stem}.yaml" in str(info.value)


def test_unknown_key_also_reports_missing_field() -> None:
    """A misspelt key reports both the unknown key and the required field it replaced."""
    with pytest.raises(ConfigError) as info:
        load_arch(FIXTURES / "unknown_key.yaml")
    text = str(info.value)
    assert "compute_units.rowz" in text
    assert "compute_units.rows: Field required" in text
    assert len(info.value.problems) == 2


def test_unknown_preset_suggests_close_matches() -> None:
    """An unknown preset name raises ConfigError listing the close matches."""
    with pytest.raises(ConfigError) as info:
        load_arch("h100-sx")
    text = str(info.value)
    assert "h100-sx: unknown architecture preset" in text
    assert "did you mean" in text
    assert "h100-sxm" in text.split("did you mean", 1)[1].split("?")[0]


def test_unknown_preset_without_close_match_lists_known() -> None:
    """A name like no preset raises ConfigError that lists the known presets."""
    with pytest.raises(ConfigError) as info:
        load_arch("zzzz-not-a-chip")
    text = str(info.value)
    assert "did you mean" not in text
    assert "known:" in text and "h100-sxm" in text


def test_missing_file_path_is_a_config_error(tmp_path: Path) -> None:
    """A path to a file that does not exist raises ConfigError, not OSError."""
    with pytest.raises(ConfigError, match="unknown architecture preset or file"):
        load_arch(tmp_path / "absent.yaml")


def test_with_overrides_replaces_a_dotted_field() -> None:
    """with_overrides returns a re-validated copy and leaves the original unchanged."""
    h100 = load_arch("h100-sxm")
    faster = with_overrides(h100, {"memory.hbm.bandwidth_bytes_per_s": 4.8e12, "name": "h100-x"})
    assert faster.memory["hbm"].bandwidth_bytes_per_s == 4.8e12
    assert faster.name == "h100-x"
    assert h100.memory["hbm"].bandwidth_bytes_per_s == 3.35e12
    assert faster.compute_units == h100.compute_units


def test_with_overrides_reaches_dtype_maps() -> None:
    """A dotted path can replace one entry of a per-dtype mapping."""
    h100 = load_arch("h100-sxm")
    chip = with_overrides(h100, {"compute_units.flops_per_cycle.bf16": 8192})
    assert chip.peak_flops_per_s("bf16") == pytest.approx(2 * h100.peak_flops_per_s("bf16"))


@pytest.mark.parametrize(
    "dotted",
    ["memory.hbm.bandwith_bytes_per_s", "memory.sram.capacity_bytes", "idle_power_w.x", "rowz"],
)
def test_with_overrides_rejects_unknown_path(dotted: str) -> None:
    """An override path that names no existing field raises ConfigError naming it."""
    h100 = load_arch("h100-sxm")
    with pytest.raises(ConfigError) as info:
        with_overrides(h100, {dotted: 1.0})
    assert f"{dotted}: no such field" in str(info.value)


def test_with_overrides_revalidates_values() -> None:
    """An override with an invalid value raises ConfigError with its dotted path."""
    h100 = load_arch("h100-sxm")
    with pytest.raises(ConfigError) as info:
        with_overrides(h100, {"memory.hbm.bandwidth_bytes_per_s": -1.0})
    assert "memory.hbm.bandwidth_bytes_per_s: must be greater than 0, got -1" in str(info.value)
