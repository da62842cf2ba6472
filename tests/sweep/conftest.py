"""Shared spec builders for the sweep tests: tiny, fast spaces (2-layer LLaMA-2-7B decode)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

BASE: dict[str, Any] = {
    "name": "tiny",
    "arch": "systolic-128",
    "workloads": [{"model": "llama2-7b", "phase": "decode", "n_layers": 2}],
    "parameters": {
        "compute_units.rows": [32, 64, 128],
        "memory.dram.bandwidth_bytes_per_s": {"low": 5.0e10, "high": 4.0e11, "log": True, "num": 4},
    },
    "derived": {
        "compute_units.cols": "16384 / compute_units.rows",
        "compute_units.flops_per_cycle.bf16": "2 * compute_units.rows * compute_units.cols",
    },
    "objectives": {"latency_s": "min", "energy_per_token_j": "min"},
}


def make_spec(**changes: Any) -> dict[str, Any]:
    """A copy of the tiny spec with top-level keys replaced (None removes a key)."""
    spec = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


@pytest.fixture
def tiny_spec() -> dict[str, Any]:
    return make_spec()
