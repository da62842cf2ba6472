"""Issue #17's presets: each loads, runs a small decode, and states its source's peaks."""

from __future__ import annotations

import math

import pytest

import hwsim
from hwsim.arch import load_arch, with_fabric_dims
from hwsim.arch.system import load_system
from hwsim.errors import ConfigError
from hwsim.workload.lower import lower
from hwsim.workload.spec import spec_from_dict

CHIPS = ("b200-sxm", "gb200", "l40s", "l4", "mi300x", "mi325x", "gaudi2", "gaudi3", "tpu-v5p", "tpu-v6e",
         "wse3", "bow-ipu", "wormhole-n150", "trainium2", "xeon-8480", "epyc-9654", "grace", "apple-m2-ultra",
         "jetson-agx-orin")
#: System preset, its chip count and its chip.
SYSTEMS = {"dgx-b200": (8, "b200-sxm"), "gb200-nvl72": (72, "gb200"), "mi300x-8": (8, "mi300x"),
           "hls-gaudi2": (8, "gaudi2"), "hls-gaudi3": (8, "gaudi3"), "tpu-v5p-64": (64, "tpu-v5p"),
           "tpu-v5p-512": (512, "tpu-v5p"), "tpu-v6e-8": (8, "tpu-v6e"), "tpu-v6e-256": (256, "tpu-v6e"),
           "tpu-v5e-4": (4, "tpu-v5e"),
           "cs3-cluster-4": (4, "wse3"), "cs3-weight-streaming": (1, "wse3"), "groq-576": (576, "groq-lpu"),
           "trn2-16": (16, "trainium2")}
#: Dense matrix peaks the presets' sources state (FLOP/s or OP/s), see each YAML header.
PEAKS = [
    ("b200-sxm", "bf16", 2.25e15), ("b200-sxm", "fp8", 4.5e15), ("b200-sxm", "fp4", 9e15),
    ("gb200", "bf16", 2.5e15), ("gb200", "fp8", 5e15), ("gb200", "fp4", 10e15),
    ("l40s", "bf16", 366.5e12), ("l40s", "fp8", 733e12), ("l4", "bf16", 121e12), ("l4", "fp8", 242.5e12),
    ("mi300x", "bf16", 1307.4e12), ("mi300x", "fp8", 2614.9e12), ("mi325x", "bf16", 1307.4e12),
    ("gaudi2", "bf16", 432e12), ("gaudi2", "fp8", 865e12),
    ("gaudi3", "bf16", 1835e12), ("gaudi3", "fp8", 1835e12),
    ("tpu-v5p", "bf16", 459e12), ("tpu-v5p", "int8", 918e12), ("tpu-v6e", "bf16", 918e12),
    ("tpu-v6e", "int8", 1840e12), ("wse3", "fp16", 125e15 / 8), ("bow-ipu", "fp16", 350e12),
    ("wormhole-n150", "fp16", 74e12), ("wormhole-n150", "fp8", 262e12), ("trainium2", "bf16", 667e12),
    ("trainium2", "fp8", 1299e12), ("apple-m2-ultra", "fp32", 27.2e12), ("jetson-agx-orin", "int8", 85e12),
    ("grace", "fp32", 72 * 32 * 3.1e9), ("xeon-8480", "bf16", 56 * 1024 * 1.9e9),
]
#: Home memory (capacity bytes, bandwidth B/s) the sources state.
MEMORY = [
    ("b200-sxm", 180e9, 8e12), ("gb200", 186e9, 8e12), ("l40s", 48e9, 864e9), ("l4", 24e9, 300e9),
    ("mi300x", 192e9, 5.3e12), ("mi325x", 256e9, 6e12), ("gaudi2", 96e9, 2.46e12), ("gaudi3", 128e9, 3.7e12),
    ("tpu-v5p", 95e9, 2.765e12), ("tpu-v6e", 32e9, 1.6e12), ("wse3", 44e9, 21e15), ("bow-ipu", 900e6, 65e12),
    ("wormhole-n150", 12e9, 288e9), ("trainium2", 96 * 2**30, 2.9e12), ("xeon-8480", 512e9, 307.2e9),
    ("epyc-9654", 768e9, 460.8e9), ("grace", 480e9, 512e9), ("apple-m2-ultra", 192e9, 800e9),
    ("jetson-agx-orin", 64e9, 204.8e9),
]
TINY = spec_from_dict({"num_hidden_layers": 2, "hidden_size": 256, "num_attention_heads": 4,
                       "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 4096,
                       "model_type": "llama"}, "tiny", name="tiny")


def test_the_issue_families_are_listed() -> None:
    """`hwsim list archs|systems` shows every new chip and system."""
    assert set(CHIPS) <= set(hwsim.list_archs())
    assert set(SYSTEMS) <= set(hwsim.list_systems())


@pytest.mark.parametrize("name", CHIPS)
def test_chip_runs_a_small_decode(name: str) -> None:
    """A tiny decode step on the chip is finite and positive in time and energy."""
    result = hwsim.simulate(lower(TINY, "decode", batch=2, context_len=64, dtype="bf16"
                                  if "bf16" in load_arch(name).supported_dtypes else "fp16"), name)
    assert 0 < result.latency_s < math.inf and 0 < result.energy_j < math.inf


@pytest.mark.parametrize(("name", "n_chips", "chip"), [(k, *v) for k, v in SYSTEMS.items()])
def test_system_loads_with_its_chip_count(name: str, n_chips: int, chip: str) -> None:
    """Each system preset joins the stated number of its chip."""
    system = load_system(name)
    assert system.n_chips == n_chips and system.chip.name == chip


@pytest.mark.parametrize(("name", "dtype", "flops_per_s"), PEAKS)
def test_dense_peak_matches_source(name: str, dtype: str, flops_per_s: float) -> None:
    """The preset's dense peak is its source's figure (datasheet sparse peaks halved) within 2 %."""
    assert load_arch(name).peak_flops_per_s(dtype) == pytest.approx(flops_per_s, rel=0.02)


@pytest.mark.parametrize(("name", "capacity_bytes", "bandwidth_bytes_per_s"), MEMORY)
def test_home_memory_matches_source(name: str, capacity_bytes: float, bandwidth_bytes_per_s: float) -> None:
    """Capacity and peak bandwidth of the outermost memory level are the source's figures."""
    chip = load_arch(name)
    home = chip.memory[chip.home_level]
    assert home.capacity_bytes == pytest.approx(capacity_bytes, rel=0.01)
    assert home.bandwidth_bytes_per_s == pytest.approx(bandwidth_bytes_per_s, rel=0.01)


@pytest.mark.parametrize(("name", "per_chip_bytes_per_s"), [
    ("dgx-b200", 900e9), ("gb200-nvl72", 900e9),  # NVLink 5: 1.8 TB/s per GPU, both directions
    ("mi300x-8", 7 * 64e9), ("hls-gaudi2", 21 * 12.5e9), ("hls-gaudi3", 21 * 25e9),
    ("tpu-v5p-64", 6 * 100e9), ("tpu-v6e-256", 4 * 100e9),
])
def test_injection_bandwidth_matches_source(name: str, per_chip_bytes_per_s: float) -> None:
    """What one chip sends into its innermost fabric, per direction, is the source's figure."""
    assert load_system(name).fabrics[0].injection_bytes_per_s == pytest.approx(per_chip_bytes_per_s)


def test_fp4_is_half_a_byte_and_bf16_accumulated() -> None:
    """fp4 (e2m1) stores half a byte per element and writes bf16 results; the block-scaled
    NVFP4 and MXFP4 count their scales and run at a chip's fp4 rate (docs/precision.md)."""
    from hwsim.dtypes import accumulator_dtype, dtype_bytes, normalize_dtype

    assert normalize_dtype("E2M1") == "fp4"
    assert dtype_bytes("fp4") == 0.5 and accumulator_dtype("fp4") == "bf16"
    assert dtype_bytes("nvfp4") == (4 + 8 / 16) / 8 and dtype_bytes("mxfp4") == (4 + 8 / 32) / 8
    b200 = hwsim.load_arch("b200-sxm")
    assert b200.peak_flops_per_s("nvfp4") == b200.peak_flops_per_s("mxfp4") == b200.peak_flops_per_s("fp4")


def test_fp4_halves_a_memory_bound_decode_against_fp8() -> None:
    """On B200 a batch-1 decode in fp4 moves half the weight bytes of fp8, so it is faster."""
    fp8 = hwsim.simulate(hwsim.load_workload("llama3-8b", phase="decode", batch=1, dtype="fp8"), "b200-sxm")
    fp4 = hwsim.simulate(hwsim.load_workload("llama3-8b", phase="decode", batch=1, dtype="fp4"), "b200-sxm")
    assert fp4.latency_s < fp8.latency_s
    assert fp4.to_frame()["hbm_bytes"].sum() < 0.6 * fp8.to_frame()["hbm_bytes"].sum()


def test_chip_count_is_a_parameter() -> None:
    """with_fabric_dims resizes one fabric of a preset (Groq racks) and names what it did."""
    groq = load_system("groq-576")
    four_racks = with_fabric_dims(groq, "c2c-cluster", (4,))
    assert four_racks.n_chips == 256 and four_racks.name == "groq-576@256"
    with pytest.raises(ConfigError, match="no fabric named 'x'"):
        with_fabric_dims(groq, "x", (4,))
    with pytest.raises(ConfigError, match=r"fabrics\[2\]\.dims\[0\]"):
        with_fabric_dims(groq, "c2c-cluster", (0,))
