"""Attention shapes whose cost on every shipped chip preset is pinned in
``data/attention_golden.json`` (written by ``python -m tests.cost.attention_golden_cases``
before the attention dataflow fields existed): the fields' defaults and each preset's
own settings must leave these costs unchanged."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import hwsim
from hwsim.cost.attention import attention_cost
from hwsim.cost.attention_batch import attention_batch_cost
from hwsim.cost.model import OpCost
from hwsim.errors import HwsimError
from hwsim.workload.ops import Attention

GOLDEN = Path(__file__).parent / "data" / "attention_golden.json"

#: Llama-, Gemma-, MLA-shaped kernels: prefill, decode, long and short, both impls.
CASES: dict[str, Attention] = {
    "prefill_causal_4k_d128": Attention(1, 32, 8, 4096, 4096, 128),
    "prefill_noncausal_1k_d64": Attention(4, 16, 16, 1024, 1024, 64, is_causal=False),
    "prefill_causal_2k_d256_softcap": Attention(1, 16, 8, 2048, 2048, 256, softcap=True),
    "decode_gqa_32k": Attention(8, 32, 8, 1, 32768, 128),
    "decode_mha_b1_4k": Attention(1, 32, 32, 1, 4096, 128),
    "decode_window_64k": Attention(4, 32, 8, 1, 65536, 128, window=4096),
    "prefill_naive_512": Attention(2, 12, 12, 512, 512, 64, impl="naive"),
    "backward_causal_2k": Attention(1, 32, 8, 2048, 2048, 128, backward=True),
    "mla_absorbed_decode": Attention(4, 128, 1, 1, 8192, 576, v_head_dim=512, latent_kv=True,
                                     variant="mla absorbed"),
    "chunked_prefill_300_of_5000": Attention(1, 32, 8, 300, 5000, 128),
}


def _chips() -> list[str]:
    root = Path(hwsim.__file__).resolve().parent.parent / "arch_configs"
    return sorted(p.stem for p in root.glob("*.yaml"))


def _row(cost: OpCost) -> list[float]:
    return [cost.latency_s, cost.compute_energy_j, cost.compute_s, cost.overhead_s, cost.n_kernels,
            *(x for t in cost.traffic for x in (t.read_bytes, t.write_bytes))]


def compute_golden() -> dict[str, dict[str, list[float] | str]]:
    """Each preset's cost of each case (and of one mixed varlen batch): latency, energy,
    compute time and bytes per level; a case the preset refuses records its error type."""
    out: dict[str, dict[str, list[float] | str]] = {}
    template = CASES["decode_gqa_32k"]
    q = np.array([1, 1, 1, 300, 1, 64])
    k = np.array([4096, 100, 70000, 300, 2048, 8000])
    for name in _chips():
        chip = hwsim.load_arch(name)
        rows: dict[str, list[float] | str] = {}
        for case, op in CASES.items():
            try:
                rows[case] = _row(attention_cost(chip, op))
            except HwsimError as exc:
                rows[case] = type(exc).__name__
        try:
            rows["varlen_batch"] = _row(attention_batch_cost(chip, template, q, k))
        except HwsimError as exc:
            rows["varlen_batch"] = type(exc).__name__
        out[name] = rows
    return out


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(compute_golden(), indent=1, sort_keys=True) + "\n")
    sys.stdout.write(f"wrote {GOLDEN}\n")
