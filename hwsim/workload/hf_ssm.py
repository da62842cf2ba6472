"""Reading the state-space keys of a Hugging Face config: Mamba, Falcon-Mamba, Mamba-2
and Jamba's Mamba layers, into the ``ssm_*`` fields of
:class:`~hwsim.workload.spec.ModelSpec`.

Defaults are those of transformers' config classes (``MambaConfig``,
``FalconMambaConfig``, ``Mamba2Config``, ``JambaConfig``), so a saved config that omits
a key reads as ``from_pretrained`` would. The mixer is ``intermediate_size`` wide where
the config saves one (the checkpoint's weights are: Falcon-Mamba-7B saves ``expand: 16``
beside ``intermediate_size: 8192``), else ``int(expand * hidden_size)``;
``time_step_rank: "auto"`` is ``ceil(hidden_size / 16)``.
"""

from __future__ import annotations

import math
from typing import Any

from hwsim.workload.hf_reader import ConfigReader

#: Architectures whose every layer is a Mamba mixer (no attention, no FFN).
PURE_SSM_TYPES = {"mamba": "mamba", "falcon_mamba": "mamba", "mamba2": "mamba2"}
#: Hybrids of attention and Mamba layers that hwsim models.
HYBRID_SSM_TYPES = frozenset({"jamba"})


def _dt_rank(r: ConfigReader, key: str, hidden: int) -> int | None:
    value = r.raw(key)
    if value is None or value == "auto":
        return math.ceil(hidden / 16)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        r.problems.append(f"{r.prefix}{key}: expected a positive integer or 'auto', got {value!r}")
        return None
    return value


def _expand(r: ConfigReader, key: str, hidden: int) -> int | None:
    expand = r.number(key, default=2.0) or 2.0
    if expand <= 0:
        r.problems.append(f"{r.prefix}{key}: must be positive, got {expand!r}")
        return None
    return int(expand * hidden)


def pure_ssm_fields(r: ConfigReader, mt: str, notes: list[str]) -> dict[str, Any]:
    """Canonical fields of a Mamba / Falcon-Mamba / Mamba-2 model (problems go to ``r``)."""
    kind = PURE_SSM_TYPES[mt]
    f: dict[str, Any] = {"model_type": mt}
    f["num_hidden_layers"] = r.integer("num_hidden_layers", "n_layer", "n_layers", field="num_hidden_layers")
    hidden = r.integer("hidden_size", "d_model", field="hidden_size")
    f["hidden_size"] = hidden
    f["vocab_size"] = r.integer("vocab_size", default=50280 if kind == "mamba" else 32768, field="vocab_size")
    # Only the Mamba layers: one head of full width stands for "no attention".
    f["num_attention_heads"] = 1
    f["norm_type"] = "rmsnorm"
    f["norm_bias"] = False
    f["norms_per_layer"] = 1
    f["has_ffn"] = False
    f["hidden_act"] = r.text("hidden_act", default="silu")
    f["tie_word_embeddings"] = r.flag("tie_word_embeddings", kind == "mamba")
    f["is_encoder"] = False
    r.read.update({"rms_norm", "fused_add_norm", "residual_in_fp32", "time_step_min",
                   "time_step_max", "time_step_floor", "time_step_scale", "time_step_init_scheme",
                   "rescale_prenorm_residual", "use_mambapy", "mixer_rms_eps", "time_step_limit",
                   "use_associative_scan", "n_layer", "norm_before_gate", "layer_norm_epsilon"})
    if hidden is None:
        r.problems.append(f"{r.prefix}hidden_size: required")
        return f
    d_inner = _expand(r, "expand", hidden)
    saved = r.integer("intermediate_size", field="ssm_d_inner")
    if saved and d_inner and saved != d_inner:
        # Falcon-Mamba-7B saves expand 16 beside intermediate_size 8192: its weights are 8192 wide.
        notes.append(f"intermediate_size {saved} taken as the mixer width; expand x hidden_size would "
                     f"give {d_inner}")
        d_inner = saved
    f |= {"ssm_kind": kind, "ssm_d_inner": d_inner,
          "ssm_d_state": r.integer("state_size", default=16 if kind == "mamba" else 128, field="ssm_d_state"),
          "ssm_d_conv": r.integer("conv_kernel", default=4, field="ssm_d_conv"),
          "ssm_proj_bias": r.flag("use_bias", False), "ssm_conv_bias": r.flag("use_conv_bias", True)}
    if kind == "mamba":
        f["ssm_dt_rank"] = _dt_rank(r, "time_step_rank", hidden)
        if mt == "falcon_mamba":
            notes.append("Falcon-Mamba's weightless RMS normalisation of B, C and dt: below 0.1 % of "
                         "the mixer's work, not costed")
        return f
    heads = r.integer("num_heads", default=128, field="ssm_n_heads")
    head_dim = r.integer("head_dim", default=64, field="ssm_head_dim")
    groups = r.integer("n_groups", default=8, field="ssm_n_groups")
    f |= {"ssm_n_heads": heads, "ssm_head_dim": head_dim, "ssm_n_groups": groups,
          "ssm_chunk_size": r.integer("chunk_size", default=256, field="ssm_chunk_size")}
    r.read.add("time_step_rank")  # Mamba-2 has no dt projection
    if heads and head_dim and d_inner and heads * head_dim != d_inner:
        r.problems.append(f"{r.prefix}num_heads: num_heads x head_dim ({heads} x {head_dim}) must equal "
                          f"expand x hidden_size ({d_inner}), as Mamba2Mixer requires")
    if heads and groups and heads % groups:
        r.problems.append(f"{r.prefix}n_groups: {groups} groups must divide num_heads ({heads})")
    return f


def jamba_fields(r: ConfigReader, f: dict[str, Any]) -> None:
    """Jamba's Mamba layers: which layers they are and their mixer's widths."""
    n = f.get("num_hidden_layers") or 0
    hidden = f.get("hidden_size") or 0
    declared = r.raw("layers_block_type")
    if isinstance(declared, list) and declared:
        odd = sorted({str(k) for k in declared} - {"attention", "mamba"})
        if odd:
            r.problems.append(f"{r.prefix}layers_block_type: unknown layer kinds {', '.join(odd)}")
        ssm = [str(k) == "mamba" for k in declared]
    else:
        period = r.integer("attn_layer_period", default=8) or 8
        offset = r.integer("attn_layer_offset", default=4)
        offset = 4 if offset is None else offset
        # JambaConfig.layers_block_type: attention where i % period == offset.
        ssm = [i % period != offset for i in range(n)]
    f["ssm_layers"] = tuple(ssm)
    f["ssm_kind"] = "mamba"
    f["ssm_d_inner"] = _expand(r, "mamba_expand", hidden) if hidden else None
    f["ssm_d_state"] = r.integer("mamba_d_state", default=16, field="ssm_d_state")
    f["ssm_d_conv"] = r.integer("mamba_d_conv", default=4, field="ssm_d_conv")
    f["ssm_dt_rank"] = _dt_rank(r, "mamba_dt_rank", hidden) if hidden else None
    f["ssm_proj_bias"] = r.flag("mamba_proj_bias", False)
    f["ssm_conv_bias"] = r.flag("mamba_conv_bias", True)
    f["ssm_bc_norms"] = True  # JambaMambaMixer's dt/B/C RMSNorms (weighted)
    r.read.update({"use_mamba_kernels", "num_logits_to_keep"})
