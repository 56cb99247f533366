"""LoRA on the family's attention and MLP projections, and export in PEFT format.

Targets (DESIGN §3/§7). Our default: every attention and MLP projection (``o_proj``
included), never the LM head, so the adapter never edits the vocabulary projection.

The A2D authors' code (github.com/WonjeJeung/A2D, ``method/llada.py`` and ``method/dream.py``)
passes ``target_modules=["q_proj", "k_proj", "v_proj", "ff_proj", "up_proj", "ff_out"]`` to
peft on the hub models: no attention output projection (LLaDA's ``attn_out``). peft matches
those as name suffixes, so on LLaDA ``ff_out`` hits both the MLP down projection of every
block *and* the LM head (``model.transformer.ff_out``); on Dream (Qwen2 names) only
``q_proj, k_proj, v_proj, up_proj`` exist. ``lora_target_names: original`` reproduces that
matching (``resolve_targets``); ``a2d-guard train --recipe paper`` uses it.

Names of the exported adapter (``adapter_config.json`` + ``adapter_model.safetensors``):

- ``llada``: LLaDA's original module names (``model.transformer.blocks.N.q_proj``), so
  ``PeftModel.from_pretrained`` on the hub LLaDA model loads it; our loader converts back.
  The exported target is a regex anchored on ``blocks.N`` (plus ``model.transformer.ff_out``
  only when the head was trained), so a bare ``ff_out`` never reaches the head by accident.
- ``tiny``, ``dream``, ``masked_lm``: the native module names of the model we trained.
  ``tiny`` has no hub original: its only base is ``load_model("tiny")``, a native Llama,
  and that is where ``PeftModel.from_pretrained`` must load it. (A tiny model saved with
  ``save_model`` reloads as family ``llada`` and its adapters get LLaDA names.)
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import torch

from a2d_guard.errors import A2DGuardError
from a2d_guard.models.base_ref import base_reference
from a2d_guard.models.llada import native_to_llada_key
from a2d_guard.models.spec import ModelSpec

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def original_name(spec: ModelSpec, native: str) -> str:
    """The module's name in the family's original checkpoint: LLaDA's for ``llada`` and the
    LLaDA-shaped ``tiny`` (``model.layers.3.mlp.down_proj`` -> ``model.transformer.blocks.3.ff_out``,
    ``lm_head`` -> ``model.transformer.ff_out``); the native name for every other family."""
    return native_to_llada_key(native) if spec.family in ("llada", "tiny") else native


def _linear_names(model) -> list[str]:
    """Dense linears and the compressed ones (``QLRLinear``, known by its peft LoRA layer)."""
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) or hasattr(type(module), "peft_lora_layer")]


def _suffix_match(name: str, targets: list[str]) -> bool:
    """peft's rule for a list of targets: the name itself or a ``.``-separated suffix of it."""
    return any(name == t or name.endswith("." + t) for t in targets)


def resolve_targets(model, spec: ModelSpec, targets: list[str] | None, naming: str = "native") -> list[str]:
    """The native leaf names to adapt (what ``LoraConfig.target_modules`` gets).

    ``naming="native"``: ``targets`` are leaf names of the loaded model (default: the family's
    projections); each must exist. ``naming="original"``: ``targets`` are peft suffixes over
    the family's original module names (``original_name``), matched the way peft matches them
    on the hub model; names that match nothing are ignored, as peft ignores them (the A2D list
    on Dream), but at least one must match. The result must pick every layer alike (a leaf list
    cannot say "layer 3 only").
    """
    if naming == "native" or not targets:
        chosen = list(targets) if targets else list(spec.lora_targets)
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        missing = [t for t in chosen if t not in names]
        if missing:
            raise A2DGuardError(
                f"lora_targets {missing} are not modules of this {spec.family} model; "
                f"use names from: {', '.join([*spec.lora_targets, spec.lm_head])}"
            )
        return chosen
    linear = _linear_names(model)
    matched = [n for n in linear if _suffix_match(original_name(spec, n), targets)]
    if not matched:
        raise A2DGuardError(
            f"lora_targets {targets} match no module of this {spec.family} model by its original names; "
            f"e.g. {', '.join(sorted({original_name(spec, n).rsplit('.', 1)[-1] for n in linear}))}"
        )
    leaves = sorted({n.rsplit(".", 1)[-1] for n in matched})
    by_leaf = [n for n in linear if n.rsplit(".", 1)[-1] in leaves]
    if by_leaf != matched:
        extra = sorted(set(by_leaf) - set(matched))[:3]
        raise A2DGuardError(
            f"lora_targets {targets} pick some layers of a kind but not others (e.g. not {extra}); "
            "give suffixes that name a module kind (e.g. q_proj, ff_out), not one layer"
        )
    return leaves


def add_lora(model, spec: ModelSpec, r: int, alpha: int, dropout: float, targets: list[str] | None = None,
             naming: str = "native"):
    """Wrap ``model`` in a ``PeftModel`` with fresh LoRA weights (B = 0: starts as the base)."""
    from peft import LoraConfig, get_peft_model

    from a2d_guard.models.adapter import register_lora_layers

    chosen = resolve_targets(model, spec, targets, naming)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=chosen, bias="none")
    register_lora_layers(config, model)  # a compressed base: LoRA over QLRLinear (compress/peft_lora.py)
    with warnings.catch_warnings():  # peft probes a property transformers 5 deprecated; not actionable here
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def _llada_target_regex(peft_model, leaves: list[str]) -> str:
    """Native leaf names -> a regex over LLaDA's block modules, plus the head only if it is a target."""
    llada_leaves = []
    for name, _ in peft_model.get_base_model().named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in leaves and ".layers." in name:
            mapped = native_to_llada_key(name).rsplit(".", 1)[-1]
            if mapped not in llada_leaves:
                llada_leaves.append(mapped)
    blocks = r".*\.blocks\.\d+\.(" + "|".join(llada_leaves) + ")"
    if "lm_head" not in leaves:
        return blocks
    head = re.escape(native_to_llada_key("lm_head"))  # model.transformer.ff_out
    return f"({blocks}|{head})" if llada_leaves else head


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
