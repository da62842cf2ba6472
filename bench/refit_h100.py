"""Refit the h100-sxm parameters that were fitted on rows of the calibration set, on the
rows marked ``fit`` alone (``role`` column of ``hwsim/validation/data/h100/*.csv``), and
print the refit values beside the preset's and the MAPE of every H100 group's fit and
check rows before and after. It edits nothing: copy what you accept into
``arch_configs/h100-sxm.yaml`` (and h200-sxm.yaml, which carries them over).

The procedure of the first calibration (CHANGELOG, issue #3), on the fit rows only, in
this order, each step on the preset with the earlier steps applied:

1. ``kernel_overhead_s``, ``launch_overhead_s``, ``memory.hbm.ramp_s`` and
   ``memory.hbm.ramp_bytes`` jointly, on the fit rows of ``h100 gemm bf16`` and
   ``h100 model decode``. The loss is the mean of the two groups' MAPE, so the three
   decode rows (which separate the per-kernel from the per-pass overhead) weigh as much
   as the 48 GEMM rows. Nelder-Mead in log space from the preset's values.
2. ``vector_units.attention_exp_overlap`` on the fit rows of ``h100 attention``.
3. ``vector_kernels.softmax.ops_per_element`` on the softmax fit rows of
   ``h100 elementwise``.

Values are rounded to two significant digits, as the preset writes them. The other
fitted parameters (achievable fractions, energies, host_dispatch_s, power limit) are each
fitted on one measurement that no other row repeats, so the split leaves them as they are.

    PYTHONPATH=. python bench/refit_h100.py
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize, minimize_scalar

import hwsim
from hwsim.arch import with_overrides
from hwsim.arch.model import Chip
from hwsim.validation import all_cases, run_validation, summarize
from hwsim.validation.cases import Case

OVERHEADS = ("kernel_overhead_s", "launch_overhead_s", "memory.hbm.ramp_s", "memory.hbm.ramp_bytes")
OVERLAP = "vector_units.attention_exp_overlap"
SOFTMAX = "vector_kernels.softmax.ops_per_element"


def _get(chip: Chip, path: str) -> float:
    node = chip.model_dump()
    for part in path.split("."):
        node = node[part]
    return float(node)  # type: ignore[arg-type]


def _mape(cases: Sequence[Case], chip: Chip) -> float:
    return float(run_validation(cases, {"h100-sxm": chip})["error_pct"].abs().mean())


def _fit_rows(group: str, name_has: str = "") -> list[Case]:
    return [c for c in all_cases() if c.group == group and c.role == "fit" and name_has in c.name]


def _round2(x: float) -> float:
    return float(f"{x:.2g}")


def _overheads(chip: Chip) -> dict[str, float]:
    gemm, decode = _fit_rows("h100 gemm bf16"), _fit_rows("h100 model decode")

    def loss(x: np.ndarray) -> float:
        trial = with_overrides(chip, dict(zip(OVERHEADS, np.exp(x).tolist(), strict=True)))
        return (_mape(gemm, trial) + _mape(decode, trial)) / 2

    start = np.log([_get(chip, p) for p in OVERHEADS])
    res = minimize(loss, start, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-4, "maxiter": 400})
    print(f"1. on {len(gemm)} GEMM + {len(decode)} decode fit rows: "
          f"loss {loss(start):.3f} -> {res.fun:.3f} %")
    return {p: _round2(v) for p, v in zip(OVERHEADS, np.exp(res.x), strict=True)}


def _scalar(chip: Chip, key: str, cases: list[Case], bounds: tuple[float, float], step: str) -> float:
    best = minimize_scalar(lambda v: _mape(cases, with_overrides(chip, {key: v})), bounds=bounds,
                           method="bounded", options={"xatol": 1e-3 * (bounds[1] - bounds[0])})
    print(f"{step} on {len(cases)} fit rows: MAPE {_mape(cases, chip):.2f} -> {best.fun:.2f} %")
    return _round2(best.x)


def _h100_summary(chip: Chip) -> dict[str, tuple[float, float]]:
    cases = [c for c in all_cases() if c.arch == "h100-sxm" and c.group.startswith("h100 ")]
    s = summarize(run_validation(cases, {"h100-sxm": chip}))
    return {row.group: (row.fit_mape_pct, row.mape_pct) for row in s.itertuples()}


def main() -> None:
    preset = hwsim.load_arch("h100-sxm")
    refit = _overheads(preset)
    chip = with_overrides(preset, refit)
    refit[OVERLAP] = _scalar(chip, OVERLAP, _fit_rows("h100 attention"), (0.0, 1.0), "2.")
    chip = with_overrides(chip, refit)
    refit[SOFTMAX] = _scalar(chip, SOFTMAX, _fit_rows("h100 elementwise", "softmax"), (1.0, 400.0), "3.")
    chip = with_overrides(chip, refit)
    for key, value in refit.items():
        print(f"  {key}: {_get(preset, key):.3g} -> {value:.3g}")
    before, after = _h100_summary(preset), _h100_summary(chip)
    print("group: fit-row MAPE before -> after; check-row MAPE before -> after (%)")
    for group in before:
        (fb, cb), (fa, ca) = before[group], after[group]
        print(f"  {group}: fit {fb:.2f} -> {fa:.2f}; check {cb:.2f} -> {ca:.2f}")


if __name__ == "__main__":
    main()
