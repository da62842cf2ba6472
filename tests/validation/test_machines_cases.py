"""Issue #17's published check rows (hwsim/validation/machines.py, machines.csv)."""

from __future__ import annotations

import csv
import math

import pytest

from hwsim.validation import THRESHOLDS
from hwsim.validation import machines as m
from hwsim.validation.registry import all_cases


def _rows() -> list[dict[str, str]]:
    with open(m.CSV, newline="") as f:
        return list(csv.DictReader(f))


def test_every_row_is_a_sourced_check_case_with_its_assumptions() -> None:
    """Each CSV row becomes one check case whose source names the document and whose note
    states the assumptions; every group has the issue's 20 % target."""
    rows, cases = _rows(), list(m.machines_cases())
    assert len(cases) == len(rows) >= 50
    assert all(c.role == "check" and not c.fitted for c in cases)
    assert all(r["reference"] and r["note"] and r["source"] for r in rows)
    assert all(THRESHOLDS[c.group] == {"mape_pct": 20.0} for c in cases)
    assert {c.group for c in cases} <= {c.group for c in all_cases()}


def test_every_new_accelerator_family_has_a_check_row() -> None:
    """The issue's families with a published figure here are each checked at least once."""
    systems = {r["system"] for r in _rows()}
    families = ("gaudi2", "gaudi3", "mi300x", "b200", "gb200", "tpu-v5e", "tpu-v6e", "tpu-v5p", "wse3", "cs3",
                "groq", "l4", "l40s", "xeon-8480", "jetson-agx-orin", "apple-m2-ultra", "wormhole-n150",
                "trn2", "mi325x", "snapdragon-8-gen3")
    for family in families:
        assert any(family in s for s in systems), family


@pytest.mark.parametrize("kind", m.KINDS)
def test_one_row_of_each_kind_predicts_a_finite_positive_value(kind: str) -> None:
    """The first case of each kind evaluates to a finite, positive figure in its unit."""
    index = next(i for i, r in enumerate(_rows()) if r["kind"] == kind)
    case = list(m.machines_cases())[index]
    value = case.predict(None)  # type: ignore[arg-type]  # the cases build their own systems
    assert 0 < value < math.inf


def test_static_batch_throughput_is_its_closed_form() -> None:
    """batch x output / (prefill + output x decode step), from the same simulations."""
    import hwsim

    plan = hwsim.Plan()
    got = m.static_batch_tokens_per_s("gaudi2", "llama2-7b", plan, "fp8", 128, 128, 64)
    prefill = hwsim.load_workload("llama2-7b", phase="prefill", batch=64, prompt_len=128, dtype="fp8")
    decode = hwsim.load_workload("llama2-7b", phase="decode", batch=64, context_len=192, dtype="fp8")
    p = hwsim.simulate(prefill, "gaudi2").latency_s
    d = hwsim.simulate(decode, "gaudi2").latency_s
    assert got == pytest.approx(64 * 128 / (p + 128 * d))


def test_an_unknown_kind_or_system_is_refused(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A row of an unknown kind (or on a system with no group) names what it expected."""
    bad = tmp_path / "machines.csv"
    rows = _rows()[:1]
    rows[0]["kind"] = "guess"
    with open(bad, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    monkeypatch.setattr(m, "CSV", bad)
    with pytest.raises(ValueError, match="expected a kind of static_batch"):
        list(m.machines_cases())


def test_single_stream_latency_is_its_closed_form() -> None:
    """One batch-1 prefill plus output x the decode step of the beams, from the same simulations;
    more beams or more output tokens never make a sample faster."""
    import hwsim

    got = m.singlestream_beam_latency_s("jetson-agx-orin", "gpt-j-6b", "int8", 800, 128, 4)
    prefill = hwsim.load_workload("gpt-j-6b", phase="prefill", batch=1, prompt_len=800, dtype="int8")
    decode = hwsim.load_workload("gpt-j-6b", phase="decode", batch=4, context_len=864, dtype="int8")
    p = hwsim.simulate(prefill, "jetson-agx-orin").latency_s
    d = hwsim.simulate(decode, "jetson-agx-orin").latency_s
    assert got == pytest.approx(p + 128 * d)
    assert m.singlestream_beam_latency_s("jetson-agx-orin", "gpt-j-6b", "int8", 800, 128, 8) >= got
    assert m.singlestream_beam_latency_s("jetson-agx-orin", "gpt-j-6b", "int8", 800, 64, 4) < got


def test_a_static_beam_batch_is_its_closed_form_and_the_memory_filling_one_its_special_case() -> None:
    """A static batch of samples per replica gives dp x batch samples over one prefill plus
    output x the decode step of their beams; naming the memory-filling batch's own size as a
    static batch reproduces the memory-filling figure."""
    import hwsim
    from hwsim.validation.multichip import max_batch_per_replica

    plan = hwsim.Plan(dp=2)
    got = m.beam_samples_per_s("xeon-8480-2s", "gpt-j-6b", plan, "int8", 800, 128, 4, 14)
    prefill = hwsim.load_workload("gpt-j-6b", phase="prefill", batch=28, prompt_len=800, dtype="int8")
    decode = hwsim.load_workload("gpt-j-6b", phase="decode", batch=112, context_len=864, dtype="int8")
    p = hwsim.simulate(prefill, "xeon-8480-2s", plan=plan).latency_s
    d = hwsim.simulate(decode, "xeon-8480-2s", plan=plan).latency_s
    assert got == pytest.approx(28 / (p + 128 * d))
    one = hwsim.Plan()
    per = max_batch_per_replica(hwsim.load_system("l4"), one, "gpt-j-6b", 928, "fp8", step=4)
    filling = m.beam_samples_per_s("l4", "gpt-j-6b", one, "fp8", 800, 128, 4)
    assert m.beam_samples_per_s("l4", "gpt-j-6b", one, "fp8", 800, 128, 4, per // 4) == pytest.approx(filling)


def test_gptj_rows_decode_the_benchmarks_lengths_by_how_they_batch() -> None:
    """Every MLPerf GPT-J row decodes either max_new_tokens (a static batch runs to its
    longest sample) or the benchmark's mean generated length (in-flight batching, or a sample
    alone in SingleStream), and a row at the mean cites where the mean comes from."""
    rows = [r for r in _rows() if r["model"] == "gpt-j-6b" and "beam" in r["kind"]]
    assert len(rows) >= 5
    for r in rows:
        out = int(r["output_len"])
        assert out in (m.GPTJ_MEAN_NEW_TOKENS, m.GPTJ_MAX_NEW_TOKENS), r["system"]
        assert r["beams"] == "4"
        if r["kind"] == "mlperf_singlestream_beam" or "in-flight batching" in r["note"]:
            assert out == m.GPTJ_MEAN_NEW_TOKENS, r["system"]
            assert "token_latency_scaling_factor = 69" in r["note"]
        else:
            assert out == m.GPTJ_MAX_NEW_TOKENS and "static batch" in r["note"], r["system"]


def test_weight_only_quantization_reads_fewer_bytes_per_step() -> None:
    """A row's weight_dtype narrows the weights alone: int4 weights under fp16 activations
    decode faster than all-fp16 and no faster than the weight bytes at the memory roof allow;
    the batch-1 prefill is the simulated prefill of the same workload."""
    import hwsim

    args = ("snapdragon-8-gen3", "llama2-7b", "fp16", 1024)
    w4 = m.per_user_tokens_per_s(*args, weight_dtype="int4", kv_dtype="fp16")
    assert w4 > m.per_user_tokens_per_s(*args)
    chip = hwsim.load_arch("snapdragon-8-gen3")
    roof_bytes_per_s = chip.memory["lpddr5x"].bandwidth_bytes_per_s
    assert w4 < roof_bytes_per_s / (6.7e9 * 0.5)  # 6.7 B params at half a byte each
    prefill = hwsim.load_workload("llama2-7b", phase="prefill", batch=1, prompt_len=1024, dtype="fp16",
                                  weight_dtype="int4", kv_dtype="fp16")
    assert m.prefill_batch1_latency_s(*args, weight_dtype="int4", kv_dtype="fp16") == pytest.approx(
        hwsim.simulate(prefill, "snapdragon-8-gen3").latency_s)
