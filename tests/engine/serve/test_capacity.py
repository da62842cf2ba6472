"""Capacity search (hwsim.find_capacity): monotone in the SLO, deterministic, the
throughput bound when the SLO does not bind, bracketed and bisected, bad input refused,
and one ServeCache changes no result."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

import hwsim
from hwsim.cli import main
from hwsim.engine.serve.capacity import CapacityResult, search_capacity
from hwsim.errors import ConfigError

#: A small deployment: two layers of LLaMA-2-7B on one H100, 120 requests per run.
SHAPE = {"model": "llama2-7b", "n_requests": 120, "prompt_len": 512, "output_len": 32, "n_layers": 2}


@pytest.fixture(scope="module")
def cache() -> hwsim.ServeCache:
    return hwsim.ServeCache()


def _capacity(slo: hwsim.SLO, cache: hwsim.ServeCache, **kw: object) -> CapacityResult:
    return hwsim.find_capacity("h100-sxm", slo=slo, cache=cache, **{**SHAPE, **kw})  # type: ignore[arg-type]


def test_tight_slo_is_bisected_between_a_met_and_a_missed_rate(cache: hwsim.ServeCache) -> None:
    """A TTFT limit that binds: the answer lies below the bound, met there and missed
    within rel_tol above; every point below the answer met, every point above missed."""
    res = _capacity(hwsim.SLO(ttft_s=0.004), cache)
    assert 0 < res.rate_per_s < res.bound_rate_per_s
    assert res.upper_rate_per_s - res.rate_per_s <= 0.05 * res.upper_rate_per_s
    frame = res.to_frame()
    assert math.isinf(frame["rate_per_s"].iloc[0])  # the offline run comes first
    finite = frame[frame["rate_per_s"].map(math.isfinite)]
    assert finite.loc[finite["rate_per_s"] <= res.rate_per_s, "meets_slo"].all()
    assert not finite.loc[finite["rate_per_s"] > res.rate_per_s, "meets_slo"].any()
    assert res.best is not None and res.best.metrics["ttft_p99_s"] <= 0.004
    assert res.requests_per_s_per_chip == res.rate_per_s  # one chip


def test_looser_slo_gives_higher_capacity(cache: hwsim.ServeCache) -> None:
    """Capacity never falls as the limit is loosened."""
    rates = [_capacity(hwsim.SLO(ttft_s=t), cache).rate_per_s for t in (0.003, 0.004, 0.008)]
    assert rates[0] > 0
    assert rates[0] < rates[1] <= rates[2]


def test_capacity_is_deterministic(cache: hwsim.ServeCache) -> None:
    """The same search twice (and without a shared cache) gives the same points."""
    slo = hwsim.SLO(ttft_s=0.004)
    a = _capacity(slo, cache)
    b = hwsim.find_capacity("h100-sxm", slo=slo, **SHAPE)
    assert a.rate_per_s == b.rate_per_s
    assert a.to_frame().equals(b.to_frame())


def test_loose_slo_reaches_the_offline_throughput_bound(cache: hwsim.ServeCache) -> None:
    """Closed case: with a limit no run comes near, the capacity is the offline run's
    requests/s (n / its duration), found in two runs."""
    res = _capacity(hwsim.SLO(e2e_s=100.0), cache)
    offline = hwsim.serve(hwsim.Requests.offline(120, 512, 32), "h100-sxm", model="llama2-7b", n_layers=2)
    assert res.bound_rate_per_s == pytest.approx(offline.metrics["requests_per_s"], rel=1e-12)
    assert res.rate_per_s == res.bound_rate_per_s and res.is_throughput_bound
    assert len(res.points) == 2


def test_an_unmeetable_slo_gives_zero(cache: hwsim.ServeCache) -> None:
    """A TTFT limit below one request's prefill: no rate meets it, capacity 0."""
    res = _capacity(hwsim.SLO(ttft_s=1e-6), cache, max_evals=6)
    assert res.rate_per_s == 0 and res.best is None and res.output_tokens_per_s == 0
    assert not any(p.meets_slo for p in res.points) and len(res.points) == 6


@pytest.mark.parametrize(("slo", "kw", "match"), [
    (hwsim.SLO(), {}, "at least one limit"),
    (None, {}, "expected hwsim.SLO"),
    (hwsim.SLO(ttft_s=1.0), {"rel_tol": 0.0}, "rel_tol"),
    (hwsim.SLO(ttft_s=1.0), {"max_evals": 1}, "max_evals"),
])
def test_bad_search_is_refused(slo: object, kw: dict[str, object], match: str) -> None:
    """No limit, no SLO, or a search that cannot converge: a ConfigError saying which."""
    with pytest.raises(ConfigError, match=match):
        hwsim.find_capacity("h100-sxm", slo=slo, **{**SHAPE, **kw})  # type: ignore[arg-type]


def test_negative_limit_is_refused() -> None:
    """An impossible limit is refused where the SLO is made."""
    with pytest.raises(ConfigError, match="ttft_s"):
        hwsim.SLO(ttft_s=-1.0)


def test_search_stays_below_the_bound_with_a_fake_server() -> None:
    """The search itself on a made-up server that meets the SLO up to 7 requests/s,
    with a bound of 10: halving then bisection lands within rel_tol below 7."""

    class Fake:
        def __init__(self, rate: float) -> None:
            met = rate <= 7.0
            self.metrics = {"n_requests": 1.0, "n_completed": 1.0, "requests_per_s": 10.0,
                            "slo_met": float(met)}

    res = search_capacity(lambda r: Fake(r), hwsim.SLO(ttft_s=1.0), 2, rel_tol=0.01)  # type: ignore[arg-type,return-value]
    assert 7.0 * 0.99 <= res.rate_per_s <= 7.0 < res.upper_rate_per_s
    assert res.bound_rate_per_s == 10.0 and res.requests_per_s_per_chip == res.rate_per_s / 2


def test_cli_find_capacity() -> None:
    """`hwsim serve --find-capacity` prints the answer and its points; JSON too; without
    a limit, or with --rate, it says what to change."""
    args = ["serve", "--arch", "h100-sxm", "--n-layers", "2", "--requests", "60", "--prompt-len", "512",
            "--output-len", "16", "--find-capacity"]
    out = CliRunner().invoke(main, [*args, "--slo-ttft-ms", "4"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("capacity: ") and "offline" in out.output
    js = CliRunner().invoke(main, [*args, "--slo-ttft-ms", "4", "--json"])
    assert js.exit_code == 0, js.output
    data = json.loads(js.output)
    assert data["summary"]["capacity_requests_per_s"] > 0 and data["points"][0]["rate_per_s"] is None
    bad = CliRunner().invoke(main, args)
    assert bad.exit_code != 0 and "at least one limit" in bad.output
    clash = CliRunner().invoke(main, [*args, "--slo-ttft-ms", "4", "--rate", "3", "--cv", "2"])
    assert clash.exit_code != 0 and "drop --cv" in clash.output
    fewest = CliRunner().invoke(main, [*args, "--arch", "dgx-h100", "--slo-ttft-ms", "4", "--rate", "5",
                                       "--dp", "4"])
    assert fewest.exit_code == 0, fewest.output
    assert fewest.output.startswith("replicas: ")


def test_fewest_replicas_meet_a_rate_that_one_cannot() -> None:
    """At a rate above one replica's capacity, more replicas are needed; the answer meets
    the SLO and one fewer does not; an impossible limit gives None."""
    cache = hwsim.ServeCache()
    slo = hwsim.SLO(ttft_s=0.004)
    one = _capacity(slo, cache)
    res = hwsim.find_replicas("dgx-h100", rate_per_s=2.5 * one.rate_per_s, slo=slo, cache=cache, **SHAPE)
    assert res.replicas is not None and 2 <= res.replicas <= 8
    frame = res.to_frame().set_index("replicas")
    assert bool(frame.loc[res.replicas, "meets_slo"])
    if res.replicas - 1 in frame.index:
        assert not bool(frame.loc[res.replicas - 1, "meets_slo"])
    assert res.best is not None and res.best.metrics["ttft_p99_s"] <= 0.004
    none = hwsim.find_replicas("dgx-h100", rate_per_s=10.0, slo=hwsim.SLO(ttft_s=1e-6), cache=cache, **SHAPE)
    assert none.replicas is None and len(none.points) == 1
    with pytest.raises(ConfigError, match="max_replicas"):
        hwsim.find_replicas("dgx-h100", rate_per_s=1.0, slo=slo, max_replicas=0, **SHAPE)
