"""Request streams: arrival processes hit their rates and CVs, seeds are deterministic,
lengths follow their specs, and every bad input names its source, row and column."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hwsim.engine.serve.profiles import PROFILES, QUANTILES_PCT, quantile_distribution
from hwsim.engine.serve.requests import Request, Requests
from hwsim.errors import ConfigError


def test_offline_puts_every_request_at_zero() -> None:
    """Offline: n requests at t = 0 with the given fixed lengths."""
    r = Requests.offline(7, 128, 16)
    assert len(r) == 7
    assert np.all(r.arrival_s == 0.0) and r.span_s == 0.0 and math.isnan(r.mean_rate_per_s)
    assert r.total_prompt_tokens == 7 * 128 and r.total_output_tokens == 7 * 16
    assert np.all(r.prefix_id == -1)


def test_poisson_mean_rate_for_large_n() -> None:
    """200k Poisson arrivals at 8/s: measured rate within 5 standard errors (1/sqrt(n))."""
    n, rate = 200_000, 8.0
    r = Requests.poisson(n, rate, 10, 10, seed=3)
    assert r.arrival_s[0] == 0.0 and np.all(np.diff(r.arrival_s) >= 0)
    assert r.mean_rate_per_s == pytest.approx(rate, rel=5 / math.sqrt(n))
    gaps = np.diff(r.arrival_s)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.02)  # exponential: CV 1


@pytest.mark.parametrize("cv", [0.5, 2.0, 4.0])
def test_bursty_gamma_cv_and_rate(cv: float) -> None:
    """Gamma gaps: mean 1/rate and the requested coefficient of variation."""
    n, rate = 200_000, 5.0
    gaps = np.diff(Requests.bursty(n, rate, cv, 1, 1, seed=11).arrival_s)
    # Standard error of the mean gap is cv / rate / sqrt(n); allow 5 of them.
    assert 1.0 / gaps.mean() == pytest.approx(rate, rel=5 * cv / math.sqrt(n))
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)


def test_bursty_with_cv_one_is_poisson() -> None:
    """cv = 1 draws exactly the Poisson stream of the same seed."""
    a = Requests.poisson(500, 3.0, 64, PROFILES["chat"].output_len, seed=5)
    b = Requests.bursty(500, 3.0, 1.0, 64, PROFILES["chat"].output_len, seed=5)
    assert a == b


def test_same_seed_identical_arrays_and_different_seed_differs() -> None:
    """Determinism: a seed reproduces every array bit for bit; another seed does not."""
    spec = {"prompt_len": PROFILES["code"].prompt_len, "output_len": stats.poisson(40)}
    a = Requests.bursty(1000, 2.0, 2.5, seed=9, **spec)
    b = Requests.bursty(1000, 2.0, 2.5, seed=9, **spec)
    c = Requests.bursty(1000, 2.0, 2.5, seed=10, **spec)
    for name in ("arrival_s", "prompt_len", "output_len", "prefix_id"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    assert not np.array_equal(a.prompt_len, c.prompt_len)


def test_lengths_do_not_depend_on_the_arrival_process() -> None:
    """The seed's length streams are the same for offline, Poisson and bursty."""
    dist = {"prompt_len": stats.lognorm(1.0, scale=300), "output_len": stats.geom(0.01)}
    offline = Requests.offline(300, seed=4, **dist)
    poisson = Requests.poisson(300, 1.0, seed=4, **dist)
    assert np.array_equal(offline.prompt_len, poisson.prompt_len)
    assert np.array_equal(offline.output_len, poisson.output_len)


def test_sequence_lengths_are_cycled() -> None:
    """A sequence repeats from its start; a longer one is cut to n."""
    r = Requests.offline(5, [128, 2048], (3, 4, 5, 6, 7, 8))
    assert list(r.prompt_len) == [128, 2048, 128, 2048, 128]
    assert list(r.output_len) == [3, 4, 5, 6, 7]


def test_distribution_draws_are_rounded_and_clipped() -> None:
    """Draws become whole tokens in [1, max]: a normal around 0 hits both clips."""
    r = Requests.offline(2000, stats.norm(0, 50), stats.uniform(0.4, 0.2), max_prompt_len=20)
    assert r.prompt_len.min() == 1 and r.prompt_len.max() == 20
    assert np.all(r.output_len == 1)  # 0.4..0.6 rounds to 0 or 1, then clips to 1
    assert r.prompt_len.dtype == np.int64


def test_fixed_length_above_maximum_is_refused() -> None:
    """A fixed length beyond max_prompt_len is an error, not silently clipped."""
    pattern = r"Requests.offline: prompt_len: length 4097 exceeds the maximum 4096"
    with pytest.raises(ConfigError, match=pattern):
        Requests.offline(3, 4097, 1, max_prompt_len=4096)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"rate_per_s": 0.0}, r"Requests.poisson: rate_per_s: must be a finite number > 0, got 0.0"),
    ({"rate_per_s": -2.0}, r"rate_per_s: must be a finite number > 0"),
    ({"rate_per_s": math.inf}, r"rate_per_s: must be a finite number > 0, got inf"),
    ({"rate_per_s": math.nan}, r"rate_per_s: must be a finite number > 0, got nan"),
    ({"n": 0}, r"Requests.poisson: n: must be a whole number >= 1, got 0"),
    ({"n": 2.5}, r"n: must be a whole number >= 1, got 2.5"),
    ({"prompt_len": 0}, r"prompt_len: lengths must be whole numbers >= 1, got 0"),
    ({"output_len": -3}, r"output_len: lengths must be whole numbers >= 1, got -3"),
    ({"output_len": 2.5}, r"output_len: lengths must be whole numbers >= 1, got 2.5"),
    ({"output_len": math.nan}, r"output_len: lengths must be whole numbers >= 1"),
    ({"output_len": []}, r"output_len: a sequence of lengths must be one-dimensional and non-empty"),
    ({"output_len": "128"}, r"output_len: must be an int, a sequence of ints or a distribution"),
    ({"seed": -1}, r"seed: must be a non-negative integer, got -1"),
])
def test_generator_arguments_are_checked(kwargs: dict[str, object], pattern: str) -> None:
    """Bad rates, counts, lengths and seeds raise a ConfigError naming the argument."""
    args: dict[str, object] = {"n": 10, "rate_per_s": 1.0, "prompt_len": 8, "output_len": 8,
                               "seed": 0, **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        Requests.poisson(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("cv", [0.0, -1.0, math.nan])
def test_bursty_refuses_bad_cv(cv: float) -> None:
    """cv <= 0 or NaN is refused."""
    with pytest.raises(ConfigError, match=r"Requests.bursty: cv: must be a finite number > 0"):
        Requests.bursty(10, 1.0, cv, 1, 1)


def _write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_from_csv_reads_and_sorts_stably(tmp_path: Path) -> None:
    """Unsorted arrivals are sorted, ties keep file order; an empty prefix_id is -1."""
    path = _write(tmp_path, "arrival_s,prompt_len,output_len,prefix_id\n"
                            "2.0,10,1,\n0.5,20,2,7\n0.5,30,3,\n0.0,40,4,7\n")
    r = Requests.from_csv(path)
    assert list(r.arrival_s) == [0.0, 0.5, 0.5, 2.0]
    assert list(r.prompt_len) == [40, 20, 30, 10]
    assert list(r.prefix_id) == [7, 7, -1, -1]
    assert r[1] == Request(0.5, 20, 2, 7)


def test_from_csv_without_prefix_column_and_with_extra_columns(tmp_path: Path) -> None:
    """prefix_id is optional; other columns are ignored; spaces after commas are fine."""
    r = Requests.from_csv(_write(tmp_path, "note, arrival_s, prompt_len, output_len\na, 0, 5, 6\n"))
    assert len(r) == 1 and r[0] == Request(0.0, 5, 6, -1)


@pytest.mark.parametrize(("body", "pattern"), [
    ("arrival_s,prompt_len,output_len\n0,5,6\n1,-5,6\n",
     r"trace.csv: row 2 \(line 3\), column prompt_len: must be a length >= 1 token, got '-5'"),
    ("arrival_s,prompt_len,output_len\n0,5,0\n",
     r"row 1 \(line 2\), column output_len: must be a length >= 1 token, got '0'"),
    ("arrival_s,prompt_len,output_len\n0,5,6\n0,5,2.5\n",
     r"row 2 \(line 3\), column output_len: must be a whole number, got '2.5'"),
    ("arrival_s,prompt_len,output_len\n0,,6\n",
     r"row 1 \(line 2\), column prompt_len: missing value"),
    ("arrival_s,prompt_len,output_len\n0,NaN,6\n",
     r"row 1 \(line 2\), column prompt_len: not a number: 'NaN'"),
    ("arrival_s,prompt_len,output_len\n0,abc,6\n",
     r"row 1 \(line 2\), column prompt_len: not a number: 'abc'"),
    ("arrival_s,prompt_len,output_len\n-1,5,6\n",
     r"row 1 \(line 2\), column arrival_s: arrival must be >= 0 s, got '-1'"),
    ("arrival_s,prompt_len,output_len\nnan,5,6\n",
     r"row 1 \(line 2\), column arrival_s: not a number: 'nan'"),
    ("arrival_s,prompt_len,output_len\ninf,5,6\n",
     r"row 1 \(line 2\), column arrival_s: arrival must be finite, got 'inf'"),
    ("arrival_s,prompt_len,output_len,prefix_id\n0,5,6,-2\n",
     r"row 1 \(line 2\), column prefix_id: must be a prefix id >= -1"),
    ("arrival_s,prompt_len\n0,5\n",
     r"trace.csv: columns: missing column\(s\) output_len; found: arrival_s, prompt_len"),
    ("arrival_s,prompt_len,output_len\n",
     r"trace.csv: rows: no requests \(the table has no rows\)"),
    ("", r"trace.csv: file: empty file"),
    ("\n  \n", r"trace.csv: file: empty file"),
])
def test_csv_errors_name_file_row_and_column(tmp_path: Path, body: str, pattern: str) -> None:
    """Every bad CSV raises a ConfigError naming the file, the row and line, and the column."""
    with pytest.raises(ConfigError, match=pattern):
        Requests.from_csv(_write(tmp_path, body))


def test_csv_lists_every_bad_cell(tmp_path: Path) -> None:
    """Several problems come back together, one line each, in row order."""
    path = _write(tmp_path, "arrival_s,prompt_len,output_len\n0,0,6\n-1,5,x\n")
    with pytest.raises(ConfigError) as info:
        Requests.from_csv(path)
    assert len(info.value.problems) == 3
    assert "row 1 (line 2), column prompt_len" in info.value.problems[0]
    assert "row 2 (line 3), column arrival_s" in info.value.problems[1]
    assert "row 2 (line 3), column output_len: not a number: 'x'" in info.value.problems[2]


def test_csv_unreadable_and_not_utf8(tmp_path: Path) -> None:
    """A missing file, a directory and Latin-1 bytes each get a ConfigError naming the file."""
    with pytest.raises(ConfigError, match=r"nope.csv: file: cannot read"):
        Requests.from_csv(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match=r"file: cannot read"):
        Requests.from_csv(tmp_path)
    latin = tmp_path / "latin.csv"
    body = "arrival_s,prompt_len,output_len\n0,5,6 caf\xe9\n".encode("latin-1")
    latin.write_bytes(body)
    pattern = rf"latin.csv: file: not UTF-8 text \(byte 0xe9 at offset {body.index(0xE9)}\)"
    with pytest.raises(ConfigError, match=pattern):
        Requests.from_csv(latin)


def test_constructor_refuses_decreasing_arrivals_but_from_frame_sorts() -> None:
    """Requests(...) wants sorted arrivals; from_frame sorts them."""
    with pytest.raises(ConfigError, match=r"row 2, column arrival_s: arrivals must be non-decreasing"):
        Requests([1.0, 0.5], [1, 1], [1, 1])
    frame = pd.DataFrame({"arrival_s": [1.0, 0.5], "prompt_len": [1, 2], "output_len": [3, 4]})
    assert list(Requests.from_frame(frame).prompt_len) == [2, 1]


def test_from_frame_nan_length_is_a_missing_value() -> None:
    """A NaN in a float column reads as a missing value at its row."""
    frame = pd.DataFrame({"arrival_s": [0.0, 1.0], "prompt_len": [5.0, np.nan], "output_len": [1, 1]})
    with pytest.raises(ConfigError, match=r"DataFrame: row 2, column prompt_len: missing value"):
        Requests.from_frame(frame)


def test_arrays_are_read_only() -> None:
    """Requests is immutable: arrays cannot be written, attributes cannot be set."""
    r = Requests.offline(3, 1, 1)
    with pytest.raises(ValueError):
        r.prompt_len[0] = 5
    with pytest.raises(AttributeError):
        r.prompt_len = np.ones(3, dtype=np.int64)  # type: ignore[misc]


def test_head_slice_and_mask() -> None:
    """head, slices and masks return Requests in arrival order."""
    r = Requests.poisson(10, 1.0, list(range(1, 11)), 1, seed=1)
    assert list(r.head(3).prompt_len) == [1, 2, 3]
    assert list(r[2:4].prompt_len) == [3, 4]
    assert list(r[r.prompt_len % 2 == 0].prompt_len) == [2, 4, 6, 8, 10]
    assert list(r[np.array([5, 1])].prompt_len) == [2, 6]  # re-sorted by arrival


def test_merge_orders_by_arrival_and_keeps_totals() -> None:
    """Merging two streams interleaves them by arrival; ties favour the first stream."""
    a = Requests([0.0, 2.0], [1, 1], [1, 1])
    b = Requests([1.0, 2.0], [2, 2], [2, 2])
    m = a.merge(b)
    assert list(m.arrival_s) == [0.0, 1.0, 2.0, 2.0]
    assert list(m.prompt_len) == [1, 2, 1, 2]
    assert (a + b) == m
    assert m.total_output_tokens == a.total_output_tokens + b.total_output_tokens


def test_with_max_len_fits_the_context() -> None:
    """with_max_len: prompt + output <= context, each at least 1, separate caps honoured."""
    r = Requests.offline(4, [10, 5000, 4095, 100], [10, 10, 10, 5000])
    c = r.with_max_len(4096)
    assert np.all(c.prompt_len + c.output_len <= 4096)
    assert list(c.prompt_len) == [10, 4095, 4095, 100]
    assert list(c.output_len) == [10, 1, 1, 3996]
    capped = r.with_max_len(max_prompt_len=64, max_output_len=8)
    assert capped.prompt_len.max() == 64 and capped.output_len.max() == 8


def test_to_frame_columns() -> None:
    """to_frame has one row per request and the documented columns."""
    frame = Requests.offline(3, 2, 4).to_frame()
    assert list(frame.columns) == ["request", "arrival_s", "prompt_len", "output_len", "prefix_id"]
    assert len(frame) == 3 and list(frame["request"]) == [0, 1, 2]


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_reproduce_their_percentiles(name: str) -> None:
    """Each profile's distributions give back the trace's percentiles within 1 token
    (2% of the knot for the steep tails) and draw whole tokens inside the knots."""
    profile = PROFILES[name]
    for dist, knots in ((profile.prompt_len, profile.prompt_knots),
                        (profile.output_len, profile.output_knots)):
        for q, knot in zip(QUANTILES_PCT[1:-1], knots[1:-1], strict=True):
            assert dist.ppf(q / 100) == pytest.approx(knot, abs=max(1.0, 0.02 * knot))
        draws = dist.rvs(size=1000, random_state=np.random.default_rng(0))
        assert draws.min() >= math.floor(knots[0]) and draws.max() <= math.ceil(knots[-1])


def test_profile_means_match_the_traces() -> None:
    """Profile means are within 3 tokens of the traces' (docs/serving_profiles.md)."""
    means = {"chat": (1154.7, 211.1), "code": (2047.8, 27.9), "summarization": (2588.1, 291.4)}
    for name, (prompt_mean, output_mean) in means.items():
        profile = PROFILES[name]
        assert profile.prompt_len.mean() == pytest.approx(prompt_mean, abs=35)  # code: +31
        assert profile.output_len.mean() == pytest.approx(output_mean, abs=3.5)


def test_profile_lengths_splat_into_a_constructor() -> None:
    """PROFILES[...].lengths() feeds a constructor directly."""
    r = Requests.poisson(100, 2.0, **PROFILES["summarization"].lengths())
    assert r.prompt_len.max() <= 4054 and r.output_len.max() <= 4056


def test_quantile_distribution_point_mass_and_bad_knots() -> None:
    """Coinciding knots are a point mass; decreasing knots are refused."""
    knots = (6.0, 6.0, 6.0, 7.0, 8.0, 9.0, 11.0, 13.0, 16.0, 20.0, 29.0, 55.0, 90.0, 251.5, 825.3, 1899.0)
    dist = quantile_distribution(knots)
    assert dist.cdf(6) == pytest.approx(0.075, abs=0.01)  # 5 % below the 5th percentile + half a bin
    with pytest.raises(ValueError):
        quantile_distribution(knots[::-1])
