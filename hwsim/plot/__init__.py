"""Charts of results: roofline, energy breakdown, timeline, comparison, Pareto, heatmap;
and of serving runs: latency CDFs, throughput against latency, KV/batch/queue timelines.

The only package that imports matplotlib, and only inside functions: importing
``hwsim.plot`` does not import matplotlib. Every display follows one pattern
(scikit-learn's): a ``from_*`` class method computes the data and calls
``plot(ax=None)``, which draws on the given axes (a new pyplot figure if None) and
returns the display; data and artists are kept in attributes ending in ``_``
(``figure_``, ``ax_``...). Nothing here calls ``plt.show()``; :func:`save_figure` writes
a figure without timestamps (the CLI uses it).

>>> import hwsim
>>> from hwsim.plot import RooflineDisplay
>>> r = hwsim.simulate(hwsim.load_workload("llama2-7b", phase="decode", batch=8), "h100-sxm")
>>> display = RooflineDisplay.from_result(r)        # doctest: +SKIP
>>> display.figure_.savefig("roofline.png")         # doctest: +SKIP
"""

from hwsim.plot._common import new_figure, save_figure
from hwsim.plot.compare import DEFAULT_METRICS, ComparisonDisplay, metric_label
from hwsim.plot.energy import EnergyDisplay, energy_frame
from hwsim.plot.pareto import HeatmapDisplay, ParetoDisplay, pareto_front
from hwsim.plot.roofline import RooflineDisplay, roofline_ceilings, roofline_points
from hwsim.plot.serving import LatencyCDFDisplay, ServingTimelineDisplay, ThroughputLatencyDisplay
from hwsim.plot.timeline import TimelineDisplay

__all__ = [
    "DEFAULT_METRICS",
    "ComparisonDisplay",
    "EnergyDisplay",
    "HeatmapDisplay",
    "LatencyCDFDisplay",
    "ParetoDisplay",
    "RooflineDisplay",
    "ServingTimelineDisplay",
    "ThroughputLatencyDisplay",
    "TimelineDisplay",
    "energy_frame",
    "metric_label",
    "new_figure",
    "pareto_front",
    "roofline_ceilings",
    "roofline_points",
    "save_figure",
]
