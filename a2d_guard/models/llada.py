"""LLaDA, natively: transformers' Llama run with bidirectional attention.

Why native: LLaDA's architecture is Llama's (RMSNorm, SwiGLU, RoPE, no biases) without the
causal mask. Its hub code targets older transformers; mapping its checkpoint keys onto
``LlamaForCausalLM`` gives us the library's SDPA/flash kernels and padding masks with no
``trust_remote_code``. The mapping runs both ways so adapters and weights round-trip with
the original LLaDA module names (``model.transformer.blocks.N.*``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

# LLaDA block module -> Llama decoder-layer module (per layer N).
_BLOCK_TO_NATIVE = {
    "attn_norm": "input_layernorm",
    "ff_norm": "post_attention_layernorm",
    "q_proj": "self_attn.q_proj",
    "k_proj": "self_attn.k_proj",
    "v_proj": "self_attn.v_proj",
    "attn_out": "self_attn.o_proj",
    "ff_proj": "mlp.gate_proj",  # LLaDA applies the activation to ff_proj: it is the gate
    "up_proj": "mlp.up_proj",
    "ff_out": "mlp.down_proj",
}
_NATIVE_TO_BLOCK = {v: k for k, v in _BLOCK_TO_NATIVE.items()}
_TOP_TO_NATIVE = {
    "model.transformer.wte": "model.embed_tokens",
    "model.transformer.ln_f": "model.norm",
    "model.transformer.ff_out": "lm_head",
}
_NATIVE_TO_TOP = {v: k for k, v in _TOP_TO_NATIVE.items()}

_LLADA_BLOCK_RE = re.compile(r"^(?P<pre>.*?)model\.transformer\.blocks\.(?P<n>\d+)\.(?P<mod>\w+)(?P<rest>.*)$")
_NATIVE_LAYER_RE = re.compile(
    r"^(?P<pre>.*?)model\.layers\.(?P<n>\d+)\.(?P<mod>(?:self_attn|mlp)\.\w+|\w+layernorm)(?P<rest>.*)$"
)

# LoRA targets: every attention and MLP projection, never the LM head.
NATIVE_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The same modules under LLaDA's names. A bare "ff_out" suffix would also match LLaDA's LM
# head (``model.transformer.ff_out``), so the exported target is a regex anchored on blocks.
LLADA_LORA_TARGET_REGEX = r".*\.blocks\.\d+\.(q_proj|k_proj|v_proj|attn_out|ff_proj|up_proj|ff_out)"


def llada_to_native_key(key: str) -> str:
    """``model.transformer.blocks.3.ff_proj.weight`` -> ``model.layers.3.mlp.gate_proj.weight``.

    Works on any prefix/suffix (e.g. peft's ``base_model.model.`` and ``.lora_A.weight``).
    Keys that are not LLaDA-named are returned unchanged.
    """
    m = _LLADA_BLOCK_RE.match(key)
    if m and m["mod"] in _BLOCK_TO_NATIVE:
        return f"{m['pre']}model.layers.{m['n']}.{_BLOCK_TO_NATIVE[m['mod']]}{m['rest']}"
    for old, new in _TOP_TO_NATIVE.items():
        i = key.find(old)
        if i != -1 and (i == 0 or key[i - 1] == ".") and key[i + len(old) :][:1] in ("", "."):
            return key[:i] + new + key[i + len(old) :]
    return key


def native_to_llada_key(key: str) -> str:
    """Inverse of :func:`llada_to_native_key`."""
    m = _NATIVE_LAYER_RE.match(key)
    if m and m["mod"] in _NATIVE_TO_BLOCK:
        return f"{m['pre']}model.transformer.blocks.{m['n']}.{_NATIVE_TO_BLOCK[m['mod']]}{m['rest']}"
    for old, new in _NATIVE_TO_TOP.items():
        i = key.find(old)
        if i != -1 and (i == 0 or key[i - 1] == ".") and key[i + len(old) :][:1] in ("", "."):
            return key[:i] + new + key[i + len(old) :]
    return key


def is_llada_config(raw: dict) -> bool:
    return str(raw.get("model_type", "")).lower() == "llada" or "d_model" in raw


def llama_config(**kwargs):
    """A ``LlamaConfig`` with bidirectional attention (``is_causal=False``)."""
    from transformers import LlamaConfig

    return LlamaConfig(is_causal=False, use_cache=False, **kwargs)


def llama_config_from_llada(raw: dict):
    """Translate LLaDA's ``config.json`` fields into a bidirectional ``LlamaConfig``."""
    return llama_config(**llama_kwargs_from_llada(raw))


def llama_kwargs_from_llada(raw: dict) -> dict:
    """``LlamaConfig`` keyword arguments for LLaDA's ``config.json`` fields (also what the vLLM
    plugin's config class reads, so both runtimes see the same shape)."""
    from a2d_guard.errors import A2DGuardError

    if raw.get("block_type", "llama") != "llama" or raw.get("activation_type", "silu") not in (
        "silu",
        "swiglu",
    ):
        raise A2DGuardError(
            f"LLaDA config with block_type={raw.get('block_type')!r} / activation_type="
            f"{raw.get('activation_type')!r} is not a Llama-shaped LLaDA; only llama/silu blocks "
            "load natively (pass --trust-remote-code to use the checkpoint's own code)"
        )
    n_heads = raw["n_heads"]
    return dict(
        vocab_size=raw.get("embedding_size") or raw["vocab_size"],
        hidden_size=raw["d_model"],
        intermediate_size=raw["mlp_hidden_size"],
        num_hidden_layers=raw["n_layers"],
        num_attention_heads=n_heads,
        num_key_value_heads=raw.get("n_kv_heads") or n_heads,
        max_position_embeddings=raw.get("max_sequence_length", 4096),
        rms_norm_eps=raw.get("rms_norm_eps", 1e-5),
        rope_theta=float(raw.get("rope_theta", 10000.0)),
        tie_word_embeddings=bool(raw.get("weight_tying", False)),
        attention_bias=bool(raw.get("include_bias", False)),
        mlp_bias=bool(raw.get("include_bias", False)),
        pad_token_id=raw.get("pad_token_id"),
        eos_token_id=raw.get("eos_token_id"),
        bos_token_id=raw.get("bos_token_id"),
    )


def llada_config_from_llama(config, mask_id: int, eos_id: int, pad_id: int) -> dict:
    """LLaDA's ``config.json`` for a bidirectional Llama (the way back)."""
    rope = getattr(config, "rope_parameters", None) or {}
    return {
        "architectures": ["LLaDAModelLM"],
        "model_type": "llada",
        "d_model": config.hidden_size,
        "n_heads": config.num_attention_heads,
        "n_kv_heads": config.num_key_value_heads,
        "n_layers": config.num_hidden_layers,
        "mlp_hidden_size": config.intermediate_size,
        "mlp_ratio": max(1, config.intermediate_size // config.hidden_size),
        "vocab_size": config.vocab_size,
        "embedding_size": config.vocab_size,
        "max_sequence_length": config.max_position_embeddings,
        "rope_theta": float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))),
        "rms_norm_eps": config.rms_norm_eps,
        "layer_norm_type": "rms",
        "block_type": "llama",
        "activation_type": "silu",
        "include_bias": bool(config.attention_bias),
        "weight_tying": bool(config.tie_word_embeddings),
        "rope": True,
        "mask_token_id": mask_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
    }


def make_bidirectional(model):
    """Turn off causality on every attention module.

    ``config.is_causal=False`` makes transformers build a bidirectional mask, but when no
    padding mask is needed SDPA falls back to the module's own ``is_causal`` flag, which
    Llama hard-codes to True. Setting both is what makes attention truly bidirectional.
    """
    model.config.is_causal = False
    for module in model.modules():
        if hasattr(module, "is_causal"):
            module.is_causal = False
    return model


def build_bidirectional_llama(config):
    from transformers import LlamaForCausalLM

    return make_bidirectional(LlamaForCausalLM(config)).eval()


def load_llada(path: Path, raw: dict, dtype, device):
    """Load a folder with LLaDA's original config + safetensors onto native Llama."""
    from transformers import LlamaForCausalLM

    config = llama_config_from_llada(raw)
    # transformers' key_mapping: regexes on checkpoint keys -> native names.
    key_mapping = {
        r"^model\.transformer\.blocks\.(\d+)\." + old + r"\.": rf"model.layers.\1.{new}."
        for old, new in _BLOCK_TO_NATIVE.items()
    }
    key_mapping.update({"^" + re.escape(k) + r"\.": v + "." for k, v in _TOP_TO_NATIVE.items()})
    model = LlamaForCausalLM.from_pretrained(
        str(path),
        config=config,
        key_mapping=key_mapping,
        dtype=dtype,
        use_safetensors=True,
        device_map=device if device not in (None, "cpu") else None,
    )
    return make_bidirectional(model).eval()


def save_llada(model, folder: Path, mask_id: int, eos_id: int, pad_id: int) -> None:
    """Write ``model`` with LLaDA's original config and key names (safetensors)."""
    from a2d_guard.outputs import save_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    state = {native_to_llada_key(k): v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("model.transformer.ff_out.weight", None)
    save_safetensors(state, folder / "model.safetensors", metadata={"format": "pt"})
    raw = llada_config_from_llama(model.config, mask_id=mask_id, eos_id=eos_id, pad_id=pad_id)
    raw["torch_dtype"] = str(next(model.parameters()).dtype).replace("torch.", "")
    (folder / "config.json").write_text(json.dumps(raw, indent=2) + "\n")


def convert_state_dict(state: dict[str, torch.Tensor], to: str) -> dict[str, torch.Tensor]:
    """Rename every key of a (full or LoRA) state dict: ``to`` is ``"native"`` or ``"llada"``."""
    fn = llada_to_native_key if to == "native" else native_to_llada_key
    return {fn(k): v for k, v in state.items()}
