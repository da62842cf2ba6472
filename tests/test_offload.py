"""Offload and weight streaming: state kept outside the chips, moved over their host link."""

from __future__ import annotations

import pytest

import hwsim
from hwsim.errors import ConfigError
from hwsim.workload.memory import memory_per_chip
from hwsim.workload.ops import Collective
from hwsim.workload.parallel import layer_param_bytes


def _host_ops(result: hwsim.Result, kind: str) -> list[Collective]:
    frame = result.to_frame()
    ops = [r.op for r in result.schedule.records if isinstance(r.op, Collective) and r.op.op_kind == kind]
    assert len(frame[frame.kind == kind]) >= len(ops)
    return ops


def test_weight_streaming_decode_is_the_stream_time() -> None:
    """Batch-1 decode on a wafer that streams its weights takes the weights' bytes over
    the appliance's bandwidth, plus one latency per layer (compute hides under it)."""
    system = hwsim.load_system("cs2-weight-streaming")
    w = hwsim.load_workload("llama2-13b", phase="decode", batch=1, context_len=512)
    r = hwsim.simulate(w, system, plan=hwsim.Plan(offload=("weights",)))
    spec = w.spec
    ext = system.external_memory
    layers = spec.num_hidden_layers
    layer_b = layer_param_bytes(spec, hwsim.Plan(), "bf16")
    stream_s = layers * (ext.latency_s + layer_b / ext.bandwidth_bytes_per_s)
    assert r.latency_s == pytest.approx(stream_s, rel=0.03)
    assert r.latency_s >= stream_s
    # Link energy: every layer's bytes once at the appliance's energy per byte.
    expect_j = layers * layer_param_bytes(spec, hwsim.Plan(), "bf16") * ext.energy_pj_per_byte * 1e-12
    assert r.energy_breakdown_j["interconnect_j"] == pytest.approx(expect_j, rel=1e-6)


def test_more_external_bandwidth_is_never_slower() -> None:
    system = hwsim.load_system("cs2-weight-streaming")
    ext = system.external_memory
    w = hwsim.load_workload("llama2-7b", phase="prefill", batch=2, prompt_len=512)
    plan = hwsim.Plan(offload=("weights",))
    times = []
    for scale in (0.5, 1.0, 4.0, 64.0):
        faster = system.model_copy(update={"external_memory": ext.model_copy(
            update={"bandwidth_bytes_per_s": ext.bandwidth_bytes_per_s * scale})})
        times.append(hwsim.simulate(w, faster, plan=plan).latency_s)
    assert times == sorted(times, reverse=True)
    # With ample bandwidth the stream hides under compute: within 10 % of no offload.
    resident = hwsim.simulate(w, system)
    assert times[-1] == pytest.approx(resident.latency_s, rel=0.10)


def test_offloaded_kv_cache_streams_in_and_costs_time() -> None:
    """Decode with the KV cache in host memory reads each layer's cache over PCIe."""
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=16, context_len=2048, n_layers=4)
    base = hwsim.simulate(w, "dgx-h100", plan=hwsim.Plan(tp=2))
    off = hwsim.simulate(w, "dgx-h100", plan=hwsim.Plan(tp=2, offload=("kv_cache",)))
    assert off.latency_s > base.latency_s
    reads = _host_ops(off, "host_read")
    per_token = 2 * (w.spec.n_kv_heads // 2) * w.spec.d_head * 2
    assert {op.n_bytes for op in reads} == {16 * 2048 * per_token}
    mem = memory_per_chip(w.spec.model_copy(update={"num_hidden_layers": 4}), "decode",
                          hwsim.Plan(tp=2, offload=("kv_cache",)), batch=16, context_len=2048)
    assert mem.kv_cache_bytes == 0 and mem.offloaded_bytes > 0


def test_offloaded_optimizer_sends_gradients_and_receives_weights() -> None:
    """ZeRO-Offload style: no on-chip AdamW; the gradient shard goes out, the weights come back."""
    w = hwsim.load_workload("llama2-7b", phase="train", batch=4, seq_len=256, n_layers=2)
    plan = hwsim.Plan(tp=2, offload=("optimizer",))
    r = hwsim.simulate(w, "dgx-h100", plan=plan)
    kinds = set(r.to_frame().kind)
    assert "optimizer" not in kinds
    shard = w.spec.model_copy(update={"num_hidden_layers": 2}).param_count() // 2 * 2
    assert [op.n_bytes for op in _host_ops(r, "host_write")] == [pytest.approx(shard, rel=1e-9)]
    assert [op.n_bytes for op in _host_ops(r, "host_read")] == [pytest.approx(shard, rel=1e-9)]


def test_streamed_weights_take_their_gradients_along() -> None:
    spec = hwsim.load_model_spec("llama2-7b")
    plan = hwsim.Plan(offload=("weights",))
    mem = memory_per_chip(spec, "train", plan, batch=1, seq_len=512)
    resident = memory_per_chip(spec, "train", hwsim.Plan(), batch=1, seq_len=512)
    assert mem.weights_bytes == 0 and mem.gradients_bytes == 0
    assert mem.offloaded_bytes == pytest.approx(resident.weights_bytes + resident.gradients_bytes)


def test_offload_without_host_memory_is_a_clear_error() -> None:
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=1, n_layers=2)
    with pytest.raises(ConfigError, match="no host or external memory"):
        hwsim.simulate(w, "h100-sxm", plan=hwsim.Plan(offload=("weights",)))
