"""Research attention accelerators against their papers' reported speed-ups and energy
savings (issue 17, item 6; ``data/published/research_designs.csv``).

Each row is a ratio the paper reports (speed-up or energy saving of a design over its
stated baseline); hwsim predicts the same ratio by simulating both sides on their presets
(``spatten``, ``a3``, ``elsa``, ``sanger``; GPUs ``titan-xp``, ``v100-sxm2``). Nothing is
fitted on these rows (role ``check``).

Assumptions, one set per design and shared by all its rows (never per row):

- Workloads are the attention layers only (each accelerator runs attention alone): one
  :class:`~hwsim.workload.ops.Attention` per layer, lowered as ``WORKLOADS`` says. The
  30-benchmark averages of SpAtten are stood for by BERT-base at 128 tokens and GPT-2
  medium generating at a 993-token context (the context of the SpAtten repository's
  GPT-2-medium workload file); ELSA's model set by BERT-large at 384 tokens; Sanger's
  BERT-base tasks by BERT-base at 128, 384 and 512 tokens (GLUE, SQuAD, CLOTH in the
  authors' evaluation scripts).
- GPU baselines run Hugging Face transformers' attention as PyTorch of the papers' time
  runs it: eager (each kernel dispatched by the host), fp32, batch 1, op by op. Splitting
  the heads is a ``view`` and a ``permute`` (``transpose_for_scores`` in BERT,
  ``split_heads`` in GPT-2; the Sanger authors' ``bench_cpu_gpu.py`` does the same), so no
  kernel: at batch 1 the batched matmuls read the permuted views as strided operands. In
  generation the past keys and values are concatenated (``torch.cat``, a copy of each) and
  stacked into ``present`` (``torch.stack``, one more copy of both: HF ``modeling_gpt2.py``
  ``Attention.forward`` of 2019-2020). Then Q K^T, the scale and the mask over the scores,
  softmax, P V (the score matrix materialised, ``impl="naive"``) and the heads merged
  (``permute(...).contiguous()``, a copy).
- SpAtten is compared with A3 at 1/8 of its resources (``spatten/8``: 2 of its 16
  multiplier groups, 1/8 of its vector lanes and memory bandwidths), the scale at which
  the SpAtten paper matches A3's multipliers (recalled, not re-verified in this change).
- Accelerators hold K and V in fp16-wide storage. The approximation settings are in
  ``DESIGNS``: SpAtten's fractions kept give the paper's average 10.0x DRAM reduction
  (abstract) with progressive quantization at 8 + 4 bits (keys fetched at 12 bits in the
  repository's workload file) and a 10 % LSB re-fetch; Sanger's density is the middle of
  its abstract's 0.08-0.27 range; A3's and ELSA's candidate shares are assumptions.
- Every design's selection unit is a pipeline stage of its own (SpAtten's top-k engine,
  A3's candidate-selection module, ELSA's hash and filter units, Sanger's low-bit mask
  array and pack module, as the papers and repositories describe them), so its time
  overlaps the kept work (``selection_overlapped``).
- A multi-workload row compares the mean of the per-workload ratios (the papers average
  over benchmarks); ELSA's geomean over one workload is that workload's ratio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import hwsim
from hwsim.arch.load import load_arch
from hwsim.arch.model import Chip
from hwsim.validation.cases import DATA, Case, _role, _rows
from hwsim.workload.graph import OperatorGraph, Pass, Segment, SegmentRole, Workload
from hwsim.workload.ops import Attention, Elementwise
from hwsim.workload.pruning import AttentionApprox, approximate_attention, cascade_schedule

GROUP = "research attention designs (published)"


@dataclass(frozen=True)
class AttentionShape:
    """The attention layers of a model: layers, heads, head width, queries, keys."""

    n_layers: int
    n_heads: int
    head_dim: int
    q_len: int
    kv_len: int
    is_causal: bool


#: Representative workloads (see the module docstring).
WORKLOADS: dict[str, AttentionShape] = {
    "bert-base-128": AttentionShape(12, 12, 64, 128, 128, False),
    "gpt2-medium-993": AttentionShape(24, 16, 64, 1, 993, True),
    "bert-large-384": AttentionShape(24, 16, 64, 384, 384, False),
    # Sanger's BERT-base tasks at their evaluation scripts' max_seq_length (hatsu3/Sanger
    # scripts/eval_sparse_on_{glue,squad,cloth}.sh: GLUE 128, SQuAD 384, CLOTH 512; its
    # bench_cpu_gpu.py --all times the GPU at the same three lengths)
    "bert-base-384": AttentionShape(12, 12, 64, 384, 384, False),
    "bert-base-512": AttentionShape(12, 12, 64, 512, 512, False),
}

#: SpAtten's progressive quantization: MSBs, LSBs, share re-fetched (assumptions above).
SPATTEN_PQ = (8, 4, 0.1)
#: SpAtten's average DRAM reduction (abstract: 10.0x); the token fraction kept follows.
SPATTEN_DRAM_REDUCTION = 10.0
ACCEL_DTYPE = "fp16"


def spatten_approx(n_layers: int) -> AttentionApprox:
    """SpAtten's cascade: heads all kept, tokens falling geometrically over the layers so
    that kept tokens x kept bits give the paper's average DRAM reduction."""
    msb, lsb, refetch = SPATTEN_PQ
    bits_kept = (msb + refetch * lsb) / 16.0
    mean_tokens = min(1.0, 1.0 / (SPATTEN_DRAM_REDUCTION * bits_kept))
    return AttentionApprox(token_keep=cascade_schedule(mean_tokens, n_layers), selection="topk",
                           msb_bits=msb, lsb_bits=lsb, refetch_fraction=refetch, selection_overlapped=True)


#: Per design: its approximation for a model of ``n`` layers (assumptions above).
DESIGNS: dict[str, Callable[[int], AttentionApprox]] = {
    "spatten": spatten_approx,
    "a3": lambda n: AttentionApprox(score_keep=0.25, selection="a3", search_fraction=0.5,
                                    selection_overlapped=True),
    "elsa": lambda n: AttentionApprox(score_keep=0.3, selection="elsa", hash_bits=64,
                                      selection_overlapped=True),
    "sanger": lambda n: AttentionApprox(score_keep=0.175, selection="sanger", predict_bits=4,
                                        selection_overlapped=True),
}


def attention_layers(shape: AttentionShape, dtype: str, impl: str, eager: bool) -> Workload:
    """The attention layers of ``shape`` as a workload: one layer segment repeated."""
    g = OperatorGraph()
    g.add_op("attention", Attention(1, shape.n_heads, shape.n_heads, shape.q_len, shape.kv_len,
                                    shape.head_dim, shape.is_causal, dtype, impl))
    seg = Segment("layer", g, repeat=shape.n_layers, role=SegmentRole.LAYER)
    return Workload("attention", "op", (Pass("attention", (seg,), tokens=shape.q_len, eager=eager),),
                    {}, {"dtype": dtype, "n_layers": shape.n_layers})


def gpu_attention_layers(shape: AttentionShape) -> Workload:
    """The attention layers of ``shape`` as eager PyTorch runs Hugging Face's attention
    (module docstring), fp32."""
    dtype, hidden, scores = "fp32", shape.n_heads * shape.head_dim, shape.n_heads * shape.q_len
    ops: list[tuple[str, object]] = []  # split heads: views, no kernel (module docstring)
    if shape.q_len < shape.kv_len:  # generation: torch.cat(past, new) rewrites the cache ...
        ops += [(f"cat_{t}", Elementwise("copy", shape.kv_len, hidden, dtype)) for t in ("k", "v")]
        # ... and torch.stack((key, value)) copies both again into ``present``
        ops.append(("stack_present", Elementwise("copy", 2 * shape.kv_len, hidden, dtype)))
    ops += [("attention", Attention(1, shape.n_heads, shape.n_heads, shape.q_len, shape.kv_len,
                                    shape.head_dim, shape.is_causal, dtype, "naive")),
            ("scale", Elementwise("add", scores, shape.kv_len, dtype)),
            ("mask", Elementwise("add", scores, shape.kv_len, dtype)),
            ("merge", Elementwise("copy", shape.q_len, hidden, dtype))]
    g = OperatorGraph()
    prev: list[str] = []
    for name, op in ops:
        prev = [g.add_op(name, op, prev)]  # type: ignore[arg-type]
    seg = Segment("layer", g, repeat=shape.n_layers, role=SegmentRole.LAYER)
    return Workload("attention", "op", (Pass("attention", (seg,), tokens=shape.q_len, eager=True),),
                    {}, {"dtype": dtype, "n_layers": shape.n_layers})


def chip_at(arch: str) -> Chip:
    """The preset ``arch``, or ``name/k``: the preset with 1/k of its matrix units,
    vector lanes and memory bandwidths (a smaller instance of the same design)."""
    name, _, div = arch.partition("/")
    chip = load_arch(name)
    if not div:
        return chip
    k = int(div)
    cu, vu = chip.compute_units, chip.vector_units
    memory = {n: lvl.model_copy(update={"bandwidth_bytes_per_s": lvl.bandwidth_bytes_per_s / k})
              for n, lvl in chip.memory.items()}
    return chip.model_copy(update={
        "name": f"{chip.name}/{k}", "memory": memory,
        "compute_units": cu.model_copy(update={"count": max(1, cu.count // k)}),
        "vector_units": vu.model_copy(update={"flops_per_cycle": vu.flops_per_cycle / k}),
        "idle_power_w": chip.idle_power_w / k})


@cache
def side(design: str, workload: str, arch: str) -> tuple[float, float]:
    """(latency in s, energy in J) of one side of a comparison: a GPU baseline dense,
    eager, fp32 and unfused; an accelerator with its design's approximation."""
    shape = WORKLOADS[workload]
    if design == "gpu":
        w = gpu_attention_layers(shape)
    else:
        w = approximate_attention(attention_layers(shape, ACCEL_DTYPE, "flash", eager=False),
                                  DESIGNS[design](shape.n_layers))
    r = hwsim.simulate(w, chip_at(arch))
    return r.latency_s, r.energy_j


def ratio(row: dict[str, str]) -> Callable[[Chip], float]:
    """hwsim's speed-up (baseline latency / design latency) or energy saving for a row,
    the mean over its workloads."""
    metric = 0 if row["metric"] == "speedup" else 1

    def predict(_: Chip) -> float:
        names = row["workloads"].split()
        values = [side(row["baseline"], n, row["baseline_arch"])[metric]
                  / side(row["design"], n, row["arch"])[metric] for n in names]
        return sum(values) / len(values)

    return predict


def research_cases() -> Iterator[Case]:
    """One case per row of ``research_designs.csv``."""
    for r in _rows(DATA / "published" / "research_designs.csv"):
        what = "speedup" if r["metric"] == "speedup" else "energy saving"
        name = f"{r['design']} vs {r['baseline_arch']} {what} ({r['workloads'].replace(' ', ', ')})"
        yield Case(GROUP, name, r["arch"], float(r["measured"]), "x", ratio(r),
                   f"[{r['source']}] {r['reference']}, {r['table']}", _role(r))
