"""The shipped validation cases, read from ``hwsim/validation/data`` (copies of the
project's calibration measurements, with their README).

Every case has a role. ``fit``: a parameter of the preset was fitted on this row, so the
row reproduces that parameter and checks nothing (``fitted`` names it). ``check``: no
parameter was fitted on it; accuracy is claimed on these rows only. Each shipped CSV
carries the role of its rows in a ``role`` column (and ``fitted`` for the fit rows);
the split is described in ``hwsim/validation/data/h100/README.md``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import hwsim
from hwsim.arch.model import Chip
from hwsim.workload.graph import OperatorGraph, Pass, Segment, Workload
from hwsim.workload.ops import Elementwise

DATA = Path(__file__).resolve().parent / "data"
Role = Literal["fit", "check"]
ROLES: tuple[Role, ...] = ("fit", "check")


@dataclass(frozen=True)
class Case:
    """One measured figure: ``predict(chip)`` returns hwsim's value in ``unit``.

    ``role`` is ``"fit"`` when a preset parameter was fitted on this figure (``fitted``
    names it) and ``"check"`` when none was.
    """

    group: str
    name: str
    arch: str
    measured: float
    unit: str
    predict: Callable[[Chip], float]
    source: str
    role: Role
    fitted: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"case {self.name!r}: role must be fit or check, got {self.role!r}")
        if (self.role == "fit") != bool(self.fitted):
            raise ValueError(f"case {self.name!r}: a fit case names what was fitted on it, a check none")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _role(row: dict[str, str], column: str = "role") -> Role:
    """The role of a CSV row (every shipped CSV has a ``role`` column)."""
    role = row[column]
    if role not in ROLES:
        raise ValueError(f"{column}: expected fit or check, got {role!r} in {row}")
    return role  # type: ignore[return-value]


def _fitted(row: dict[str, str], column: str = "fitted") -> str:
    return row.get(column, "") or ""


def _ms(workload: Workload) -> Callable[[Chip], float]:
    return lambda chip: hwsim.simulate(workload, chip).latency_s * 1e3


def _copy_workload(n_bytes: int) -> Workload:
    """A device-to-device copy of ``n_bytes`` (bf16 elements), as one kernel."""
    g = OperatorGraph()
    g.add_op("copy", Elementwise("copy", n_bytes // 2 // 1024, 1024, "bf16"))
    return Workload("copy", "op", (Pass("op", (Segment("op", g),)),), {}, {"dtype": "bf16"})


def _sparse_speedup(m: int, k: int, n: int) -> Callable[[Chip], float]:
    """Dense bf16 time over 2:4-pruned bf16 time of one GEMM (the sparse path's speed-up)."""
    def predict(chip: Chip) -> float:
        dense = hwsim.simulate(hwsim.ops.gemm(m, k, n, "bf16"), chip).latency_s
        return dense / hwsim.simulate(hwsim.ops.gemm(m, k, n, "bf16", sparsity="2:4"), chip).latency_s

    return predict


def _back_to_back(workload: Workload, calls: int) -> Workload:
    """``calls`` repeats of a one-segment workload, back to back (the energy loops)."""
    (segment,) = workload.passes[0].segments
    looped = replace(workload.passes[0], segments=(replace(segment, repeat=calls),))
    return replace(workload, passes=(looped,))


def _per_call(workload: Workload, calls: int, what: str) -> Callable[[Chip], float]:
    """Energy (J) or time (ms) per call of ``calls`` back-to-back calls of ``workload``:
    the power limit holds such a loop at its sustained clock."""
    loop = _back_to_back(workload, calls)

    def predict(chip: Chip) -> float:
        r = hwsim.simulate(loop, chip)
        return r.energy_j / calls if what == "energy" else r.latency_s * 1e3 / calls

    return predict


def h100_cases() -> Iterator[Case]:
    """Cases from ``data/h100`` (see its README for how each was measured)."""
    folder, arch = DATA / "h100", "h100-sxm"
    src = "hwsim/validation/data/h100"
    for r in _rows(folder / "gemm.csv"):
        m, k, n = int(r["M"]), int(r["K"]), int(r["N"])
        yield Case("h100 gemm bf16", f"{r['label']} {m}x{k}x{n}", arch, float(r["ms"]), "ms",
                   _ms(hwsim.ops.gemm(m, k, n, "bf16")), f"{src}/gemm.csv", _role(r), _fitted(r))
    for r in _rows(folder / "gemm_lowp.csv"):
        m, k, n = int(r["M"]), int(r["K"]), int(r["N"])
        dtype = "fp8" if r["dtype"].startswith("fp8") else "fp16"
        yield Case("h100 gemm fp8/fp16", f"{r['label']} {dtype} {m}x{k}x{n}", arch, float(r["ms"]),
                   "ms", _ms(hwsim.ops.gemm(m, k, n, dtype)), f"{src}/gemm_lowp.csv", _role(r), _fitted(r))
    for r in _rows(folder / "sparse24.csv"):
        m, k, n = int(r["M"]), int(r["K"]), int(r["N"])
        yield Case("h100 gemm 2:4", f"{r['label']} 2:4 {m}x{k}x{n} speed-up over dense", arch,
                   float(r["speedup_vs_dense"]), "x", _sparse_speedup(m, k, n), f"{src}/sparse24.csv",
                   _role(r), _fitted(r))
    for r in _rows(folder / "attention.csv"):
        causal = r["causal"] == "True"
        w = hwsim.ops.attention(int(r["B"]), int(r["H"]), int(r["KVH"]), int(r["q_len"]),
                                int(r["kv_len"]), int(r["head_dim"]), causal, "bf16")
        name = f"B{r['B']} H{r['H']}/{r['KVH']} {r['q_len']}x{r['kv_len']}{' causal' if causal else ''}"
        yield Case("h100 attention", name, arch, float(r["ms"]), "ms", _ms(w), f"{src}/attention.csv",
                   _role(r), _fitted(r))
    for r in _rows(folder / "eltwise.csv"):
        t, d = int(r["T"]), int(r["D"])
        w = (hwsim.ops.embedding(t, 32000, d) if r["op"] == "embedding"
             else hwsim.ops.elementwise(r["op"], (t, d)))
        yield Case("h100 elementwise", f"{r['op']} {t}x{d}", arch, float(r["ms"]), "ms", _ms(w),
                   f"{src}/eltwise.csv", _role(r), _fitted(r))
    for r in _rows(folder / "model.csv"):
        b = int(r["B"])
        if r["phase"] == "prefill":
            w = hwsim.load_workload(r["model"], phase="prefill", batch=b, prompt_len=int(r["prompt"]))
            name = f"{r['model']} prefill B{b} P{r['prompt']}"
        else:
            w = hwsim.load_workload(r["model"], phase="decode", batch=b, context_len=int(r["ctx"]))
            name = f"{r['model']} decode B{b} C{r['ctx']}"
        yield Case(f"h100 model {r['phase']}", name, arch, float(r["ms"]), "ms", _ms(w),
                   f"{src}/model.csv", _role(r), _fitted(r))
    for r in _rows(folder / "training.csv"):
        w = hwsim.load_workload(r["model"], phase="train", batch=int(r["B"]), seq_len=int(r["seq"]),
                                lm_head=False)  # "loss on hidden states"
        yield Case("h100 training", f"{r['model']} B{r['B']} S{r['seq']}", arch, float(r["ms"]), "ms",
                   _ms(w), f"{src}/training.csv", _role(r), _fitted(r))
    for r in _rows(folder / "energy.csv"):
        if r["what"] == "gemm_8192_bf16":
            w = hwsim.ops.gemm(8192, 8192, 8192, "bf16")
        elif r["what"] == "d2d_copy_1GiB":
            w = _copy_workload(1 << 30)
        else:  # the idle row is idle_power_w itself: as a case it would return its own input
            continue
        calls = int(r["calls"])
        yield Case("h100 energy", f"{r['what']} per call", arch, float(r["joules_per_call"]), "J",
                   _per_call(w, calls, "energy"), f"{src}/energy.csv", _role(r), _fitted(r))
        yield Case("h100 sustained", f"{r['what']} ms per call, {calls} back to back", arch,
                   float(r["wall_s"]) * 1e3 / calls, "ms", _per_call(w, calls, "time"),
                   f"{src}/energy.csv", _role(r, "time_role"), _fitted(r, "time_fitted"))


def fits_without_a_case() -> list[dict[str, str]]:
    """Fit rows of the calibration set that are no case: the ceilings (each sets one
    achievable fraction or the burst energy) and the idle power, which as a case would
    return its own input. One entry per row: ``fitted``, ``measurement``, ``source``."""
    src = "hwsim/validation/data/h100"
    out = [{"fitted": _fitted(r), "measurement": f"{r['what']} ({float(r['ms']):.4g} ms)",
            "source": f"{src}/ceilings.csv"} for r in _rows(DATA / "h100" / "ceilings.csv")
           if _role(r) == "fit"]
    idle = [r for r in _rows(DATA / "h100" / "energy.csv") if r["what"] == "idle"]
    out += [{"fitted": _fitted(r), "measurement": f"board idle ({r['avg_w']} W)",
             "source": f"{src}/energy.csv"} for r in idle]
    return out


def _single_array_case(row: dict[str, str], what: str) -> Callable[[Chip], float]:
    def predict(_: Chip) -> float:
        from hwsim.arch.single import single_array

        buffers = tuple(int(row[c]) * 1024 for c in ("ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb"))
        chip = single_array(rows=int(row["rows"]), cols=int(row["cols"]),
                            dataflow=row["dataflow"], sram_bytes=buffers)  # type: ignore[arg-type]
        gemm = hwsim.ops.gemm(int(row["m"]), int(row["k"]), int(row["n"]), dtype="int8")
        frame = hwsim.simulate(gemm, chip).to_frame()
        return float(frame[what].iloc[0])

    return predict


def scalesim_cases() -> Iterator[Case]:
    """SCALE-Sim 3.0.0's counts for GEMMs on one systolic array (``data/scalesim``,
    regenerated by ``bench/scalesim_goldens.py``): stall-free cycles, and SRAM and
    DRAM words (int8, so words are bytes) for the same buffer sizes."""
    src = "scalesim 3.0.0 (bench/scalesim_goldens.py)"
    for r in _rows(DATA / "scalesim" / "goldens.csv"):
        name = (f"{r['rows']}x{r['cols']} {r['dataflow'].split('_')[0]} {r['m']}x{r['k']}x{r['n']} "
                f"buf {r['ifmap_sram_kb']}k")
        sram = sum(float(r[c]) for c in ("ifmap_sram_reads", "filter_sram_reads", "ofmap_sram_writes"))
        dram = sum(float(r[c]) for c in ("ifmap_dram_reads", "filter_dram_reads", "ofmap_dram_writes"))
        role = _role(r)
        yield Case("scalesim cycles", name, "systolic", float(r["scalesim_total_cycles"]), "cycles",
                   _single_array_case(r, "compute_cycles"), src, role)
        yield Case("scalesim sram+dram bytes", name + " sram", "systolic", sram, "B",
                   _single_array_case(r, "sram_bytes"), src, role)
        yield Case("scalesim sram+dram bytes", name + " dram", "systolic", dram, "B",
                   _single_array_case(r, "dram_bytes"), src, role)
