"""Every validation case the package ships, from each builder (the H100 calibration set
and SCALE-Sim goldens in :mod:`hwsim.validation.cases`, the published comparisons in
their own modules). Kept apart from ``cases`` because the builders import ``Case`` and
the CSV helpers from there."""

from __future__ import annotations

from hwsim.validation.cases import Case, h100_cases, scalesim_cases
from hwsim.validation.decoding import decoding_cases
from hwsim.validation.machines import machines_cases
from hwsim.validation.multichip import multichip_cases
from hwsim.validation.offload import offload_cases
from hwsim.validation.published import published_cases
from hwsim.validation.recsys import recsys_cases
from hwsim.validation.research import research_cases
from hwsim.validation.serving import serving_cases


def all_cases() -> list[Case]:
    """Every validation case the package ships."""
    return [*h100_cases(), *published_cases(), *multichip_cases(), *machines_cases(), *decoding_cases(),
            *offload_cases(), *recsys_cases(), *research_cases(), *scalesim_cases(), *serving_cases()]
