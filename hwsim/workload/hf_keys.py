"""What hwsim knows of Hugging Face architectures, by ``model_type`` (data only).

Each table says how an architecture builds what its config does not spell out: whether
its FFN is gated (Gemma's GeGLU is, whatever its activation is called), whether its
attention and FFN run in parallel, which tables its embedding holds, and what hwsim
refuses by name.
"""

from __future__ import annotations

#: Gated (SwiGLU / GeGLU) FFNs: a gate and an up projection.
GATED_TYPES = frozenset({
    "llama", "llama4", "llama4_text", "mistral", "mistral3", "ministral", "mixtral", "qwen2", "qwen2_moe",
    "qwen3", "qwen3_moe", "gemma", "gemma2", "gemma3", "gemma3_text", "phi3", "phimoe", "deepseek",
    "deepseek_v2", "deepseek_v3", "gpt_oss", "olmo", "olmo2", "olmoe", "granite", "granitemoe", "cohere",
    "cohere2", "internlm2", "exaone", "glm", "glm4", "minicpm", "baichuan", "stablelm", "dbrx", "arctic",
    "smollm3", "hunyuan_v1_dense", "ernie4_5", "seed_oss", "helium", "modernbert", "jamba",
})

#: One up projection and an activation (GPT-2 style).
UNGATED_TYPES = frozenset({
    "gpt2", "gptj", "gpt_neox", "gpt_neo", "opt", "bloom", "falcon", "refinedweb", "refinedwebmodel",
    "bert", "roberta", "albert", "distilbert", "electra", "xlm-roberta", "camembert", "mpnet", "deberta",
    "deberta-v2", "phi", "gpt_bigcode", "starcoder2", "codegen", "mpt", "nemotron", "biogpt", "xglm",
    "persimmon",
})

#: Attention and FFN read the same layer input; their outputs are summed.
PARALLEL_TYPES = frozenset({"gptj", "gpt_neox", "falcon", "refinedweb", "refinedwebmodel", "phi",
                            "codegen", "cohere", "cohere2"})

#: LayerNorm even where the config names an ``rms_norm_eps``.
LAYERNORM_TYPES = frozenset({"phimoe"})

#: Learned absolute position tables (rows: ``max_position_embeddings``; OPT adds two).
POSITION_TABLE_TYPES = frozenset({"gpt2", "opt", "bert", "roberta", "albert", "gpt_neo", "gpt_bigcode",
                                  "electra", "xlm-roberta", "camembert", "distilbert", "biogpt"})

#: ALiBi attention bias instead of position embeddings.
ALIBI_TYPES = frozenset({"bloom", "mpt"})

#: Encoder-only (bidirectional, no decode phase).
ENCODER_TYPES = frozenset({"bert", "roberta", "deberta", "deberta-v2", "electra", "albert", "distilbert",
                           "xlm-roberta", "camembert", "mpnet", "modernbert"})

#: The ``tie_word_embeddings`` default of an absent key is PretrainedConfig's, True,
#: except for the config classes that default it to False.
DEFAULT_TIED = True
UNTIED_TYPES = frozenset({
    "llama", "llama4", "llama4_text", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe",
    "phi3", "phimoe", "deepseek_v2", "deepseek_v3", "gpt_oss", "gptj", "gpt_neox", "olmoe", "granite", "phi",
    "jamba",
})

#: Defaults of config classes whose saved configs omit them (keys absent from the file
#: take these, as ``from_pretrained`` would), from transformers' config classes.
TYPE_DEFAULTS: dict[str, dict[str, object]] = {
    "gemma3_text": {"vocab_size": 262208, "hidden_activation": "gelu_pytorch_tanh", "num_hidden_layers": 26,
                    "hidden_size": 2304, "intermediate_size": 9216, "num_attention_heads": 8,
                    "num_key_value_heads": 4, "head_dim": 256, "max_position_embeddings": 131072,
                    "sliding_window": 4096, "sliding_window_pattern": 6, "tie_word_embeddings": True},
    "llama4_text": {"vocab_size": 202048, "head_dim": 128, "attention_chunk_size": 8192,
                    "interleave_moe_layer_step": 1, "num_experts_per_tok": 1},
}

#: Refused by name until their layers are modelled.
ENCODER_DECODER_TYPES = {
    "t5": "T5", "mt5": "mT5", "umt5": "UMT5", "longt5": "LongT5", "switch_transformers": "Switch Transformer",
    "bart": "BART", "mbart": "mBART", "pegasus": "Pegasus", "pegasus_x": "Pegasus-X", "marian": "Marian",
    "whisper": "Whisper", "m2m_100": "M2M-100", "nllb-moe": "NLLB-MoE", "led": "LED",
    "prophetnet": "ProphetNet",
    "blenderbot": "Blenderbot", "plbart": "PLBart", "fsmt": "FSMT", "bigbird_pegasus": "BigBird-Pegasus",
    "encoder-decoder": "encoder-decoder", "speech_to_text": "Speech2Text", "seamless_m4t": "SeamlessM4T",
}
SSM_TYPES = {"mamba": "Mamba", "mamba2": "Mamba-2", "falcon_mamba": "Falcon-Mamba"}
SSM_HYBRID_TYPES = {"jamba": "Jamba", "zamba": "Zamba", "zamba2": "Zamba2", "bamba": "Bamba",
                    "falcon_h1": "Falcon-H1", "nemotron_h": "Nemotron-H",
                    "granitemoehybrid": "Granite-4.0 hybrid",
                    "lfm2": "LFM2"}
LINEAR_ATTENTION_TYPES = {"rwkv": "RWKV", "rwkv5": "RWKV-5", "rwkv6": "RWKV-6", "rwkv7": "RWKV-7",
                          "recurrent_gemma": "RecurrentGemma", "xlstm": "xLSTM", "qwen3_next": "Qwen3-Next",
                          "minimax": "MiniMax", "minimax_m1": "MiniMax-M1"}

#: Keys of saved configs that hwsim does not need and that must not be taken for
#: misspellings of keys it reads.
COMMON_IGNORED_KEYS = frozenset({
    "_name_or_path", "architectures", "auto_map", "bos_token_id", "eos_token_id", "pad_token_id",
    "sep_token_id", "decoder_start_token_id", "torch_dtype", "dtype", "transformers_version", "use_cache",
    "initializer_range", "initializer_factor", "rope_theta", "rope_parameters", "rope_interleave",
    "attention_dropout", "hidden_dropout", "hidden_dropout_prob", "attention_probs_dropout_prob",
    "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout", "layer_norm_eps",
    "layer_norm_epsilon", "norm_eps", "rms_norm_eps", "pretraining_tp", "quantization_config",
    "rotary_dim", "rotary_pct", "rotary_emb_base", "partial_rotary_factor", "output_router_logits",
    "router_aux_loss_coef", "router_jitter_noise", "router_z_loss_coef", "tokenizer_class",
    "position_embedding_type", "classifier_dropout", "gradient_checkpointing", "bos_token", "eos_token",
    "id2label", "label2id", "task_specific_params", "problem_type", "return_dict", "vision_config",
    "text_config", "image_token_index", "boi_token_index", "eoi_token_index", "mm_tokens_per_image",
    "query_pre_attn_scalar", "rope_local_base_freq", "swiglu_limit", "initial_context_length",
    "attn_temperature_tuning", "attn_scale", "floor_scale", "cache_implementation", "use_qk_norm",
    "ep_size", "aux_loss_alpha", "seq_aux", "use_bfloat16", "output_attentions", "output_hidden_states",
    "chunk_size_feed_forward", "is_decoder", "add_cross_attention", "tie_encoder_decoder",
    "scale_attn_weights", "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn",
    "apply_residual_connection_post_layernorm", "slow_but_exact", "use_alibi", "layer_norm_type",
    "max_window_layers", "use_sliding_window", "sliding_window_pattern", "intermediate_size_mlp",
    "original_max_position_embeddings", "sliding_window_size", "for_llm_compressor", "rotary",
})
