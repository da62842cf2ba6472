"""Write ``reference_params.csv``: the parameters of every shipped and zoo model as
transformers instantiates it (on the meta device: no weights, no network).

Run with a Python that has ``torch`` and ``transformers`` (not needed by the tests,
which read the CSV)::

    python tests/workload/zoo/make_reference.py

Per model: ``params`` (all parameters, a tied LM head once) and ``active_params``
(what one token's matrix products use: every non-expert parameter and top-k of each
layer's routed experts, without the input embedding tables, which are lookups; a tied
table counts once, as the LM head). Multimodal wrappers count their text model (the
``*ForCausalLM`` of ``text_config``); the vision tower is listed apart.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import torch
import transformers
import yaml
from transformers import AutoConfig

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent

#: Architectures transformers spells differently from the config files.
CLASS_ALIASES = {"RWForCausalLM": "FalconForCausalLM", "PhiMoEForCausalLM": "PhimoeForCausalLM"}
TYPE_ALIASES = {"refinedwebmodel": "falcon", "refinedweb": "falcon"}


def configs() -> list[tuple[str, str, dict]]:
    out = []
    for path in sorted((ROOT / "workloads").glob("*.yaml")):
        out.append((path.stem, "workloads", yaml.safe_load(path.read_text())))
    for path in sorted((ROOT / "workloads").glob("*/config.json")):
        out.append((path.parent.name, "workloads", json.loads(path.read_text())))
    for path in sorted((HERE / "configs").glob("*.json")):
        out.append((path.stem, "zoo", json.loads(path.read_text())))
    return out


def _legacy_falcon(data: dict) -> dict:
    data = dict(data)
    new = data.get("model_type") == "RefinedWeb"
    data |= {"model_type": "falcon", "num_attention_heads": data.pop("n_head"),
             "num_hidden_layers": data.pop("n_layer"), "new_decoder_architecture": new}
    if "n_head_kv" in data:
        data["num_kv_heads"] = data.pop("n_head_kv")
    return data


def build(data: dict) -> tuple[torch.nn.Module, object, int]:
    """The model transformers builds for ``data`` (text model of a wrapper), its config,
    and the vision tower's parameters (0 if none)."""
    arch = data["architectures"][0]
    vision = 0
    if data.get("model_type", "").lower() in TYPE_ALIASES:
        data = _legacy_falcon(data)
    if "text_config" in data:
        text = dict(data["text_config"])
        if "attn_temperature_tuning" in text:  # an int in the published file, a bool in transformers 5
            text["attn_temperature_tuning"] = bool(text["attn_temperature_tuning"])
        data = data | {"text_config": text}
        fields = {k: v for k, v in data.items() if k != "model_type"}
        full = AutoConfig.for_model(data["model_type"], **fields)
        with torch.device("meta"):
            whole = getattr(transformers, arch)(full)
        text_cfg = full.text_config
        cls = transformers.AutoModelForCausalLM._model_mapping[type(text_cfg)]
        with torch.device("meta"):
            model = cls(text_cfg)
        vision = sum(p.numel() for p in whole.parameters()) - sum(p.numel() for p in model.parameters())
        return model, text_cfg, vision
    cfg = AutoConfig.for_model(data["model_type"], **{k: v for k, v in data.items() if k != "model_type"})
    cls = getattr(transformers, CLASS_ALIASES.get(arch, arch))
    with torch.device("meta"):
        model = cls(cfg)
    return model, cfg, vision


def _experts(cfg: object) -> tuple[int, int]:
    n = next((getattr(cfg, k) for k in ("num_local_experts", "num_experts", "n_routed_experts")
              if getattr(cfg, k, None)), 0)
    k = next((getattr(cfg, key) for key in ("num_experts_per_tok", "experts_per_token")
              if getattr(cfg, key, None)), 0)
    return int(n or 0), int(k or 0)


def counts(model: torch.nn.Module, cfg: object) -> tuple[int, float]:
    params = dict(model.named_parameters())  # shared (tied) tensors appear once
    total = sum(p.numel() for p in params.values())
    n_exp, top_k = _experts(cfg)
    routed = sum(p.numel() for name, p in params.items()
                 if ".experts." in f"{name}." and "shared" not in name)
    active = total - (routed * (1 - top_k / n_exp) if n_exp else 0)
    emb = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    tied = out is not None and out.weight is emb
    if not tied:
        active -= emb.numel()
    tables = ("wpe", "embed_positions", "position_embeddings", "token_type_embeddings")
    active -= sum(p.numel() for name, p in params.items() if any(t in name for t in tables))
    return total, active


def main() -> None:
    rows = []
    for name, where, data in configs():
        try:
            model, cfg, vision = build(data)
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"{name}: {type(exc).__name__}: {exc}", file=sys.stderr)  # noqa: T201
            continue
        total, active = counts(model, cfg)
        rows.append({"name": name, "where": where, "class": type(model).__name__, "params": total,
                     "active_params": round(active), "vision_params": vision,
                     "source": f"transformers {transformers.__version__} {type(model).__name__} "
                               "on meta device"})
        print(name, total, round(active))  # noqa: T201
    with (HERE / "reference_params.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
