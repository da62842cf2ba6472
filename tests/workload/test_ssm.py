"""State-space (Mamba, Mamba-2) and hybrid (Jamba) models: parameters, FLOPs, the fixed
per-sequence state, the lowering of the mixer, and what is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import hwsim
from hwsim.cost import cost_op
from hwsim.cost.ssm import scan_batch_cost
from hwsim.errors import ConfigError
from hwsim.workload import lower
from hwsim.workload.layers import SsmSpec, layer_state_bytes
from hwsim.workload.memory import kv_cache_bytes_per_token, sequence_kv_bytes
from hwsim.workload.ops_ssm import CausalConv1d, SelectiveScan
from hwsim.workload.plan import Plan
from hwsim.workload.spec import ModelSpec, spec_from_dict

CONFIGS = Path(__file__).resolve().parent / "zoo" / "configs"


def _zoo(name: str) -> ModelSpec:
    return hwsim.load_model_spec(CONFIGS / f"{name}.json")


def _config(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))


# Published totals of Hugging Face-format checkpoints (billions, tolerance of their rounding):
# state-spaces/mamba-130m-hf and mamba-1.4b-hf model pages (safetensors: 129M, 1.37B);
# mistralai/Mamba-Codestral-7B-v0.1 model page (safetensors: 7.29B). The exact
# instantiated counts of mamba-2.8b and jamba-v0.1 are in zoo/reference_params.csv.
PUBLISHED = {"mamba-130m": (0.129, 0.005), "mamba-1.4b": (1.37, 0.005), "mamba-codestral-7b": (7.29, 0.002)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameters_match_published_counts(name: str) -> None:
    """Mamba and Mamba-2 parameters agree with the published checkpoint sizes."""
    total, rel = PUBLISHED[name]
    assert _zoo(name).param_count() / 1e9 == pytest.approx(total, rel=rel)


def test_mamba_130m_parameters_in_closed_form() -> None:
    """mamba-130m by MambaMixer's modules: in_proj 768x3072, conv 1536x4 + bias, x_proj
    1536x80, dt_proj 48x1536 + bias, A_log 1536x16, D, out_proj 1536x768, one norm;
    24 layers, a tied 50280-row table and the final norm: 129,135,360."""
    c = 1536
    layer = 768 * 2 * c + c * 4 + c + c * (48 + 32) + 48 * c + c + c * 16 + c + c * 768 + 768
    assert _zoo("mamba-130m").param_count() == 24 * layer + 50280 * 768 + 768 == 129_135_360


def test_instantiated_counts_are_exact() -> None:
    """mamba-2.8b and Jamba-v0.1 match transformers' instantiated models to the parameter."""
    assert hwsim.load_model_spec("mamba-2.8b").param_count() == 2_768_345_600
    assert hwsim.load_model_spec("jamba-v0.1").param_count() == 51_570_323_328


def test_jamba_layer_pattern() -> None:
    """Jamba: attention at layers 4, 12, 20, 28 (period 8, offset 4), MoE at odd layers
    (period 2, offset 1), Mamba with dt/B/C norms elsewhere."""
    spec = hwsim.load_model_spec("jamba-v0.1")
    attention = [i for i, layer in enumerate(spec.layers()) if layer.attention is not None]
    moe = [i for i, layer in enumerate(spec.layers()) if layer.ffn.is_moe]
    assert attention == [4, 12, 20, 28]
    assert moe == list(range(1, 32, 2))
    mamba = spec.layer(0).mixer
    assert isinstance(mamba, SsmSpec) and mamba.bc_norms and mamba.dt_rank == 256 and mamba.d_inner == 8192


def _scan_flops(spec: ModelSpec) -> float:
    """The recurrence of one decode token over the model (7 per channel and state for
    Mamba, 5 for Mamba-2), what 2 x parameters does not count."""
    return sum(layer.mixer.d_inner * layer.mixer.d_state * (7 if layer.mixer.kind == "mamba" else 5)
               for layer in spec.layers() if isinstance(layer.mixer, SsmSpec))


@pytest.mark.parametrize("name", ["mamba-130m", "mamba-1.4b", "mamba-codestral-7b"])
def test_decode_flops_are_twice_the_parameters(name: str) -> None:
    """A decode token costs 2 x active parameters within 3 %, and within 1 % once the
    scan's recurrence is added; it does not depend on the context."""
    spec = _zoo(name)
    short = lower(spec, "decode", batch=1, context_len=128).flops
    long = lower(spec, "decode", batch=1, context_len=65536).flops
    assert short == long
    assert short == pytest.approx(2.0 * spec.active_param_count(), rel=0.03)
    assert short == pytest.approx(2.0 * spec.active_param_count() + _scan_flops(spec), rel=0.01)


def test_state_bytes_closed_form() -> None:
    """A Mamba sequence keeps (d_conv - 1) x d_inner conv inputs and d_inner x d_state SSM
    state per layer, whatever its length: mamba-2.8b 64 x (3 + 16) x 5120 x 2 B; split over tp."""
    spec = hwsim.load_model_spec("mamba-2.8b")
    expected = 64 * (3 + 16) * 5120 * 2
    for context in (1, 100, 100_000):
        assert sequence_kv_bytes(spec, Plan(), context, "bf16") == expected
    assert sequence_kv_bytes(spec, Plan(tp=2), 10, "bf16") == expected / 2
    assert kv_cache_bytes_per_token(spec, Plan(), "bf16") == 0.0
    w = lower(spec, "decode", batch=4, context_len=1000)
    assert w.resident_bytes["kv_cache_bytes"] == 4 * expected


def test_mamba2_state_includes_bc_conv() -> None:
    """Mamba-2's conv runs over x, B and C (d_inner + 2 groups x d_state channels); its
    SSM state is heads x head_dim x d_state."""
    spec = _zoo("mamba-codestral-7b")
    conv = 8192 + 2 * 8 * 128
    per_layer = conv * 3 + 128 * 64 * 128
    assert layer_state_bytes(spec.layer(0), 1, 2.0) == per_layer * 2
    assert sequence_kv_bytes(spec, Plan(), 5, "bf16") == 64 * per_layer * 2


def test_jamba_cache_grows_only_in_attention_layers() -> None:
    """Jamba's cache: 4 attention layers' K and V per token plus 28 Mamba states."""
    spec = hwsim.load_model_spec("jamba-v0.1")
    per_token = 4 * 2 * 8 * 128 * 2
    state = 28 * (3 + 16) * 8192 * 2
    assert kv_cache_bytes_per_token(spec, Plan(), "bf16") == per_token
    assert sequence_kv_bytes(spec, Plan(), 1000, "bf16") == 1000 * per_token + state


def test_mamba_layer_ops() -> None:
    """A Mamba layer lowers to in_proj, conv1d, x_proj, dt_proj, the scan and out_proj
    (no attention, no FFN); Mamba-2 to in_proj, conv1d, scan, gated norm, out_proj."""
    ops = {name for name, _ in lower(hwsim.load_model_spec("mamba-2.8b"), "decode").passes[0].segments[1]
           .graph.ops()}
    assert {"in_proj", "conv1d", "x_proj", "dt_proj", "ssm_scan", "out_proj"} <= ops
    assert not ops & {"qkv_proj", "attention", "up_proj", "kv_cache_write"}
    ops2 = {name for name, _ in lower(_zoo("mamba-codestral-7b"), "decode").passes[0].segments[1].graph.ops()}
    assert {"in_proj", "conv1d", "ssm_scan", "gate", "gated_norm", "out_proj"} <= ops2
    assert "x_proj" not in ops2


def _scan(spec: ModelSpec, phase: str, **shape: int) -> SelectiveScan:
    w = lower(spec, phase, batch=1, **shape)
    ops = [op for seg in w.passes[0].segments for _, op in seg.graph.ops()]
    return next(op for op in ops if isinstance(op, SelectiveScan))


def test_mamba2_prefill_is_chunked_gemms() -> None:
    """Mamba-2 prefill runs the SSD as matrix products (C B^T, the intra-chunk product,
    chunk states, inter-chunk output) whose FLOPs per token grow with the chunk, not the
    prompt; decode is the recurrent update without them."""
    spec = _zoo("mamba-codestral-7b")
    p1, p2 = _scan(spec, "prefill", prompt_len=1024), _scan(spec, "prefill", prompt_len=4096)
    assert p1.work().gemms and p2.flops / 4096 == pytest.approx(p1.flops / 1024, rel=1e-9)
    # per chunk of L=256 tokens: 2L^2N per group, 2L^2P + 4LNP per head
    L, N, P, H, G = 256, 128, 64, 128, 8
    matrix = 4 * (G * 2 * L * L * N + H * (2 * L * L * P + 4 * L * N * P))
    assert p1.work().matrix_flops == matrix
    d = _scan(spec, "decode", context_len=1000)
    assert not d.work().gemms and d.prior_state


def test_scan_cost_on_a_chip() -> None:
    """The scan's cost is finite, uses the matrix units only for Mamba-2 prefill, and a
    uniform serving batch costs exactly the uniform op."""
    chip = hwsim.load_arch("h100-sxm")
    spec = _zoo("mamba-codestral-7b")
    prefill = _scan(spec, "prefill", prompt_len=2048)
    decode = _scan(spec, "decode", context_len=2048)
    c_pre, c_dec = cost_op(prefill, chip), cost_op(decode, chip)
    assert c_pre.compute_cycles > 0 and c_dec.compute_cycles == 0
    assert np.isfinite(c_pre.latency_s) and c_dec.latency_s > 0
    batch = SelectiveScan("mamba2", 8, 1, decode.channels, decode.n_heads, decode.d_state, decode.n_groups,
                          decode.chunk, decode.state_elements, prior_state=True)
    uniform = scan_batch_cost(chip, batch, np.ones(8, dtype=np.int64), np.full(8, 100))
    assert uniform.latency_s == pytest.approx(cost_op(batch, chip).latency_s, rel=1e-12)
    conv = cost_op(CausalConv1d(4096, 8192, 4), chip)
    assert conv.flops == 4096 * 8192 * (8 + 1 + 4) and conv.latency_s > 0


def test_pure_mamba_decode_time_does_not_grow_with_context() -> None:
    """Mamba's decode step reads a fixed state: its latency is the same at 1k and 64k
    tokens of context; Jamba's grows through its attention layers."""
    chip = hwsim.load_arch("h100-sxm")
    spec = hwsim.load_model_spec("mamba-2.8b")
    short = hwsim.simulate(lower(spec, "decode", batch=8, context_len=1024), chip).latency_s
    long = hwsim.simulate(lower(spec, "decode", batch=8, context_len=65536), chip).latency_s
    assert short == pytest.approx(long, rel=1e-9)
    jamba = hwsim.load_model_spec("jamba-v0.1")
    j_short = lower(jamba, "decode", batch=1, context_len=1024, n_layers=8).flops
    j_long = lower(jamba, "decode", batch=1, context_len=65536, n_layers=8).flops
    assert j_long > j_short


def _bad(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        spec_from_dict(data, "cfg.json")
    assert fragment in str(info.value) and "Field required" not in str(info.value)


def test_bad_configs_are_refused_by_name() -> None:
    """Inconsistent state-space configs name the key at fault."""
    codestral = _config("mamba-codestral-7b")
    _bad(codestral | {"num_heads": 100}, "num_heads: num_heads x head_dim")
    _bad(codestral | {"n_groups": 7}, "n_groups: 7 groups must divide num_heads")
    _bad(_config("mamba-130m") | {"time_step_rank": "big"}, "time_step_rank: expected a positive integer")
    _bad(_config("mamba-130m") | {"state_size": 1.5}, "state_size: expected an integer")
    _bad(_config("mamba-130m") | {"expand": -1}, "expand: must be positive")
    jamba = json.loads((Path(hwsim.__file__).parents[1] / "workloads" / "jamba-v0.1" / "config.json")
                       .read_text(encoding="utf-8"))
    _bad(jamba | {"layers_block_type": ["mamba", "retnet"]}, "layers_block_type: unknown layer kinds retnet")
    _bad({"model_type": "zamba2", "hidden_size": 64}, "Zamba2: a hybrid of attention and Mamba layers")


def test_training_and_prefix_caching_are_refused() -> None:
    """What is not modelled for state-space layers says so by name."""
    with pytest.raises(ConfigError, match="training of state-space"):
        lower(hwsim.load_model_spec("mamba-2.8b"), "train")
    with pytest.raises(ConfigError, match="prefix_caching"):
        hwsim.serve(hwsim.Requests.offline(2, 64, 4), "h100-sxm", model="mamba-2.8b", prefix_caching=True)


def test_saved_intermediate_size_is_the_mixer_width() -> None:
    """Falcon-Mamba-7B saves expand 16 beside intermediate_size 8192: the weights (7.27B
    in all, tiiuae/falcon-mamba-7b model page) are 8192 wide, and the disagreement is noted."""
    spec = _zoo("falcon-mamba-7b")
    assert spec.ssm_d_inner == 8192
    assert any("intermediate_size 8192 taken as the mixer width" in n for n in spec.notes)
    assert spec.param_count() / 1e9 == pytest.approx(7.27, rel=0.002)
    assert any("weightless RMS normalisation" in n for n in spec.notes)
