"""``hwsim simulate`` reaches the recommendation models (``--phase inference|train``,
``--n-chips``, ``--sharding``, ``--embedding-dtype``), ``hwsim list recsys`` shows them,
and ``--attention-pruning`` applies a research design's attention approximation."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

import hwsim
from hwsim.cli import main
from hwsim.workload.dlrm import list_dlrm_models


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def as_json(res: Result) -> dict[str, object]:
    assert res.exit_code == 0, res.output
    out: dict[str, object] = json.loads(res.stdout)
    return out


def test_dlrm_inference_matches_the_api() -> None:
    """The CLI's DLRM inference step is the API's, dtype override included."""
    res = run("simulate", "--model", "dlrm-rm2", "--phase", "inference", "--batch", "2048",
              "--embedding-dtype", "fp16", "--json")
    api = hwsim.simulate(hwsim.load_workload("dlrm-rm2", phase="inference", batch=2048,
                                             embedding_dtype="fp16"), "h100-sxm")
    assert as_json(res)["latency_s"] == pytest.approx(api.latency_s, rel=1e-12)


def test_dlrm_phase_defaults_to_inference() -> None:
    """A recsys model without --phase runs its forward step, not a transformer decode."""
    default = as_json(run("simulate", "--model", "dlrm-rm2", "--batch", "512", "--json"))
    given = as_json(run("simulate", "--model", "dlrm-rm2", "--phase", "inference", "--batch", "512",
                        "--json"))
    assert default["phase"] == "inference"
    assert default["latency_s"] == given["latency_s"]


def test_dlrm_train_sharded_over_a_system_matches_the_api() -> None:
    """--phase train --n-chips 8 --sharding row on dgx-h100 is the API's sharded step."""
    res = run("simulate", "--arch", "dgx-h100", "--model", "dlrm-rm2", "--phase", "train",
              "--batch", "8192", "--n-chips", "8", "--sharding", "row", "--json")
    w = hwsim.load_workload("dlrm-rm2", phase="train", batch=8192, n_chips=8, sharding="row")
    api = hwsim.simulate(w, "dgx-h100")
    out = as_json(res)
    assert out["latency_s"] == pytest.approx(api.latency_s, rel=1e-12)
    params = out["params"]
    assert isinstance(params, dict)
    assert (params["n_chips"], params["sharding"]) == (8, "row")


def test_dlrm_shardings_differ() -> None:
    """Table- and row-wise sharding are different programs, so their steps differ."""
    times = {s: as_json(run("simulate", "--arch", "dgx-h100", "--model", "dlrm-rm2", "--phase", "train",
                            "--batch", "8192", "--n-chips", "8", "--sharding", s, "--json"))["latency_s"]
             for s in ("table", "row")}
    assert times["table"] != times["row"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--model", "dlrm-rm2", "--phase", "decode"], "phase: expected one of inference, train"),
    (["--model", "llama2-7b", "--sharding", "row"], "sharding: unknown option"),
    (["--model", "dlrm-rm2", "--embedding-dtype", "fp7"], "embedding_dtype"),
    (["--model", "dlrm-rm2", "--sharding", "diagonal"], "Invalid value for '--sharding'"),
    (["--model", "dlrm-rm2", "--n-chips", "0"], "Invalid value for '--n-chips'"),
    (["--model", "dlrm-rm2", "--arch", "dgx-h100", "--tp", "2"], "not by a parallelism plan"),
    (["--model", "dlrm-rm2", "--attention-pruning", "selection=topk"], "it has no attention"),
])
def test_bad_recsys_options_exit_2_without_traceback(args: list[str], needle: str) -> None:
    """Wrong phase, a recsys option on a transformer, a bad dtype or count: one clean error."""
    res = run("simulate", *args)
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output


def test_list_recsys_shows_every_shipped_model() -> None:
    """`hwsim list recsys` has one row per workloads/recsys preset with its table count."""
    rows = json.loads(run("list", "recsys", "--json").stdout)
    assert [r["name"] for r in rows] == list_dlrm_models()
    assert {"dlrm-mlperf", "dlrm-criteo1tb", "dlrm-rm2"} <= {r["name"] for r in rows}
    rm2 = next(r for r in rows if r["name"] == "dlrm-rm2")
    assert rm2["n_tables"] == 8
    assert rm2["embedding_rows"] == 8_000_000


SMALL_PREFILL = ["simulate", "--model", "llama2-7b", "--n-layers", "2", "--phase", "prefill",
                 "--prompt-len", "4096", "--json"]


def test_attention_approx_matches_the_api_and_says_so() -> None:
    """--attention-pruning KEY=VALUE is approximate_attention with those fields, and warns."""
    settings = {"selection": "topk", "token_keep": 0.25, "head_keep": 0.5}
    flags = [a for k, v in settings.items() for a in ("--attention-pruning", f"{k}={v}")]
    out = as_json(run(*SMALL_PREFILL, *flags))
    w = hwsim.load_workload("llama2-7b", phase="prefill", n_layers=2, prompt_len=4096)
    api = hwsim.simulate(hwsim.approximate_attention(w, settings), "h100-sxm")
    dense = as_json(run(*SMALL_PREFILL))
    assert out["latency_s"] == pytest.approx(api.latency_s, rel=1e-12)
    assert out["latency_s"] < dense["latency_s"]
    assert any("attention approximated" in str(x) for x in out["warnings"])  # type: ignore[attr-defined]


def test_attention_approx_per_layer_list() -> None:
    """A YAML list gives one fraction per layer, as the API's tuple does."""
    out = as_json(run(*SMALL_PREFILL, "--attention-pruning", "selection=topk",
                      "--attention-pruning", "token_keep=[1.0,0.5]"))
    w = hwsim.load_workload("llama2-7b", phase="prefill", n_layers=2, prompt_len=4096)
    api = hwsim.simulate(hwsim.approximate_attention(w, {"selection": "topk", "token_keep": (1.0, 0.5)}),
                         "h100-sxm")
    assert out["latency_s"] == pytest.approx(api.latency_s, rel=1e-12)


@pytest.mark.parametrize(("flags", "needle"), [
    (["selection=topk", "token_keep=1.5"],
     "--attention-pruning: token_keep: fractions kept must lie in (0, 1]"),
    (["bogus=1"], "--attention-pruning: bogus: unknown setting"),
    (["token_keep"], "--attention-pruning: expected KEY=VALUE"),
    (["token_keep=[1,"], "--attention-pruning: token_keep: cannot read"),
    (["token_keep=0.5"], "needs selection hardware"),
    (["selection=magic", "token_keep=0.5"], "selection: unknown 'magic'"),
    (["selection=topk", "token_keep=[0.5,0.9]"], "must not rise"),
])
def test_bad_attention_approx_exits_2_without_traceback(flags: list[str], needle: str) -> None:
    """Out-of-range, unknown, malformed or inconsistent settings: one clean error line."""
    res = run("simulate", "--model", "llama2-7b", "--n-layers", "2",
              *[a for f in flags for a in ("--attention-pruning", f)])
    assert res.exit_code == 2, res.output
    assert needle in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("extra", [["--phase", "train"], ["--arch", "dgx-h100", "--tp", "2"]])
def test_attention_approx_refuses_training_and_plans(extra: list[str]) -> None:
    """Approximate attention is single-chip inference: training and plans are refused."""
    res = run("simulate", "--model", "llama2-7b", "--n-layers", "2", *extra,
              "--attention-pruning", "selection=topk", "--attention-pruning", "token_keep=0.5")
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "attention" in res.output


def test_compare_serve_refuses_a_recsys_model() -> None:
    """Serving is token generation: a recsys model under --serve is one clean error."""
    res = run("compare", "--serve", "--model", "dlrm-rm2", "--arch", "dgx-h100", "--requests", "2")
    assert res.exit_code == 2, res.output
    assert "recommendation model" in res.output and "Traceback" not in res.output


def test_compare_runs_a_recsys_model_on_each_arch() -> None:
    """hwsim compare with a recsys model: one inference row per architecture."""
    res = run("compare", "--model", "dlrm-rm2", "--batch", "2048", "--arch", "h100-sxm", "--arch", "tpu-v4",
              "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["arch"] for r in rows] == ["h100-sxm", "tpu-v4"]
    assert all(r["phase"] == "inference" and r["latency_s"] > 0 for r in rows)
