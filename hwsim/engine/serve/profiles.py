"""Request-length profiles measured from public LLM serving traces.

Each profile is a pair of discrete distributions (prompt tokens, output tokens) that
reproduce the percentiles of one published trace. The derivation, with every source, is
in ``docs/serving_profiles.md``; in short:

- ``"chat"``: Azure LLM inference trace 2023, conversation service (19,366 requests,
  1 h on 2023-11-16), the trace of Patel et al., "Splitwise", ISCA 2024
  (Azure/AzurePublicDataset ``AzureLLMInferenceTrace_conv.csv``).
- ``"code"``: the same trace's coding service (8,819 requests)
  (``AzureLLMInferenceTrace_code.csv``).
- ``"summarization"``: arXiv summarization as tokenised by Vidur (Agrawal et al., MLSys
  2024) with the Llama-2 tokenizer and filtered to at most 4,096 tokens per request
  (28,257 requests; microsoft/vidur
  ``data/processed_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv``).

The fit: the percentiles at :data:`QUANTILES_PCT` of each column were computed from the
trace (numpy's linear interpolation, rounded to 0.1 token); the distribution's CDF runs
linearly between consecutive percentiles and jumps where two coincide (a point mass, as
the code trace's 6-token outputs), and is then discretised to whole tokens. So every
listed percentile is reproduced to within a token and the means agree to within 3 tokens
(docs/serving_profiles.md lists them). Prompt and output lengths are drawn independently:
the traces' log-length correlation is 0.09 (chat), 0.00 (code) and -0.48 (summarization,
because of its 4,096-token filter), so summarization requests drawn from the profile can
exceed 4,096 tokens in total; ``Requests.with_max_len(4096)`` restores the bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

#: The percentiles (in %) at which each trace column was measured.
QUANTILES_PCT: tuple[float, ...] = (0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9, 100)


def quantile_distribution(knots: tuple[float, ...]) -> Any:
    """A discrete distribution on whole tokens whose CDF interpolates ``knots``.

    Parameters
    ----------
    knots : tuple of float
        The token counts at :data:`QUANTILES_PCT` (non-decreasing, first >= 1).

    Returns
    -------
    scipy.stats.rv_discrete
        With support on the integers from ``floor(knots[0])`` to ``ceil(knots[-1])``;
        integer ``v`` carries the probability the piecewise-linear CDF gives to
        ``[v - 0.5, v + 0.5)``.
    """
    k = np.asarray(knots, dtype=np.float64)
    if k.shape != (len(QUANTILES_PCT),) or np.any(np.diff(k) < 0) or k[0] < 1:
        raise ValueError(f"knots must be {len(QUANTILES_PCT)} non-decreasing token counts >= 1")
    lo, hi = k[:-1], k[1:]
    mass = np.diff(np.asarray(QUANTILES_PCT)) / 100.0
    width = hi - lo
    values = np.arange(int(np.floor(k[0])), int(np.ceil(k[-1])) + 1)

    def cdf(x: np.ndarray) -> np.ndarray:
        # Linear within a bin of positive width; a step (point mass) in a zero-width bin.
        frac = np.where(width > 0, np.clip((x[:, None] - lo) / np.where(width > 0, width, 1.0), 0, 1),
                        (x[:, None] >= lo).astype(np.float64))
        return np.asarray((frac * mass).sum(axis=1))

    pmf = cdf(values + 0.5) - cdf(values - 0.5)
    keep = pmf > 0
    return stats.rv_discrete(values=(values[keep], pmf[keep] / pmf[keep].sum()))


@dataclass(frozen=True)
class LengthProfile:
    """Prompt and output length distributions of one workload class.

    Attributes
    ----------
    name : str
        The key in :data:`PROFILES`.
    prompt_knots, output_knots : tuple of float
        Token counts at :data:`QUANTILES_PCT`, measured from the trace.
    source : str
        Where the trace comes from.
    prompt_len, output_len : scipy.stats.rv_discrete
        The distributions built from the knots (pass them to ``Requests.poisson`` etc.).
    """

    name: str
    prompt_knots: tuple[float, ...]
    output_knots: tuple[float, ...]
    source: str
    prompt_len: Any = field(init=False, repr=False, compare=False)
    output_len: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_len", quantile_distribution(self.prompt_knots))
        object.__setattr__(self, "output_len", quantile_distribution(self.output_knots))

    def lengths(self) -> dict[str, Any]:
        """``{"prompt_len": ..., "output_len": ...}``, to splat into a ``Requests``
        constructor: ``Requests.poisson(n, rate, **PROFILES["chat"].lengths())``."""
        return {"prompt_len": self.prompt_len, "output_len": self.output_len}


_AZURE = ("Azure LLM inference trace 2023 (Patel et al., Splitwise, ISCA 2024), "
          "Azure/AzurePublicDataset data/AzureLLMInferenceTrace_{}.csv; identical copy in "
          "microsoft/vidur data/processed_traces/splitwise_{}.csv")

#: The shipped profiles, by name.
PROFILES: dict[str, LengthProfile] = {
    "chat": LengthProfile(
        "chat",
        (2.0, 29.0, 181.0, 207.0, 387.0, 403.0, 703.0, 1020.0, 1071.0, 1130.0, 1315.0, 2734.5,
         4083.0, 4142.0, 6179.2, 14050.0),
        (7.0, 16.0, 41.0, 54.0, 77.0, 91.0, 103.0, 129.0, 177.0, 384.0, 400.0, 424.0, 451.0,
         601.0, 954.0, 1000.0),
        _AZURE.format("conv", "conv"),
    ),
    "code": LengthProfile(
        "code",
        (3.0, 17.0, 75.0, 147.0, 385.6, 770.0, 1075.0, 1469.0, 1909.0, 2433.0, 3192.4, 5187.6,
         7303.3, 7436.0, 7437.0, 7437.0),
        (6.0, 6.0, 6.0, 7.0, 8.0, 9.0, 11.0, 13.0, 16.0, 20.0, 29.0, 55.0, 90.0, 251.5, 825.3,
         1899.0),
        _AZURE.format("code", "code"),
    ),
    "summarization": LengthProfile(
        "summarization",
        (1.0, 73.0, 748.6, 1242.0, 1802.0, 2150.0, 2453.0, 2730.0, 2996.0, 3249.0, 3490.0,
         3702.0, 3813.0, 3933.4, 4011.7, 4054.0),
        (5.0, 36.0, 60.0, 78.0, 104.0, 125.0, 145.0, 167.0, 192.0, 222.0, 268.0, 372.0, 736.2,
         3271.3, 3844.5, 4056.0),
        "arXiv summarization, Llama-2 tokenizer, <= 4096 tokens per request (Vidur, Agrawal et "
        "al., MLSys 2024), microsoft/vidur data/processed_traces/"
        "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
    ),
}
