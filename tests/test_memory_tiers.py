"""Memory tiers and fractional placement: shares of weights, KV cache, activations and
optimizer state in HBM, host DRAM, NVMe and CXL, streamed over each tier's link."""

from __future__ import annotations

import math

import pytest

import hwsim
from hwsim.arch.system import System, system_from_dict
from hwsim.errors import ConfigError
from hwsim.workload.memory import memory_per_chip
from hwsim.workload.ops import Collective
from hwsim.workload.parallel import layer_param_bytes

TIERED = "dgx-h100-tiered"


def _system() -> System:
    return hwsim.load_system(TIERED)


def _with_tier(system: System, name: str, **update: float) -> System:
    tiers = dict(system.tiers)
    tiers[name] = tiers[name].model_copy(update=update)
    return system.model_copy(update={"tiers": tiers})


def _host_records(result: hwsim.Result, kind: str | None = None) -> list:
    """Schedule records of the host-side ops (transfers, the CPU's update), of ``kind`` if given."""
    return [rec for rec in result.schedule.records
            if isinstance(rec.op, Collective) and rec.op.group == "host" and kind in (None, rec.op.op_kind)]


def _decode() -> hwsim.Workload:
    return hwsim.load_workload("llama2-7b", phase="decode", batch=8, context_len=1024, n_layers=4)


def _train() -> hwsim.Workload:
    return hwsim.load_workload("llama2-7b", phase="train", batch=2, seq_len=512, n_layers=2)


def test_shares_must_sum_to_one() -> None:
    """A placement whose shares do not sum to 1 is refused with the item and the numbers."""
    summed = r"placement: weights: shares sum to 0\.9 \(hbm 0\.7 \+ host 0\.2\)"
    with pytest.raises(ConfigError, match=summed):
        hwsim.Plan(placement={"weights": {"hbm": 0.7, "host": 0.2}})
    with pytest.raises(ConfigError, match=r"kv_cache\.hbm: a share must be a number in \[0, 1\]"):
        hwsim.Plan(placement={"kv_cache": {"hbm": 1.5, "host": -0.5}})
    with pytest.raises(ConfigError, match="'gradients': unknown item"):
        hwsim.Plan(placement={"gradients": {"host": 1.0}})
    with pytest.raises(ConfigError, match="both in offload and in placement"):
        hwsim.Plan(offload=("weights",), placement={"weights": {"host": 1.0}})


def test_unknown_tier_and_over_capacity_are_config_errors() -> None:
    """A tier the system lacks, or more bytes in a tier than it holds, names the path."""
    w = _decode()
    with pytest.raises(ConfigError, match=r"placement\.weights\.nvme: the system has no tier 'nvme'"):
        hwsim.simulate(w, "dgx-h100", plan=hwsim.Plan(placement={"weights": {"hbm": 0.5, "nvme": 0.5}}))
    small = _with_tier(_system(), "cxl", capacity_bytes=1e9)
    plan = hwsim.Plan(placement={"weights": {"hbm": 0.5, "cxl": 0.5}})
    over = r"placement\.weights\.cxl: .* per chip exceeds tiers\.cxl\.capacity_bytes 953\.7 MiB; short by"
    with pytest.raises(ConfigError, match=over):
        hwsim.simulate(w, small, plan=plan)


def test_reserved_tier_names_are_refused() -> None:
    data = _system().model_dump()
    data["tiers"]["host"] = data["tiers"]["cxl"]
    with pytest.raises(ConfigError, match="tiers: host: reserved tier name"):
        system_from_dict(data)


@pytest.mark.parametrize("phase", ["decode", "prefill", "train"])
def test_all_in_hbm_placement_is_today_bit_for_bit(phase: str) -> None:
    """Every item placed wholly in HBM gives the very numbers of no placement."""
    w = _train() if phase == "train" else hwsim.load_workload("llama2-7b", phase=phase, batch=4,
                                                              prompt_len=256, context_len=512, n_layers=2)
    items = ("weights", "optimizer", "activations") if phase == "train" else ("weights", "kv_cache")
    placed = hwsim.Plan(placement={item: {"hbm": 1.0} for item in items})
    base = hwsim.simulate(w, TIERED, plan=hwsim.Plan())
    same = hwsim.simulate(w, TIERED, plan=placed)
    assert same.latency_s == base.latency_s
    assert same.energy_j == base.energy_j
    assert same.energy_breakdown_j == base.energy_breakdown_j
    assert same.to_frame().drop(columns=[]).equals(base.to_frame())


def test_memory_moves_each_share_to_its_tier() -> None:
    """weights 0.7/0.3 and optimizer all on the host: the tier holds 0.3 of the weights and
    gradients plus the optimizer state; the chip keeps 0.7 of the weights."""
    spec = hwsim.load_model_spec("llama2-7b")
    base = memory_per_chip(spec, "train", hwsim.Plan(), batch=2, seq_len=512)
    plan = hwsim.Plan(placement={"weights": {"hbm": 0.7, "nvme": 0.3}, "optimizer": {"host": 1.0}})
    mem = memory_per_chip(spec, "train", plan, batch=2, seq_len=512)
    tiers = dict(mem.tier_bytes)
    assert mem.weights_bytes == pytest.approx(0.7 * base.weights_bytes)
    assert tiers["nvme"] == pytest.approx(0.3 * (base.weights_bytes + base.gradients_bytes))
    assert tiers["host"] == pytest.approx(base.optimizer_state_bytes)
    assert mem.optimizer_state_bytes == 0
    assert mem.offloaded_bytes == pytest.approx(sum(tiers.values()))


def test_weights_on_nvme_decode_is_the_stream_time() -> None:
    """Batch-1 decode with every layer's weights on NVMe takes each layer's bytes over the
    drive's bandwidth plus its latency per layer; compute hides under the stream."""
    system = _system()
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=1, context_len=512, n_layers=4)
    r = hwsim.simulate(w, system, plan=hwsim.Plan(placement={"weights": {"nvme": 1.0}}))
    nvme = system.tiers["nvme"]
    layer_bytes = layer_param_bytes(w.spec, hwsim.Plan(), "bf16")
    stream_s = 4 * (nvme.latency_s + layer_bytes / nvme.bandwidth_bytes_per_s)
    assert stream_s <= r.latency_s <= 1.05 * stream_s
    reads = [rec.op for rec in _host_records(r) if rec.op.tier == "nvme"]
    assert reads and all(op.op_kind == "host_read" for op in reads)


def test_a_faster_tier_is_never_slower() -> None:
    """Decode with half the weights on NVMe, training with half the activations on CXL:
    more tier bandwidth never lengthens the step."""
    base = _system()
    decode_plan = hwsim.Plan(placement={"weights": {"hbm": 0.5, "nvme": 0.5}})
    train_plan = hwsim.Plan(placement={"activations": {"hbm": 0.5, "cxl": 0.5}})
    for workload, plan, tier in ((_decode(), decode_plan, "nvme"), (_train(), train_plan, "cxl")):
        bw = base.tiers[tier].bandwidth_bytes_per_s
        times = [hwsim.simulate(workload, _with_tier(base, tier, bandwidth_bytes_per_s=bw * k,
                                                     write_bandwidth_bytes_per_s=bw * k), plan=plan).latency_s
                 for k in (0.25, 1.0, 4.0, 64.0)]
        assert times == sorted(times, reverse=True), (tier, times)
        assert times[0] > times[-1]


def test_more_share_in_a_slower_tier_is_never_faster() -> None:
    """Moving weights from HBM to NVMe in steps of a quarter never shortens decode, and a
    share on NVMe is never faster than the same share in host DRAM (a faster link)."""
    w = _decode()
    times = [hwsim.simulate(w, TIERED, plan=hwsim.Plan(
        placement={"weights": {"hbm": 1 - s, "nvme": s}})).latency_s for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert times == sorted(times)
    assert times[-1] > 2 * times[0]
    for share in (0.25, 1.0):
        host, nvme = (hwsim.simulate(w, TIERED, plan=hwsim.Plan(placement={"weights": {"hbm": 1 - share,
                                                                                        tier: share}}))
                      for tier in ("host", "nvme"))
        assert host.latency_s <= nvme.latency_s


def test_activation_offload_trades_memory_for_streams() -> None:
    """Half the saved activations in host memory: half of them leave the chip (less the
    double buffers), and the step moves them out and back over the host link."""
    spec = hwsim.load_model_spec("llama2-7b").model_copy(update={"num_hidden_layers": 2})
    plan = hwsim.Plan(placement={"activations": {"hbm": 0.5, "host": 0.5}})
    base = memory_per_chip(spec, "train", hwsim.Plan(), batch=2, seq_len=512)
    mem = memory_per_chip(spec, "train", plan, batch=2, seq_len=512)
    assert mem.activations_bytes == pytest.approx(0.5 * base.activations_bytes)
    assert dict(mem.tier_bytes)["host"] == pytest.approx(0.5 * base.activations_bytes)
    r = hwsim.simulate(_train(), TIERED, plan=plan)
    kinds = {(rec.op.op_kind, rec.op.tier) for rec in _host_records(r)}
    assert {("host_write", "host"), ("host_read", "host")} <= kinds
    assert r.latency_s >= hwsim.simulate(_train(), TIERED).latency_s
    with pytest.raises(ConfigError, match="activations are offloaded in training only"):
        hwsim.simulate(_decode(), TIERED, plan=plan)


def _cpu_adam_closed_form_s(system: System, n_params: int) -> float:
    """fused AdamW on the host CPU: the larger of 12 FLOP per parameter over the vector
    units' peak and, at each memory level, 22 B per parameter (bf16 weights and gradients,
    fp32 moments; read 2+2+8, write 2+8) over its sustained bandwidth; over the sockets'
    share of one accelerator; plus the CPU's per-kernel overhead."""
    cpu = system.host_cpu
    assert cpu is not None
    chip = cpu.chip
    vec = chip.vector_units
    compute_s = 12 * n_params / (vec.count * vec.flops_per_cycle * vec.clock_hz)
    level_s = []
    for level in chip.memory.values():
        copies = chip.compute_units.count if level.scope == "per_unit" else 1
        assert level.ramp_s == 0
        level_s.append(22 * n_params / (level.bandwidth_bytes_per_s * copies * level.achievable_fraction))
    return (chip.kernel_overhead_s + max(compute_s, *level_s)) / cpu.sockets_per_chip


def test_cpu_adam_time_is_the_closed_form() -> None:
    """ZeRO-Offload: the host CPU's Adam step on the Xeon preset takes the closed form, and
    the gradients go out and the weights come back over the host link."""
    system = _system()
    w = _train()
    r = hwsim.simulate(w, system, plan=hwsim.zero_offload_plan())
    n_params = w.spec.model_copy(update={"num_hidden_layers": 2}).param_count()
    updates = _host_records(r, "host_update")
    assert len(updates) == 1
    took_s = updates[0].end_s - updates[0].start_s
    assert took_s == pytest.approx(_cpu_adam_closed_form_s(system, n_params), rel=1e-9)
    assert "optimizer" not in set(r.to_frame().kind)
    # Half the sockets: twice the time.
    assert system.host_cpu is not None
    fewer = system.host_cpu.model_copy(update={"sockets_per_chip": 0.125})
    r2 = hwsim.simulate(w, system.model_copy(update={"host_cpu": fewer}), plan=hwsim.zero_offload_plan())
    upd2 = _host_records(r2, "host_update")
    assert upd2[0].end_s - upd2[0].start_s == pytest.approx(2 * took_s, rel=1e-9)


def test_optimizer_on_the_host_without_a_cpu_warns() -> None:
    r = hwsim.simulate(_train(), "dgx-h100", plan=hwsim.zero_offload_plan())
    assert any("not timed" in line and "host_cpu" in line for line in r.warnings)


def test_zero_infinity_streams_from_nvme_and_updates_on_the_cpu() -> None:
    """ZeRO-Infinity: ZeRO-3 with weights and optimizer on NVMe; the chip holds neither,
    and the step is slower than with everything in HBM."""
    plan = hwsim.zero_infinity_plan(activations_tier="host")
    assert plan.zero_stage == 3 and plan.recompute
    r = hwsim.simulate(_train(), TIERED, plan=plan)
    tiers = {rec.op.tier for rec in _host_records(r)}
    assert tiers == {"nvme", "host"}
    spec = hwsim.load_model_spec("llama2-7b")
    mem = memory_per_chip(spec, "train", plan, batch=2, seq_len=512)
    assert mem.weights_bytes == 0 and mem.optimizer_state_bytes == 0
    assert r.latency_s > hwsim.simulate(_train(), TIERED, plan=hwsim.Plan(recompute=True)).latency_s


def test_flexgen_amortises_the_stream_over_the_batch() -> None:
    """FlexGen: with the weights streamed from host memory a decode step is stream-bound, so
    a larger block of sequences costs almost no more time and its throughput grows."""
    plan = hwsim.flexgen_plan(weights={"hbm": 0.2, "host": 0.8})
    steps = {b: hwsim.simulate(hwsim.load_workload("llama2-7b", phase="decode", batch=b, context_len=512,
                                                   n_layers=4), TIERED, plan=plan) for b in (1, 8, 32)}
    tps = [b / steps[b].latency_s for b in (1, 8, 32)]
    assert tps == sorted(tps)
    assert steps[32].latency_s < 1.5 * steps[1].latency_s
    assert not math.isclose(tps[0], tps[-1])


def test_cli_places_shares_and_refuses_a_bad_one() -> None:
    """``hwsim simulate --place weights=hbm:0.5,nvme:0.5`` runs; shares that do not sum to 1
    exit with the placement error, no traceback."""
    from click.testing import CliRunner

    from hwsim.cli import main as cli

    args = ["simulate", "--arch", TIERED, "--model", "llama2-7b", "--phase", "decode", "--batch", "2",
            "--n-layers", "2", "--json"]
    ok = CliRunner().invoke(cli, [*args, "--place", "weights=hbm:0.5,nvme:0.5"])
    assert ok.exit_code == 0, ok.output
    assert "weights:device0.5+nvme0.5" in ok.output
    bad = CliRunner().invoke(cli, [*args, "--place", "weights=hbm:0.5,nvme:0.4"])
    assert bad.exit_code != 0 and "shares sum to 0.9" in bad.output
    assert "Traceback" not in bad.output


def test_zero3_ranks_stream_only_their_shard() -> None:
    """ZeRO-Infinity over 4 data-parallel ranks: each rank reads a quarter of a layer's
    weights from NVMe (the all-gather joins the shards)."""
    w = hwsim.load_workload("llama2-7b", phase="train", batch=4, seq_len=256, n_layers=2)
    one = hwsim.simulate(w, TIERED, plan=hwsim.zero_infinity_plan())
    four = hwsim.simulate(w, TIERED, plan=hwsim.zero_infinity_plan(dp=4))
    reads = {n: sorted({rec.op.n_bytes for rec in _host_records(r, "host_read")
                        if rec.name.endswith("weights_stream_nvme")}) for n, r in ((1, one), (4, four))}
    assert reads[1]
    assert [4 * b for b in reads[4]] == pytest.approx(reads[1])


def test_tier_energy_is_bytes_times_its_energy_per_byte_and_simplifications_are_warned() -> None:
    """Weights wholly on NVMe, one decode step: the link energy is every layer's bytes at the
    NVMe tier's pJ/B; the result names what placement simplifies."""
    system = _system()
    w = hwsim.load_workload("llama2-7b", phase="decode", batch=1, context_len=512, n_layers=4)
    r = hwsim.simulate(w, system, plan=hwsim.Plan(placement={"weights": {"nvme": 1.0}}))
    nvme = system.tiers["nvme"]
    expect_j = 4 * layer_param_bytes(w.spec, hwsim.Plan(), "bf16") * nvme.energy_pj_per_byte * 1e-12
    assert r.energy_breakdown_j["interconnect_j"] == pytest.approx(expect_j, rel=1e-9)
    assert any("do not also occupy the host link" in line for line in r.warnings)
    assert any("only the layers' weights stream" in line for line in r.warnings)
    assert all("placement" not in line for line in hwsim.simulate(w, system).warnings)


def test_kv_cache_share_in_host_memory_costs_streams() -> None:
    """More of the KV cache in host memory: decode never faster, and the share read each
    step is the share of the cached keys and values."""
    w = _decode()
    runs = [hwsim.simulate(w, TIERED, plan=hwsim.Plan(placement={"kv_cache": {"hbm": 1 - s, "host": s}}))
            for s in (0.0, 0.5, 1.0)]
    times = [r.latency_s for r in runs]
    assert times == sorted(times) and times[-1] > times[0]
    full = sorted(rec.op.n_bytes for rec in _host_records(runs[2], "host_read"))
    half = sorted(rec.op.n_bytes for rec in _host_records(runs[1], "host_read"))
    assert full and [2 * b for b in half] == pytest.approx(full)
