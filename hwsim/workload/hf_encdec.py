"""Reading encoder-decoder configs (T5, mT5, BART) into canonical
:class:`~hwsim.workload.spec.ModelSpec` fields.

Defaults are those of transformers' ``T5Config`` / ``BartConfig``; the structure is
their modeling code's:

- T5 / mT5 (``T5ForConditionalGeneration``): one shared token table; RMS-style norms
  without bias; attention and FFN without biases, ``d_kv`` wide heads (``num_heads x
  d_kv`` need not equal ``d_model``); the FFN ``relu`` or, for ``feed_forward_proj:
  "gated-gelu"`` (T5 v1.1, Flan-T5, mT5), gated; a learned relative-position bias of
  ``relative_attention_num_buckets x num_heads`` in the first layer of each stack; a
  final norm after each stack; the LM head tied to the table unless
  ``tie_word_embeddings`` is false.
- BART (``BartForConditionalGeneration``): a shared token table, a learned position
  table of ``max_position_embeddings + 2`` rows and a LayerNorm of the embeddings in
  each stack; biases everywhere; GELU FFN; no final norm; the LM head tied
  (``final_logits_bias`` is a buffer, not a parameter).

Encoder and decoder must share their width, heads and FFN width (true of every T5 and
BART checkpoint); configs where they differ are refused by name.
"""

from __future__ import annotations

from typing import Any

from hwsim.workload.hf_reader import ConfigReader

ENCDEC_TYPES = frozenset({"t5", "mt5", "bart"})


def _t5(r: ConfigReader, f: dict[str, Any], mt: str) -> None:
    layers = r.integer("num_layers", default=6 if mt == "t5" else 8, field="num_hidden_layers")
    decoder = r.integer("num_decoder_layers", default=layers, field="num_hidden_layers")
    f["num_encoder_layers"] = layers
    f["num_hidden_layers"] = (layers or 0) + (decoder or 0) if layers and decoder else None
    f["hidden_size"] = r.integer("d_model", default=512, field="hidden_size")
    f["num_attention_heads"] = r.integer("num_heads", default=8 if mt == "t5" else 6,
                                         field="num_attention_heads")
    f["head_dim"] = r.integer("d_kv", default=64, field="head_dim")
    f["intermediate_size"] = r.integer("d_ff", default=2048 if mt == "t5" else 1024,
                                       field="intermediate_size")
    f["vocab_size"] = r.integer("vocab_size", default=32128 if mt == "t5" else 250112, field="vocab_size")
    proj = r.text("feed_forward_proj", default="relu" if mt == "t5" else "gated-gelu")
    act = proj.removeprefix("gated-")
    if act not in ("relu", "gelu", "silu", "gelu_new"):
        r.problems.append(f"{r.prefix}feed_forward_proj: expected 'relu', 'gelu' or 'gated-<act>', "
                          f"got {proj!r}")
    f["gated_ffn"] = proj.startswith("gated-")
    f["hidden_act"] = act
    f["relative_attention_buckets"] = r.integer("relative_attention_num_buckets", default=32,
                                                field="relative_attention_buckets")
    f["norm_type"], f["norm_bias"] = "rmsnorm", False
    f["tie_word_embeddings"] = r.flag("tie_word_embeddings", mt == "t5")
    f["final_norm"] = True
    r.read.update({"n_positions", "relative_attention_max_distance", "dropout_rate", "dense_act_fn",
                   "is_gated_act", "output_past"})


def _bart(r: ConfigReader, f: dict[str, Any]) -> None:
    enc = r.integer("encoder_layers", default=12, field="num_hidden_layers")
    dec = r.integer("decoder_layers", default=12, field="num_hidden_layers")
    f["num_encoder_layers"] = enc
    f["num_hidden_layers"] = enc + dec if enc and dec else None
    f["hidden_size"] = r.integer("d_model", default=1024, field="hidden_size")
    heads = r.integer("encoder_attention_heads", default=16, field="num_attention_heads")
    ffn = r.integer("encoder_ffn_dim", default=4096, field="intermediate_size")
    for key, value in (("decoder_attention_heads", heads), ("decoder_ffn_dim", ffn)):
        other = r.integer(key, default=value)
        if other != value:
            r.problems.append(f"{r.prefix}{key}: {other} differs from the encoder's {value}; an encoder "
                              "and a decoder of different shapes are not modelled")
    f["num_attention_heads"], f["intermediate_size"] = heads, ffn
    f["vocab_size"] = r.integer("vocab_size", default=50265, field="vocab_size")
    positions = r.integer("max_position_embeddings", default=1024, field="max_position_embeddings")
    f["max_position_embeddings"] = positions
    f["position_embeddings"] = (positions or 0) + 2  # BartLearnedPositionalEmbedding's offset of 2
    f["embedding_norm"] = True
    f["hidden_act"] = r.text("activation_function", default="gelu")
    f["gated_ffn"] = False
    f["norm_type"], f["norm_bias"] = "layernorm", True
    f["attention_bias"] = f["attention_out_bias"] = f["mlp_bias"] = True
    f["tie_word_embeddings"] = r.flag("tie_word_embeddings", True)
    f["final_norm"] = False
    r.read.update({"scale_embedding", "encoder_layerdrop", "decoder_layerdrop", "activation_dropout",
                   "dropout", "classif_dropout", "classifier_dropout", "num_hidden_layers", "add_bias_logits",
                   "add_final_layer_norm", "normalize_before", "normalize_embedding",
                   "static_position_embeddings",
                   "forced_bos_token_id", "forced_eos_token_id", "no_repeat_ngram_size", "num_beams",
                   "early_stopping", "length_penalty", "max_length", "min_length", "gradient_checkpointing",
                   "extra_pos_embeddings"})


def encdec_fields(r: ConfigReader, mt: str, notes: list[str]) -> dict[str, Any]:
    """Canonical fields of a T5 / mT5 / BART config (problems go to ``r``)."""
    f: dict[str, Any] = {"model_type": mt, "is_encoder_decoder": True, "is_encoder": False}
    if mt == "bart":
        _bart(r, f)
    else:
        _t5(r, f, mt)
    r.read.add("is_encoder_decoder")
    notes.append("encoder-decoder: prefill encodes the prompt_len-token source and runs the decoder's "
                 "first step; decode steps attend to context_len + 1 decoder tokens and to the source's "
                 "cached cross-attention keys and values")
    return f
