"""transformers config classes vLLM reads LLaDA's and Dream's ``config.json`` with.

Why our own: LLaDA (``model_type="llada"``) and Dream (``"Dream"``) ship their configs as
remote code written for older transformers; vLLM builds its Llama / Qwen2 layers from the
config's attributes. These classes take the checkpoint's fields and present them under
Llama's / Qwen2's names (the same translation ``a2d_guard.models`` uses: ``llada.py``,
``dream.py``), with ``is_causal=False`` so vLLM builds encoder-only (bidirectional)
attention. Registered with ``exist_ok``: the remote code, when trusted, still wins.
"""

from __future__ import annotations

from transformers import AutoConfig, LlamaConfig, Qwen2Config

from a2d_guard.models.llada import llama_kwargs_from_llada

# LLaDA fields that ``llama_kwargs_from_llada`` translates (dropped after translation, so the
# config carries Llama's names only); every other field (mask_token_id, a2d_*) is kept.
_LLADA_ONLY = {
    "d_model", "n_heads", "n_kv_heads", "n_layers", "mlp_hidden_size", "mlp_ratio", "embedding_size",
    "max_sequence_length", "weight_tying", "include_bias", "block_type", "activation_type",
    "layer_norm_type", "rope", "rope_theta", "rms_norm_eps", "vocab_size",
}


class LLaDAVllmConfig(LlamaConfig):
    model_type = "llada"

    def __init__(self, **kwargs):
        if "d_model" in kwargs:  # LLaDA's own fields (a config.json); else already Llama's (a copy)
            llama = llama_kwargs_from_llada(kwargs)
            kwargs = {**{k: v for k, v in kwargs.items() if k not in _LLADA_ONLY}, **llama}
        kwargs.update(is_causal=False, use_cache=False)
        super().__init__(**kwargs)


class DreamVllmConfig(Qwen2Config):
    model_type = "Dream"

    def __init__(self, **kwargs):
        kwargs.update(is_causal=False, use_cache=False, use_sliding_window=False)
        super().__init__(**kwargs)


def register_configs() -> None:
    for config in (LLaDAVllmConfig, DreamVllmConfig):
        AutoConfig.register(config.model_type, config, exist_ok=True)
