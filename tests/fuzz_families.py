"""The input families the fuzz runs (see ``tests/fuzzing.py`` for how a case is judged).

Each family yields mutations of one kind of input and says how to judge what loads: a
chip is simulated on single ops and a tiny model's decode step, a system on that decode
split over two chips, a sweep spec on two of its points, a workload on h100-sxm. Adding
a family is one entry in :data:`FAMILIES` (model ``config.json`` files wait in
:data:`PENDING_FAMILIES` until their loader is strict).
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

import hwsim
from hwsim._yaml import parse_yaml
from hwsim.arch import Chip, load_arch
from hwsim.arch.system import System, load_system
from hwsim.errors import HwsimError
from hwsim.workload.lower import lower
from hwsim.workload.spec import load_model_spec, spec_from_dict
from tests.fuzzing import (
    _TMP,
    ROOT,
    Case,
    Impossible,
    _write,
    assert_physical,
    dump,
    file_family,
    kwargs_family,
    mutate_data,
    mutate_text,
)

TINY_MODEL = {"name": "tiny", "model_type": "llama", "hidden_size": 256, "intermediate_size": 512,
              "num_attention_heads": 8, "num_key_value_heads": 4, "num_hidden_layers": 2,
              "vocab_size": 1000, "hidden_act": "silu", "rms_norm_eps": 1e-5}


@cache
def _tiny_spec() -> Any:
    return spec_from_dict(TINY_MODEL, "tiny")


@cache
def _tiny_model_file() -> Path:
    return _write("tiny-model.yaml", yaml.safe_dump(TINY_MODEL).encode())


def _dtype(chip: Chip) -> str:
    return "bf16" if "bf16" in chip.supported_dtypes else chip.supported_dtypes[0]


def check_chip(chip: Chip) -> None:
    """Single ops everywhere (they fit any chip), then a tiny model's decode step."""
    dtype = _dtype(chip)
    for w in (hwsim.ops.gemm(256, 512, 384, dtype=dtype),
              hwsim.ops.attention(2, 8, 4, 16, 256, 64, dtype=dtype),
              hwsim.ops.elementwise("rmsnorm", (64, 256), dtype=dtype)):
        assert_physical(hwsim.simulate(w, chip), f"{chip.name}: {w.name}")
    w = lower(_tiny_spec(), "decode", batch=2, context_len=128, dtype=dtype)
    assert_physical(hwsim.simulate(w, chip), f"{chip.name}: tiny decode")


def check_system(system: System) -> None:
    """The tiny model's decode split tensor-parallel over two chips (collectives, links),
    or on the one chip a one-chip system has."""
    dtype = _dtype(system.chip)
    plan = hwsim.Plan(tp=2) if system.n_chips >= 2 else None
    w = lower(_tiny_spec(), "decode", batch=2, context_len=128, dtype=dtype, plan=plan)
    assert_physical(hwsim.simulate(w, system, plan=plan), f"{system.name}: tiny decode")


def check_workload(w: hwsim.Workload, arch: str = "h100-sxm") -> None:
    assert_physical(hwsim.simulate(w, arch), f"{arch}: {w.name}")


def _small_workload(**kwargs: Any) -> hwsim.Workload:
    return hwsim.load_workload("llama2-7b", **kwargs)


def _plan_workload(**kwargs: Any) -> tuple[hwsim.Plan, hwsim.Workload]:
    plan = hwsim.Plan(**kwargs)
    return plan, lower(_tiny_spec(), "train", batch=8, seq_len=64, plan=plan)


def _check_planned(built: tuple[hwsim.Plan, hwsim.Workload]) -> None:
    plan, w = built
    assert_physical(hwsim.simulate(w, "dgx-h100", plan=plan), f"dgx-h100: {plan.label()}")


def sweep_family(rng: random.Random, n: int) -> Iterator[Case]:
    """Mutated sweep specs (the shipped one and the test suite's tiny one), loaded and
    checked; two points of what loads are evaluated and their rows judged."""
    from tests.sweep.conftest import BASE as tiny

    shipped = [parse_yaml(p.read_text()) for p in sorted((ROOT / "workloads" / "sweeps").glob("*.yaml"))]
    for i in range(n):
        base = tiny if i % 3 else rng.choice(shipped)
        if rng.random() < 0.2:
            raw, how, refuse = mutate_text(dump(base).decode(), rng)
        else:
            data, how, refuse = mutate_data(base, rng)
            raw = dump(data)
        path = _write(f"sweep-{i}.yaml", raw)
        yield Case(how, (str(path),), lambda p=path: hwsim.load_sweep_spec(p), check_sweep, refuse)


def check_sweep(spec: Any) -> None:
    """Two corner points of a loaded spec: a row either has an error said in words, or
    finite, non-negative metrics (never a silent gap, never a Python exception as reason)."""
    from hwsim.sweep.check import compile_spec
    from hwsim.sweep.evaluate import evaluate_tasks
    from hwsim.sweep.sample import grid_values, with_derived

    compiled = compile_spec(spec)
    axes = [grid_values(p) if p.values is not None or (p.num or 0) <= 1000 else p.bounds()
            for p in spec.parameters.values()]
    combos = list(itertools.islice(itertools.product(*(a[:2] for a in axes)), 2))
    points = [with_derived(compiled, dict(zip(spec.parameters, c, strict=True))) for c in combos]
    rows = evaluate_tasks(spec.model_dump(mode="json"), [(i, p, 0) for i, p in enumerate(points)])
    for row in rows:
        error = row["error"]
        if error is not None and re.match(r"^\w+(Error|Exception): ", error):
            raise Impossible(f"point {row['point_id']}: a Python exception as its error: {error}")
        if error is None:
            # A capacity row has a capacity instead of one pass's latency and energy.
            judged = (("capacity_requests_per_s", "capacity_evaluations", "area_mm2")
                      if spec.workloads[0].is_capacity else ("latency_s", "energy_j", "area_mm2"))
            bad = {m: row[m] for m in judged
                   if not (row[m] is not None and math.isfinite(row[m]) and row[m] >= 0)}
            if bad:
                raise Impossible(f"point {row['point_id']}: no error but metrics {bad}")


def cli_family(rng: random.Random, n: int) -> Iterator[Case]:
    """The command line over mutated chip files and odd option values: exit 0 or 2, an
    ``error:`` line rather than a traceback."""
    chips = sorted(ROOT.glob("arch_configs/*.yaml"))
    odd_options = ["0", "-1", "1.5", "inf", "nan", "abc", "", "1e9", "99999999999999999999", "true"]
    for i in range(n):
        src = chips[i % len(chips)]
        text = src.read_text()
        if rng.random() < 0.3:
            raw, how, _ = mutate_text(text, rng)
        else:
            data, how, _ = mutate_data(parse_yaml(text), rng)
            raw = dump(data)
        path = _write(f"cli-{i}.yaml", raw)
        choice = rng.randrange(7)
        if choice == 6:  # a sweep of a mutated tiny spec (12 points at most), into a fresh directory
            from tests.sweep.conftest import BASE

            spec, how, _ = mutate_data(BASE, rng)
            spec_path = _write(f"cli-sweep-{i}.yaml", dump(spec))
            args = ["sweep", str(spec_path), "-o", str(_TMP / f"cli-sweep-{i}"), "--executor", "serial",
                    "--no-progress"]
        elif choice in (0, 1):
            args = ["simulate", "--arch", str(path), "--model", str(_tiny_model_file()),
                    "--n-layers", "1", "--context-len", "128", "--json"]
        elif choice in (2, 3):
            dim = rng.choice(odd_options + ["64"])
            args = ["op", "gemm", "--arch", str(path), "--m", dim, "--k", "128", "--n", "128"]
        else:
            opt = rng.choice(["--batch", "--context-len", "--n-layers", "--dtype", "--tp", "--sparsity"])
            args = ["simulate", "--arch", "h100-sxm", "--model", "llama2-7b", "--n-layers", "1",
                    opt, rng.choice(odd_options)]
        yield Case(f"{how}: {' '.join(args)}", ("cli",), lambda a=args: run_cli(a), lambda _: None)


class CliRefused(HwsimError):
    """The command exited 2 with an error line (how the CLI refuses bad input)."""


def run_cli(args: list[str]) -> None:
    """Run the command; raise :class:`CliRefused` for exit 2 with an ``error:`` line (or
    click's usage error), and RuntimeError for anything else but exit 0."""
    from hwsim.cli import main

    run = CliRunner().invoke(main, args)
    crashed = run.exception is not None and not isinstance(run.exception, SystemExit)
    if run.exit_code not in (0, 2) or crashed:
        raise RuntimeError(f"exit {run.exit_code}: {run.exception!r}: {run.output[-300:]}")
    if "Traceback" in run.output:
        raise RuntimeError(f"a traceback was printed: {run.output[-300:]}")
    if run.exit_code == 2:
        said = [line for line in run.output.splitlines() if line.startswith(("error: ", "Error: "))]
        if not said:
            raise RuntimeError(f"exit 2 without an error line: {run.output[-300:]}")
        raise CliRefused(f"cli: {args[0]}: {said[0]}")


def check_model(spec: Any) -> None:
    """One decode step of the model's first layer on a chip large enough to hold it."""
    w = lower(spec, "decode", batch=1, context_len=128, n_layers=1)
    assert_physical(hwsim.simulate(w, "h200-sxm"), f"h200-sxm: {spec.name}")


#: Every input family: name -> generator of cases. One line adds a family.
FAMILIES: dict[str, Callable[[random.Random, int], Iterator[Case]]] = {
    "arch_files": file_family("arch_configs/*.yaml", load_arch, check_chip),
    "system_files": file_family("arch_configs/systems/*.yaml", load_system, check_system),
    "sweep_specs": sweep_family,
    "plan_args": kwargs_family(
        _plan_workload, {"tp": 2, "dp": 2, "microbatches": 2, "zero_stage": 1, "sequence_parallel": True,
                         "recompute": False, "pipeline_schedule": "1f1b", "grad_bucket_bytes": 25e6},
        ("plan", "workload tiny"), _check_planned,
        alternatives={"zero_stage": [0, 2, 3], "sequence_parallel": [False], "recompute": [True],
                      "pipeline_schedule": ["gpipe"], "tp": [1, 4], "dp": [1, 4]}),
    "workload_args": kwargs_family(
        _small_workload, {"phase": "decode", "batch": 2, "context_len": 256, "n_layers": 1, "dtype": "bf16",
                          "attention_impl": "flash", "sparsity": None},
        ("load_workload", "workload llama2-7b"), check_workload, no_scale=("new_tokens",),
        alternatives={"phase": ["prefill", "train"], "dtype": ["fp8", "int8", "fp32", "fp16"],
                      "attention_impl": ["naive"], "sparsity": ["2:4"]}),
    "gemm_args": kwargs_family(
        hwsim.ops.gemm, {"m": 64, "k": 128, "n": 256, "dtype": "bf16", "sparsity": None}, ("gemm",),
        check_workload, typos=False, alternatives={"dtype": ["fp8", "int8"], "sparsity": ["2:4"]}),
    "attention_args": kwargs_family(
        hwsim.ops.attention, {"batch": 1, "n_heads": 8, "n_kv_heads": 2, "q_len": 16, "kv_len": 128,
                              "head_dim": 64, "is_causal": True, "dtype": "bf16", "impl": "flash"},
        ("attention",), check_workload, typos=False,
        alternatives={"is_causal": [False], "impl": ["naive"], "n_kv_heads": [1, 8]}),
    "elementwise_args": kwargs_family(
        hwsim.ops.elementwise, {"kind": "gelu", "shape": (64, 256), "dtype": "bf16"}, ("elementwise",),
        check_workload, typos=False,
        alternatives={"kind": ["add", "softmax", "rmsnorm", "silu_mul"], "shape": [(1, 1), (4096, 11008)],
                      "dtype": ["fp32", "fp8"]}),
    "cli": cli_family,
}


#: Families whose inputs are not yet strict (run by ``bench/fuzz_inputs.py --pending``);
#: each moves to :data:`FAMILIES` once its loader refuses what it should.
PENDING_FAMILIES: dict[str, Callable[[random.Random, int], Iterator[Case]]] = {
    "model_files": file_family("workloads/*.yaml", load_model_spec, check_model),
}


