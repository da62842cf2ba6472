"""Published throughputs of offloaded inference (``data/published/offload.csv``): FlexGen's
table of generation throughput on one T4 with host DRAM and SSD (Sheng et al., ICML 2023;
the repository's ``benchmark/batch_size_table.md``), on the ``gcp-t4-flexgen`` preset.

Each row names the batch, lengths and where the weights lie (``weights_placement``:
``tier:share`` pairs joined by ``+``); throughput is the table's: generated tokens over
prompt processing plus generation, ``batch x output / (prefill + output x decode step)``,
the decode step at the mean context ``input + output / 2``. No preset number was tuned to
these rows (role ``check``). FlexGen's own offloading policies compute attention on the
CPU over a CPU-resident KV cache (``--cpu``), which hwsim does not model, so its offloaded
rows are not here; the group has no threshold (it is recorded, not claimed).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import hwsim
from hwsim.arch.model import Chip
from hwsim.validation.cases import DATA, Case, _role, _rows
from hwsim.workload.lower import lower
from hwsim.workload.spec import ModelSpec

CSV = DATA / "published" / "offload.csv"
GROUP = "offloaded inference throughput (published)"

#: facebook/opt-30b's config.json dimensions (Zhang et al. 2022, Table 1), on opt-6.7b's config.
OPT_30B = {"hidden_size": 7168, "ffn_dim": 28672, "intermediate_size": 28672, "num_hidden_layers": 48,
           "num_attention_heads": 56, "num_key_value_heads": 56, "word_embed_proj_dim": 7168}


def _spec(model: str) -> ModelSpec:
    if model == "opt-30b":
        return hwsim.load_model_spec("opt-6.7b").model_copy(update=OPT_30B | {"name": "opt-30b"})
    return hwsim.load_model_spec(model)


def _placement(text: str) -> dict[str, float]:
    return {tier: float(share) for tier, share in (pair.split(":") for pair in text.split("+"))}


def offload_tokens_per_s(row: dict[str, str]) -> float:
    """Generated tokens/s of the row's batch (module docstring)."""
    spec, dtype = _spec(row["model"]), row["dtype"]
    batch, input_len, output_len = int(row["batch"]), int(row["input_len"]), int(row["output_len"])
    plan = hwsim.Plan(placement={"weights": _placement(row["weights_placement"])})
    prefill = lower(spec, "prefill", batch=batch, prompt_len=input_len, dtype=dtype, plan=plan)
    context = input_len + output_len // 2
    decode = lower(spec, "decode", batch=batch, context_len=context, dtype=dtype, plan=plan)
    t_prefill = hwsim.simulate(prefill, row["system"]).latency_s
    t_decode = hwsim.simulate(decode, row["system"]).latency_s
    return batch * output_len / (t_prefill + output_len * t_decode)


def _predict(row: dict[str, str]) -> Callable[[Chip], float]:
    return lambda _chip: offload_tokens_per_s(row)


def offload_cases() -> Iterator[Case]:
    """One check case per row of ``offload.csv``."""
    for row in _rows(CSV):
        name = (f"{row['model']} B{row['batch']} {row['input_len']}/{row['output_len']} "
                f"weights {row['weights_placement']}")
        yield Case(GROUP, name, row["system"], float(row["value"]), row["unit"], _predict(row),
                   f"{CSV.name}: {row['reference']}", _role(row))
