"""A stream of LLM requests: when each arrives, its prompt and output lengths, its prefix.

:class:`Requests` is immutable data (numpy arrays, read-only) with constructors for the
usual workloads: everything at t = 0 (offline, MLPerf Offline and max-throughput runs), a
Poisson process (MLPerf Server, vLLM's benchmark), a bursty gamma renewal process, and a
CSV or DataFrame trace. It knows nothing of the engine.

Conventions
-----------
- Arrival processes start at t = 0: the first request arrives at 0 and the ``n - 1``
  gaps after it are drawn, so a run's window (first arrival to last completion) carries
  no idle lead-in.
- A length is an ``int`` (every request), a sequence (cycled: ``[128, 2048]`` alternates;
  a sequence longer than ``n`` is cut to its first ``n`` entries), or an object with an
  ``rvs(size=, random_state=)`` method such as a ``scipy.stats`` frozen distribution or a
  profile from :data:`PROFILES`. Draws are rounded to whole tokens and clipped to
  ``[1, max_*_len]``; fixed lengths above a given maximum are refused rather than clipped.
- Seeds: one ``numpy.random.SeedSequence(seed)`` is split into three streams (gaps,
  prompt lengths, output lengths), so a seed gives the same lengths whatever the arrival
  process, and identical arrays on every run.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd

from hwsim.engine.serve.profiles import PROFILES, LengthProfile
from hwsim.engine.serve.validate import (
    check_arrays,
    check_count,
    check_length_spec,
    check_positive,
    config_error,
)

__all__ = ["PROFILES", "LengthProfile", "LengthSampler", "Request", "Requests"]

COLUMNS = ("arrival_s", "prompt_len", "output_len")


class LengthSampler(Protocol):
    """Anything that draws lengths like a ``scipy.stats`` frozen distribution."""

    def rvs(self, size: int, random_state: np.random.Generator) -> Any: ...


LengthSpec = int | Sequence[int] | np.ndarray | LengthSampler


class Request(NamedTuple):
    """One request, as ``Requests[i]`` returns it."""

    arrival_s: float
    prompt_len: int
    output_len: int
    prefix_id: int


def _lengths(spec: Any, n: int, rng: np.random.Generator, what: str, max_len: int | None,
             source: str) -> np.ndarray:
    """``n`` lengths from an int, a sequence or a distribution (see module docstring)."""
    if hasattr(spec, "rvs") and not isinstance(spec, (int, float, np.number, Sequence, np.ndarray)):
        draws = np.asarray(spec.rvs(size=n, random_state=rng), dtype=np.float64).reshape(-1)
        if draws.shape != (n,) or not np.all(np.isfinite(draws)):
            raise config_error(source, what, "its distribution drew non-finite or misshapen values")
        return np.clip(np.rint(draws), 1, max_len if max_len is not None else np.inf).astype(np.int64)
    values = check_length_spec(spec, source, what, max_len)
    return np.resize(values, n)


def _streams(seed: int, source: str) -> list[np.random.Generator]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise config_error(source, "seed", f"must be a non-negative integer, got {seed!r}")
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(3)]


@dataclass(frozen=True, init=False, eq=False)
class Requests:
    """An immutable stream of requests, sorted by arrival.

    Parameters
    ----------
    arrival_s : array_like of float
        Arrival times in seconds, finite, >= 0 and non-decreasing.
    prompt_len, output_len : array_like of int
        Prompt and output lengths in tokens, whole numbers >= 1.
    prefix_id : array_like of int, optional
        Shared-prefix group of each request (prefix caching); -1 (the default) is none.
    source : str
        Named in error messages (a file name, ``"Requests.poisson"``...).

    Raises
    ------
    hwsim.errors.ConfigError
        Naming the source, the row (1-based) and the column of every bad value.
    """

    arrival_s: np.ndarray
    prompt_len: np.ndarray
    output_len: np.ndarray
    prefix_id: np.ndarray
    source: str

    def __init__(self, arrival_s: Any, prompt_len: Any, output_len: Any, prefix_id: Any = None,
                 *, source: str = "requests") -> None:
        n = np.size(arrival_s)
        columns = {"arrival_s": arrival_s, "prompt_len": prompt_len, "output_len": output_len,
                   "prefix_id": np.full(n, -1) if prefix_id is None else prefix_id}
        checked = check_arrays(columns, source)
        for name, values in checked.items():
            values.flags.writeable = False
            object.__setattr__(self, name, values)
        object.__setattr__(self, "source", source)

    # -- constructors ---------------------------------------------------------------------

    @classmethod
    def offline(cls, n: int, prompt_len: LengthSpec, output_len: LengthSpec, seed: int = 0, *,
                max_prompt_len: int | None = None, max_output_len: int | None = None) -> Requests:
        """``n`` requests all arriving at t = 0 (MLPerf Offline, max-throughput runs)."""
        return cls._generate("Requests.offline", n, None, prompt_len, output_len, seed,
                             max_prompt_len, max_output_len)

    @classmethod
    def poisson(cls, n: int, rate_per_s: float, prompt_len: LengthSpec, output_len: LengthSpec,
                seed: int = 0, *, max_prompt_len: int | None = None,
                max_output_len: int | None = None) -> Requests:
        """``n`` requests from a Poisson process of ``rate_per_s`` (exponential gaps)."""
        rate = check_positive(rate_per_s, "Requests.poisson", "rate_per_s")
        return cls._generate("Requests.poisson", n, (rate, 1.0), prompt_len, output_len, seed,
                             max_prompt_len, max_output_len)

    @classmethod
    def bursty(cls, n: int, rate_per_s: float, cv: float, prompt_len: LengthSpec,
               output_len: LengthSpec, seed: int = 0, *, max_prompt_len: int | None = None,
               max_output_len: int | None = None) -> Requests:
        """``n`` requests whose gaps are gamma-distributed with mean ``1 / rate_per_s`` and
        coefficient of variation ``cv`` (shape ``1 / cv**2``). ``cv = 1`` is the Poisson
        process (the same draws as :meth:`poisson`); ``cv > 1`` is burstier, ``cv < 1``
        more regular."""
        rate = check_positive(rate_per_s, "Requests.bursty", "rate_per_s")
        shape = 1.0 / check_positive(cv, "Requests.bursty", "cv") ** 2
        return cls._generate("Requests.bursty", n, (rate, shape), prompt_len, output_len, seed,
                             max_prompt_len, max_output_len)

    @classmethod
    def _generate(cls, source: str, n: int, process: tuple[float, float] | None,
                  prompt_len: LengthSpec, output_len: LengthSpec, seed: int,
                  max_prompt_len: int | None, max_output_len: int | None) -> Requests:
        n = check_count(n, source, "n")
        maxima = [None if m is None else check_count(m, source, name)
                  for m, name in ((max_prompt_len, "max_prompt_len"), (max_output_len, "max_output_len"))]
        gaps_rng, prompt_rng, output_rng = _streams(seed, source)
        arrival = np.zeros(n)
        if process is not None:
            rate, shape = process
            gaps = (gaps_rng.exponential(1.0 / rate, n - 1) if shape == 1.0
                    else gaps_rng.gamma(shape, 1.0 / (rate * shape), n - 1))
            arrival[1:] = np.cumsum(gaps)
        return cls(arrival, _lengths(prompt_len, n, prompt_rng, "prompt_len", maxima[0], source),
                   _lengths(output_len, n, output_rng, "output_len", maxima[1], source), source=source)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, source: str = "DataFrame",
                   first_line: int | None = None) -> Requests:
        """Requests from a frame with columns ``arrival_s, prompt_len, output_len`` and
        optionally ``prefix_id`` (an empty cell there means none); other columns are
        ignored. Rows are sorted by arrival, stably (ties keep their order).

        ``first_line`` (for CSV readers) is the file line of the first row, so errors name
        the line as well as the row.
        """
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            found = ", ".join(map(str, frame.columns)) or "none"
            raise config_error(source, "columns", f"missing column(s) {', '.join(missing)}; "
                                    f"found: {found}")
        if len(frame) == 0:
            raise config_error(source, "rows", "no requests (the table has no rows)")
        columns: dict[str, Any] = {c: frame[c].to_numpy() for c in COLUMNS}
        if "prefix_id" in frame.columns:
            prefix = frame["prefix_id"].to_numpy(dtype=object)
            prefix[pd.isna(prefix)] = -1  # an empty cell: no shared prefix
            columns["prefix_id"] = prefix
        else:
            columns["prefix_id"] = np.full(len(frame), -1)
        checked = check_arrays(columns, source, sort=True, first_line=first_line)
        return cls(checked["arrival_s"], checked["prompt_len"], checked["output_len"],
                   checked["prefix_id"], source=source)

    @classmethod
    def from_csv(cls, path: str | PathLike[str]) -> Requests:
        """Requests from a CSV file with a header row naming the columns of
        :meth:`from_frame`. Errors name the file, the row and its line, and the column."""
        path = Path(path)
        source = str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise config_error(source, "file", f"cannot read: {exc.strerror or exc}") from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise config_error(source, "file", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                                    f"offset {exc.start})") from None
        if not text.strip():
            raise config_error(source, "file", "empty file (expected a header row "
                                    "arrival_s,prompt_len,output_len[,prefix_id] and rows)")
        try:
            frame = pd.read_csv(io.StringIO(text), skipinitialspace=True, dtype=str,
                                keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, ValueError) as exc:
            raise config_error(source, "file", f"not a readable CSV table: {exc}") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        return cls.from_frame(frame, source=source, first_line=2)

    # -- views ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    def __getitem__(self, index: int | slice | np.ndarray) -> Any:
        """``r[i]`` is a :class:`Request`; a slice, mask or index array gives ``Requests``
        (re-sorted by arrival if the indices were out of order)."""
        if isinstance(index, (int, np.integer)):
            i = int(index)
            return Request(float(self.arrival_s[i]), int(self.prompt_len[i]),
                           int(self.output_len[i]), int(self.prefix_id[i]))
        picked = {name: getattr(self, name)[index] for name in ("arrival_s", "prompt_len",
                                                                 "output_len", "prefix_id")}
        order = np.argsort(picked["arrival_s"], kind="stable")
        return Requests(*(picked[c][order] for c in (*COLUMNS, "prefix_id")), source=self.source)

    def head(self, n: int) -> Requests:
        """The first ``n`` requests by arrival."""
        return self[: check_count(n, self.source, "n")]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Requests):
            return NotImplemented
        return all(np.array_equal(getattr(self, c), getattr(other, c))
                   for c in (*COLUMNS, "prefix_id"))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"Requests(n={len(self)}, span_s={self.span_s:.6g}, "
                f"mean_prompt_len={self.prompt_len.mean():.1f}, "
                f"mean_output_len={self.output_len.mean():.1f}, source={self.source!r})")

    @property
    def total_prompt_tokens(self) -> int:
        """Sum of prompt lengths (tokens)."""
        return int(self.prompt_len.sum())

    @property
    def total_output_tokens(self) -> int:
        """Sum of output lengths (tokens)."""
        return int(self.output_len.sum())

    @property
    def span_s(self) -> float:
        """Last arrival minus first arrival (s); 0 for an offline stream."""
        return float(self.arrival_s[-1] - self.arrival_s[0])

    @property
    def mean_rate_per_s(self) -> float:
        """Measured arrival rate, ``(n - 1) / span_s`` (the unbiased estimate for a Poisson
        process); NaN when every request arrives at once."""
        return (len(self) - 1) / self.span_s if self.span_s > 0 else float("nan")

    def to_frame(self) -> pd.DataFrame:
        """One row per request: ``request, arrival_s, prompt_len, output_len, prefix_id``."""
        return pd.DataFrame({"request": np.arange(len(self)), "arrival_s": self.arrival_s,
                             "prompt_len": self.prompt_len, "output_len": self.output_len,
                             "prefix_id": self.prefix_id})

    # -- derived streams ------------------------------------------------------------------

    def merge(self, *others: Requests) -> Requests:
        """All requests of ``self`` and ``others`` in one stream ordered by arrival; on
        equal arrival times ``self``'s requests come first, then each other's in order."""
        parts = (self, *others)
        cat = {c: np.concatenate([getattr(p, c) for p in parts]) for c in (*COLUMNS, "prefix_id")}
        order = np.argsort(cat["arrival_s"], kind="stable")
        return Requests(*(cat[c][order] for c in (*COLUMNS, "prefix_id")), source=self.source)

    __add__ = merge

    def with_max_len(self, max_total_len: int | None = None, *, max_prompt_len: int | None = None,
                     max_output_len: int | None = None) -> Requests:
        """Lengths clipped to a model's limits: prompts to ``max_prompt_len`` (and to
        ``max_total_len - 1``), outputs to ``max_output_len`` and to what the context
        ``max_total_len`` leaves after the prompt. Every request keeps >= 1 of each."""
        prompt, output = self.prompt_len.copy(), self.output_len.copy()
        if max_prompt_len is not None:
            prompt = np.minimum(prompt, check_count(max_prompt_len, self.source, "max_prompt_len"))
        if max_output_len is not None:
            output = np.minimum(output, check_count(max_output_len, self.source, "max_output_len"))
        if max_total_len is not None:
            total = check_count(max_total_len, self.source, "max_total_len")
            if total < 2:
                raise config_error(self.source, "max_total_len", "must be >= 2 (one prompt and "
                                        "one output token)")
            prompt = np.minimum(prompt, total - 1)
            output = np.minimum(output, total - prompt)
        return Requests(self.arrival_s, prompt, output, self.prefix_id, source=self.source)

