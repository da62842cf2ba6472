"""Published quantized speed-ups (quantized_speedup.csv): every row is a sourced check
case, and a whole-request speed-up lies between its prefill's and its decode step's."""

import pytest

import hwsim
from hwsim.validation.cases import _rows
from hwsim.validation.published import FOLDER, _speedup, quantized_speedup_cases


def test_every_row_is_a_check_case_with_a_commit_in_its_source():
    """Each row becomes one check case; each source pins a commit and a table."""
    rows = _rows(FOLDER / "quantized_speedup.csv")
    cases = list(quantized_speedup_cases())
    assert len(cases) == len(rows) >= 21
    assert all(c.role == "check" for c in cases)
    for source in {r["source"] for r in rows}:  # later rows of a source may say "as above"
        assert any("commit" in r["reference"] for r in rows if r["source"] == source), source
    assert {r["phase"] for r in rows} == {"decode", "request"}


def test_request_speedup_lies_between_prefill_and_decode_speedups():
    """A request's time is its prefill plus its decode steps, so its speed-up is a weighted
    mean of theirs (with the decode steps at the mean context)."""
    chip = hwsim.load_arch("h200-sxm")

    def prefill_s(prec):
        w = hwsim.load_workload("llama3.1-8b", phase="prefill", batch=8, prompt_len=2048, precision=prec)
        return hwsim.simulate(w, chip).latency_s

    request = _speedup("llama3.1-8b", 8, 2048, "w4a16-zp", output_len=128)(chip)
    decode = _speedup("llama3.1-8b", 8, 2048 + 64, "w4a16-zp")(chip)
    prefill = prefill_s(None) / prefill_s("w4a16-zp")
    assert min(prefill, decode) < request < max(prefill, decode)


def test_unknown_phase_is_refused(tmp_path, monkeypatch):
    """A row whose phase is neither decode nor request fails with the column named."""
    text = (FOLDER / "quantized_speedup.csv").read_text().replace(",decode,0", ",prefill,0", 1)
    (tmp_path / "quantized_speedup.csv").write_text(text)
    monkeypatch.setattr("hwsim.validation.published.FOLDER", tmp_path)
    with pytest.raises(ValueError, match="phase"):
        list(quantized_speedup_cases())
