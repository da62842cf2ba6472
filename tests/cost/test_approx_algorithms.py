"""Approximate attention algorithms (top-k, Linformer, Performer, Reformer): closed-form
FLOPs, monotonicity in each parameter, and refusal of bad settings."""

import math
from dataclasses import replace

import pytest

import hwsim
from hwsim.cost import cost_op
from hwsim.cost.approx_algorithms import algorithm_work, topk_kept_pairs
from hwsim.errors import ConfigError
from hwsim.workload.approx_algorithms import ApproxAlgorithm, parse_algorithm
from hwsim.workload.ops import Attention

B, H, N, D = 2, 8, 4096, 64
BIDIR = Attention(B, H, H, N, N, D, is_causal=False)


@pytest.fixture(scope="module")
def h100():
    return hwsim.load_arch("h100-sxm")


def _flops(op: Attention, **algo) -> float:
    return algorithm_work(op, ApproxAlgorithm(**algo))[0]


def test_linformer_flops_closed_form():
    r = 256
    # per head: 4 n r d for the attention against the projections, 4 n r d for projecting K, V
    assert _flops(BIDIR, kind="linformer", rank=r) == B * H * (4 * N * r * D + 4 * N * r * D)


def test_performer_flops_closed_form():
    f = 128
    assert _flops(BIDIR, kind="performer", features=f) == B * H * (8 * N * D * f + 2 * N * f)


def test_topk_flops_closed_form_and_dense_limit():
    k = 64
    assert _flops(BIDIR, kind="topk", k=k) == B * H * (2 * N * N * D + 2 * N * k * D)
    assert _flops(BIDIR, kind="topk", k=N) == pytest.approx(BIDIR.flops)


def test_reformer_flops_closed_form():
    nb, rounds = 64, 2
    seen = min(N, 2 * math.ceil(N / nb))
    want = B * H * rounds * (2 * N * D * nb + 4 * N * seen * D)
    assert _flops(BIDIR, kind="reformer", buckets=nb, rounds=rounds) == pytest.approx(want)


@pytest.mark.parametrize("q,kv,k", [(16, 16, 4), (16, 100, 90), (16, 100, 50), (1, 300, 20), (7, 7, 7)])
def test_topk_kept_pairs_causal_matches_brute_force(q, kv, k):
    op = Attention(1, 1, 1, q, kv, 64)
    brute = sum(min(k, kv - q + i + 1) for i in range(q))
    assert topk_kept_pairs(op, k) == brute


@pytest.mark.parametrize("kind,param,values", [
    ("topk", "k", [8, 64, 512, 4096]),
    ("linformer", "rank", [16, 64, 256, 1024]),
    ("performer", "features", [16, 64, 256, 1024]),
    ("reformer", "rounds", [1, 2, 4, 8]),
])
@pytest.mark.parametrize("op", [Attention(1, 32, 8, 2048, 2048, 128), Attention(4, 32, 8, 1, 16384, 128)],
                         ids=["prefill", "decode"])
def test_cost_is_monotone_in_the_parameter(h100, kind, param, values, op):
    extra = {"buckets": 32} if kind == "reformer" else {}
    costs = [cost_op(replace(op, algorithm=ApproxAlgorithm(kind, **{param: v}, **extra)), h100)
             for v in values]
    flops = [c.flops for c in costs]
    lat = [c.latency_s for c in costs]
    assert flops == sorted(flops) and flops[0] < flops[-1]
    assert lat == sorted(lat)


def test_reformer_more_buckets_means_fewer_pairs():
    pairs = [algorithm_work(BIDIR, ApproxAlgorithm("reformer", buckets=nb))[1] for nb in (8, 32, 128)]
    assert pairs == sorted(pairs, reverse=True)


def test_linear_methods_hold_a_cache_independent_of_context():
    for algo in (ApproxAlgorithm("linformer", rank=128), ApproxAlgorithm("performer", features=128)):
        held = {algorithm_work(Attention(1, 32, 8, 1, ctx, 128), algo)[4] for ctx in (1024, 65536)}
        assert len(held) == 1


@pytest.mark.parametrize("value", [
    {"kind": "topk", "k": 0}, {"kind": "linformer", "rank": -1}, {"kind": "performer", "features": 1.5},
    {"kind": "reformer", "buckets": 7}, {"kind": "reformer", "buckets": True}, {"kind": "nystrom"},
    {"kind": "linformer"}, {"kind": "linformer", "rank": 8, "k": 3}, "linformer", {"rank": 8},
])
def test_bad_settings_are_refused(value):
    with pytest.raises(ConfigError, match="attention_approx"):
        parse_algorithm(value)


def test_load_workload_option_changes_attention_and_warns(h100):
    dense = hwsim.load_workload("llama3-8b", phase="decode", batch=1, context_len=32768, n_layers=2)
    approx = hwsim.load_workload("llama3-8b", phase="decode", batch=1, context_len=32768, n_layers=2,
                                 attention_approx={"kind": "linformer", "rank": 256})
    assert any("linformer (rank 256)" in w for w in approx.warnings)
    frame = hwsim.simulate(approx, h100).to_frame()
    rows = frame[frame["kind"] == "attention"]
    assert len(rows) and all("linformer" in d for d in rows["detail"])
    assert hwsim.simulate(approx, h100).latency_s < hwsim.simulate(dense, h100).latency_s
    with pytest.raises(ConfigError, match="attention_approx"):
        hwsim.load_workload("llama3-8b", phase="decode", attention_approx={"kind": "topk", "k": -3})
    with pytest.raises(ConfigError, match="training"):
        hwsim.load_workload("llama3-8b", phase="train", attention_approx={"kind": "topk", "k": 8})


def test_cli_option_parses_and_refuses():
    from click.testing import CliRunner

    from hwsim.cli import main

    args = ["simulate", "--model", "llama3-8b", "--arch", "h100-sxm", "--phase", "decode", "--n-layers", "1"]
    ok = CliRunner().invoke(main, [*args, "--attention-approx", "performer:features=128"])
    assert ok.exit_code == 0, ok.output
    assert "performer (features 128)" in ok.output
    bad = CliRunner().invoke(main, [*args, "--attention-approx", "reformer:buckets=7"])
    assert bad.exit_code != 0 and "even count" in bad.output
