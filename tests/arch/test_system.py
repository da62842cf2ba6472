"""Multi-chip systems: presets, topology figures, group placement and invalid files."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim._paths import data_dir, preset_names
from hwsim.arch import Chip, load_arch
from hwsim.arch.system import (
    SYSTEMS_DIR,
    Fabric,
    Link,
    System,
    list_systems,
    load_system,
    single_chip_system,
    system_from_dict,
)
from hwsim.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "systems"

EXPECTED_CHIPS = {
    "dgx-h100": ("h100-sxm", 8),
    "h100-cluster-64": ("h100-sxm", 64),
    "tpu-v4-64": ("tpu-v4", 64),
    "tpu-v5e-256": ("tpu-v5e", 256),
    "cs2-weight-streaming": ("wse2", 1),
    "groq-rack": ("groq-lpu", 64),
}


def _fabric(topology: str, dims: tuple[int, ...], bw: float = 1e10, lpn: int = 1) -> Fabric:
    return Fabric(
        name="net", topology=topology, dims=dims, links_per_neighbor=lpn,  # type: ignore[arg-type]
        link=Link(bandwidth_bytes_per_s=bw, latency_s=1e-6),
    )


# Presets ------------------------------------------------------------------------------


def test_expected_system_presets_are_shipped() -> None:
    """list_systems() names at least the six presets of issue 4."""
    assert set(list_systems()) >= set(EXPECTED_CHIPS)


@pytest.mark.parametrize("name", sorted(EXPECTED_CHIPS))
def test_system_preset_chip_counts(name: str) -> None:
    """Each preset loads with its chip preset and the documented number of chips."""
    chip_name, n_chips = EXPECTED_CHIPS[name]
    system = load_system(name)
    assert system.name == name
    assert system.n_chips == n_chips
    assert system.chip == load_arch(chip_name)


@pytest.mark.parametrize("name", list_systems())
def test_system_preset_loads_by_path(name: str) -> None:
    """Loading a system preset by its file path gives the same System as by name."""
    path = data_dir(SYSTEMS_DIR) / f"{name}.yaml"
    assert load_system(path) == load_system(str(path)) == load_system(name)


def test_system_presets_stay_out_of_chip_presets() -> None:
    """The systems subfolder adds no entry to the chip presets, and no name is in both."""
    chips = preset_names("arch_configs")
    assert "systems" not in chips
    assert not set(list_systems()) & set(chips)


def test_dgx_h100_nvlink_matches_datasheet() -> None:
    """dgx-h100: 18 NVLink links of 25 GB/s give 450 GB/s per GPU per direction (A2)."""
    (nvswitch,) = load_system("dgx-h100").fabrics
    assert nvswitch.injection_bytes_per_s == pytest.approx(450e9)
    assert nvswitch.in_network_reduction
    assert load_system("dgx-h100").host is not None


def test_h100_cluster_outer_fabric_is_one_nic_per_gpu() -> None:
    """h100-cluster-64: 8 nodes over 400 Gb/s per GPU: 50 GB/s per chip, 400 GB/s per node."""
    inner, outer = load_system("h100-cluster-64").fabrics
    assert inner.injection_bytes_per_s == pytest.approx(450e9)
    assert outer.injection_bytes_per_s == pytest.approx(50e9)
    assert inner.size * outer.injection_bytes_per_s == pytest.approx(400e9)


def test_cs2_streams_weights_from_external_memory() -> None:
    """cs2-weight-streaming: one wafer, MemoryX at 1.2 Tb/s = 150 GB/s (A5)."""
    system = load_system("cs2-weight-streaming")
    assert system.fabrics == ()
    assert system.external_memory is not None
    assert system.external_memory.bandwidth_bytes_per_s == pytest.approx(1.2e12 / 8)


def test_tpu_v5e_pod_bisection_matches_published() -> None:
    """tpu-v5e-256 bisection is the published 1.6 TB/s of a v5e pod (A4, [TPU-V5E])."""
    (ici,) = load_system("tpu-v5e-256").fabrics
    assert ici.bisection_bytes_per_s == pytest.approx(1.6e12)
    assert 256 * ici.injection_bytes_per_s == pytest.approx(51.2e12)  # 4 ports x 50 GB/s per chip


def test_tpu_v4_pod_bisection_within_5_percent_of_published() -> None:
    """A 16x16x16 torus of v4 ICI links has ~24 TB/s bisection, as published (A4, [TPU-V4])."""
    pod = _fabric("torus_3d", (16, 16, 16), bw=45e9)
    assert pod.bisection_bytes_per_s == pytest.approx(24e12, rel=0.05)


# Topology figures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topology", "dims", "neighbors", "diameter", "bisection_links", "injection_links"),
    [
        ("ring", (8,), 2, 4, 2, 2),
        ("ring", (2,), 1, 1, 1, 1),
        ("switch", (8,), 7, 1, 4, 1),
        ("torus_2d", (4, 4), 4, 4, 8, 4),
        ("torus_3d", (4, 4, 4), 6, 6, 32, 6),
        ("mesh_2d", (4, 4), 4, 6, 4, 4),
        ("mesh_2d", (8, 2), 3, 8, 2, 3),
    ],
)
def test_topology_figures(
    topology: str, dims: tuple[int, ...], neighbors: int, diameter: int, bisection_links: int,
    injection_links: int,
) -> None:
    """Neighbours, diameter, bisection and injection follow from the topology in closed form."""
    fabric = _fabric(topology, dims, bw=1e9)
    assert fabric.neighbors == neighbors
    assert fabric.diameter_hops == diameter
    assert fabric.bisection_bytes_per_s == pytest.approx(bisection_links * 1e9)
    assert fabric.injection_bytes_per_s == pytest.approx(injection_links * 1e9)


def test_links_per_neighbor_multiplies_port_bandwidth() -> None:
    """A switch port of 18 links of 25 GB/s injects 450 GB/s."""
    assert _fabric("switch", (8,), bw=25e9, lpn=18).injection_bytes_per_s == pytest.approx(450e9)


@pytest.mark.parametrize(
    ("topology", "dims", "message"),
    [
        ("torus_3d", (4, 4), "torus_3d needs 3 dims, got 2"),
        ("torus_2d", (16,), "torus_2d needs 2 dims, got 1"),
        ("switch", (8, 8), "switch needs 1 dim, got 2"),
        ("mesh_2d", (4, 4, 4), "mesh_2d needs 2 dims, got 3"),
    ],
)
def test_dims_must_match_topology(topology: str, dims: tuple[int, ...], message: str) -> None:
    """A fabric whose dims do not match its topology fails at fabrics[0].dims."""
    data = {
        "name": "bad", "chip": "systolic-128",
        "fabrics": [{"name": "f", "topology": topology, "dims": list(dims),
                     "link": {"bandwidth_bytes_per_s": 1e9, "latency_s": 0}}],
    }
    with pytest.raises(ConfigError) as info:
        system_from_dict(data, "sys.yaml")
    assert f"sys.yaml: fabrics[0].dims: {message}" in info.value.problems


# Group placement ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "size", "stride", "expected"),
    [
        ("dgx-h100", 8, 1, [("nvswitch", 8)]),
        ("dgx-h100", 4, 2, [("nvswitch", 4)]),
        ("dgx-h100", 1, 8, []),
        ("h100-cluster-64", 8, 1, [("nvswitch", 8)]),
        ("h100-cluster-64", 8, 8, [("infiniband", 8)]),
        ("h100-cluster-64", 16, 1, [("nvswitch", 8), ("infiniband", 2)]),
        ("h100-cluster-64", 4, 16, [("infiniband", 4)]),
        ("h100-cluster-64", 64, 1, [("nvswitch", 8), ("infiniband", 8)]),
        ("tpu-v4-64", 16, 4, [("ici", 4), ("ici", 4)]),
        ("tpu-v4-64", 4, 1, [("ici", 4)]),
        ("tpu-v4-64", 64, 1, [("ici", 4), ("ici", 4), ("ici", 4)]),
        ("tpu-v5e-256", 32, 1, [("ici", 16), ("ici", 2)]),
    ],
)
def test_group_fabrics(system: str, size: int, stride: int, expected: list[tuple[str, int]]) -> None:
    """Ranks fill the innermost fabric (or torus dimension) first."""
    placed = load_system(system).group_fabrics(size, stride)
    assert [(f.name, n) for f, n in placed] == expected


def test_torus_group_names_its_dimensions() -> None:
    """On a 4x4x4 torus, 16 chips at stride 4 span dims y and z (1 and 2), 4 each."""
    levels = load_system("tpu-v4-64").group_levels(16, 4)
    assert [(g.dim, g.members, g.step) for g in levels] == [(1, 4, 1), (2, 4, 1)]
    assert all(g.is_closed_ring for g in levels)


def test_interleaved_and_partial_torus_groups() -> None:
    """8 chips at stride 2 close a 16-ring with 2-hop steps; 4 adjacent chips of 16 do not."""
    system = load_system("tpu-v5e-256")
    (spread,) = system.group_levels(8, 2)
    assert (spread.members, spread.step, spread.is_closed_ring) == (8, 2, True)
    (partial,) = system.group_levels(4, 1)
    assert (partial.members, partial.step, partial.is_closed_ring) == (4, 1, False)


def test_group_larger_than_system_is_an_error() -> None:
    """size * stride beyond the system raises ValueError naming what it needs and has."""
    with pytest.raises(ValueError, match="needs 128 chips; system 'h100-cluster-64' has 64"):
        load_system("h100-cluster-64").group_fabrics(16, 8)


def test_single_chip_system() -> None:
    """A Chip becomes a system of one chip with no fabrics; a group of 2 does not fit."""
    chip = load_arch("h100-sxm")
    system = single_chip_system(chip)
    assert (system.n_chips, system.fabrics, system.chip) == (1, (), chip)
    assert load_system(chip) == system == load_system("h100-sxm")
    assert system.group_fabrics(1, 1) == []
    with pytest.raises(ValueError):
        system.group_fabrics(2, 1)


# Loading and invalid files --------------------------------------------------------------

# fixture stem -> (dotted path the error must name, words its message must contain)
INVALID = {
    "bad_dims": ("fabrics[0].dims", "torus_3d needs 3 dims, got 2"),
    "unknown_chip": ("chip", "did you mean h100-sxm"),
    "inline_chip_invalid": ("chip.memory.hbm.bandwidth_bytes_per_s", "greater than 0"),
    "negative_link_bandwidth": ("fabrics[0].link.bandwidth_bytes_per_s", "greater than 0"),
    "unknown_topology": ("fabrics[0].topology", "'switch'"),
    "duplicate_fabric": ("fabrics", "repeated: net"),
    "reduction_on_torus": ("fabrics[0]", "in_network_reduction needs a switch"),
    "reduction_latency_without_reduction": ("fabrics[0]", "in_network_reduction_latency_s needs"),
    "negative_collective_latency": ("fabrics[0].collective_latency_s", "greater than or equal to 0"),
    "unknown_key": ("fabrics[0].linkz", "Extra inputs"),
    "bad_fraction": ("fabrics[0].link.achievable_fraction", "less than or equal to 1"),
    "zero_dim": ("fabrics[0].dims[1]", "greater than 0"),
    "bad_external_memory": ("external_memory.capacity_bytes", "greater than 0"),
    "not_a_mapping": ("<root>", "expected a mapping of system fields"),
    "malformed": ("line 7", "malformed YAML"),
}


def test_every_system_fixture_is_covered() -> None:
    """Each invalid system fixture has an expected error, and the control is valid."""
    assert {p.stem for p in FIXTURES.glob("*.yaml")} == set(INVALID) | {"valid_minimal"}


def test_valid_system_control_loads() -> None:
    """The control fixture (inline chip on a ring of 4) loads."""
    system = load_system(FIXTURES / "valid_minimal.yaml")
    assert isinstance(system.chip, Chip)
    assert system.n_chips == 4


@pytest.mark.parametrize("stem", sorted(INVALID))
def test_invalid_system_names_file_and_path(stem: str) -> None:
    """Loading the fixture raises ConfigError with a `file: dotted.path: message` line."""
    dotted_path, words = INVALID[stem]
    path = FIXTURES / f"{stem}.yaml"
    with pytest.raises(ConfigError) as info:
        load_system(path)
    lines = info.value.problems
    assert any(line.startswith(f"{path}: {dotted_path}:") for line in lines), lines
    assert any(words in line for line in lines), lines


def test_unknown_system_suggests_close_matches() -> None:
    """An unknown name raises ConfigError with close matches and the known systems."""
    with pytest.raises(ConfigError) as info:
        load_system("dgx-h10")
    text = str(info.value)
    assert "dgx-h10: unknown system preset or file" in text
    assert "did you mean dgx-h100" in text


def test_chip_path_is_found_beside_the_system_file(tmp_path: Path) -> None:
    """`chip: my-chip.yaml` in a system file is read from the system file's folder."""
    (tmp_path / "my-chip.yaml").write_text(
        (Path(__file__).parent / "fixtures" / "valid_minimal.yaml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    (tmp_path / "pair.yaml").write_text(
        "version: 1\nname: pair\nchip: my-chip.yaml\n"
        "fabrics: [{name: wire, topology: ring, dims: [2],"
        " link: {bandwidth_bytes_per_s: 1e9, latency_s: 0}}]\n",
        encoding="utf-8",
    )
    system = load_system(tmp_path / "pair.yaml")
    assert system.chip.name == "valid_minimal"
    assert system.n_chips == 2


def test_system_is_frozen_and_validated() -> None:
    """System fields cannot be reassigned, and a Chip object is accepted for `chip`."""
    system = System(name="one", chip=load_arch("tpu-v4"))
    with pytest.raises(ValueError):
        system.name = "two"  # type: ignore[misc]
