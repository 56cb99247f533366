"""LoRA on the family's attention and MLP projections, and export in PEFT format.

Targets (DESIGN §3/§7): every attention and MLP projection, never the LM head. The A2D
reference code targets the suffixes ``q_proj, k_proj, v_proj, attn_out, ff_proj, up_proj,
ff_out`` on the hub LLaDA model; peft matches suffixes, and LLaDA's LM head is also named
``ff_out`` (``model.transformer.ff_out``), so that list very probably put LoRA on the head
too. We do not: the head is left frozen, and the exported config uses a regex anchored on
``blocks.N`` so the hub model cannot match its head either.

Names of the exported adapter (``adapter_config.json`` + ``adapter_model.safetensors``):

- ``llada``: LLaDA's original module names (``model.transformer.blocks.N.q_proj``), so
  ``PeftModel.from_pretrained`` on the hub LLaDA model loads it; our loader converts back.
- ``tiny``, ``dream``, ``masked_lm``: the native module names of the model we trained.
  ``tiny`` has no hub original: its only base is ``load_model("tiny")``, a native Llama,
  and that is where ``PeftModel.from_pretrained`` must load it. (A tiny model saved with
  ``save_model`` reloads as family ``llada`` and its adapters get LLaDA names.)
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch

from a2d_guard.errors import A2DGuardError
from a2d_guard.models.base_ref import base_reference
from a2d_guard.models.llada import native_to_llada_key
from a2d_guard.models.spec import ModelSpec

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def target_modules(spec: ModelSpec, targets: list[str] | None) -> list[str]:
    """The module-name suffixes to adapt: the config's, else the family's."""
    chosen = list(targets) if targets else list(spec.lora_targets)
    if spec.lm_head in chosen:
        raise A2DGuardError(f"lora_targets names the LM head {spec.lm_head!r}; A2D leaves the head frozen, remove it")
    return chosen


def add_lora(model, spec: ModelSpec, r: int, alpha: int, dropout: float, targets: list[str] | None = None):
    """Wrap ``model`` in a ``PeftModel`` with fresh LoRA weights (B = 0: starts as the base)."""
    from peft import LoraConfig, get_peft_model

    chosen = target_modules(spec, targets)
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in chosen if t not in names]
    if missing:
        raise A2DGuardError(
            f"lora_targets {missing} are not modules of this {spec.family} model; "
            f"use names from: {', '.join(spec.lora_targets)}"
        )
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=chosen, bias="none")
    with warnings.catch_warnings():  # peft probes a property transformers 5 deprecated; not actionable here
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def _llada_target_regex(peft_model, leaves: list[str]) -> str:
    """Native leaf names -> a regex over LLaDA's block modules (head excluded by construction)."""
    llada_leaves = []
    for name, _ in peft_model.get_base_model().named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in leaves and ".layers." in name:
            mapped = native_to_llada_key(name).rsplit(".", 1)[-1]
            if mapped not in llada_leaves:
                llada_leaves.append(mapped)
    return r".*\.blocks\.\d+\.(" + "|".join(llada_leaves) + ")"


def adapter_tensors(peft_model) -> dict[str, torch.Tensor]:
    """The LoRA weights as peft saves them (``base_model.model.<module>.lora_A.weight``).

    ``save_embedding_layers=False``: we never train or resize the embeddings, and peft's
    default ("auto") re-reads the base's config.json on every export to find out (or asks
    the Hub, for a Hub id), which for a LLaDA folder makes transformers warn "model of type
    `llada` to instantiate a model of type `llama`" twice per adapter run.
    """
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(peft_model, save_embedding_layers=False)
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}


def export_adapter(peft_model, spec: ModelSpec, folder: str | Path, base_model: str) -> Path:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` into ``folder``.

    LoRA tensors are stored in float32 (they are small; bf16 would lose the update).
    ``base_model`` is recorded as ``base_reference`` gives it: ``tiny``, a Hub id, or the
    absolute path of a local folder (a relative one would break from any other directory).
    """
    from a2d_guard.outputs import save_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = copy.deepcopy(peft_model.peft_config["default"])
    config.base_model_name_or_path = base_reference(base_model)
    config.inference_mode = True
    state = adapter_tensors(peft_model)
    if spec.family == "llada":
        leaves = sorted(config.target_modules) if not isinstance(config.target_modules, str) else []
        config.target_modules = _llada_target_regex(peft_model, leaves)
        state = {native_to_llada_key(k): v for k, v in state.items()}
    config.save_pretrained(str(folder))
    save_safetensors(state, folder / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    return folder
