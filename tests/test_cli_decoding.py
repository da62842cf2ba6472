"""CLI flags for decoding strategies and KV policies."""

from __future__ import annotations

import json

from click.testing import CliRunner

from hwsim.cli.group import main


def test_simulate_speculative_request() -> None:
    """--decoding with its params reaches the workload; the result reports the figures."""
    args = ["simulate", "--phase", "request", "--prompt-len", "64", "--new-tokens", "16", "--n-layers", "2",
            "--decoding", "speculative", "--decoding-param", "draft=llama2-7b",
            "--decoding-param", "draft_n_layers=1", "--decoding-param", "acceptance_rate=1.0",
            "--decoding-param", "k=3", "--json"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    params = json.loads(out.stdout)["params"]
    assert params["accepted_tokens_per_step"] == 4.0
    assert params["decode_steps"] == 4


def test_serve_beam_and_policy() -> None:
    """hwsim serve takes the same flags; metrics carry the strategy's figures."""
    args = ["serve", "--requests", "4", "--prompt-len", "32", "--output-len", "8", "--n-layers", "2",
            "--decoding", "beam", "--decoding-param", "n_beams=2", "--kv-policy", "streaming",
            "--kv-param", "window_tokens=60", "--json"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["sequences_per_request"] == 2.0


def test_bad_decoding_param_is_an_error_not_a_traceback() -> None:
    """An unknown field or a malformed pair exits with a named error."""
    runner = CliRunner()
    out = runner.invoke(main, ["simulate", "--phase", "request", "--decoding", "beam",
                               "--decoding-param", "width=2"])
    assert out.exit_code != 0 and "width" in out.output and "Traceback" not in out.output
    out = runner.invoke(main, ["simulate", "--phase", "request", "--decoding-param", "k=2"])
    assert out.exit_code != 0 and "--decoding" in out.output
