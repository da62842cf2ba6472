"""Design-space exploration: sweeps and searches over architecture and workload parameters.

>>> from hwsim.sweep import load_spec, sweep            # doctest: +SKIP
>>> result = sweep(load_spec("workloads/sweeps/tpu-like.yaml"), "results/")  # doctest: +SKIP
>>> result.pareto()                                      # doctest: +SKIP

A sweep spec (:class:`SweepSpec`, YAML or Python) names a base architecture, the
workloads to run at each point, the parameters (dotted paths) and how to sample them
(grid, random, LHS, Sobol) or search them (Optuna NSGA-II / TPE), derived parameters,
constraints and objectives. Points run serially, on a local process pool (default) or
on a Dask cluster; rows are persisted to Parquet as they finish and a killed sweep
resumes where it stopped. Heavy dependencies (pyarrow, optuna, dask, scipy) are
imported only when used.
"""

import sys
import types
from typing import Any

from hwsim.sweep.analysis import pareto_mask
from hwsim.sweep.check import load_spec
from hwsim.sweep.result import SweepResult
from hwsim.sweep.run import sweep
from hwsim.sweep.spec import SweepSpec, spec_from_dict

__all__ = ["SweepResult", "SweepSpec", "load_spec", "pareto_mask", "spec_from_dict", "sweep"]


class _CallableModule(types.ModuleType):
    """``hwsim.sweep`` is this package *and* callable as :func:`sweep`, so
    ``hwsim.sweep(spec)`` works without shadowing the package (``import
    hwsim.sweep.store`` keeps working)."""

    def __call__(self, *args: Any, **kwargs: Any) -> SweepResult:
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
