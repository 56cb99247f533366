"""LoRA adapters: load one onto a base model, whatever module names it was saved with.

An adapter trained on the hub LLaDA model carries LLaDA's names
(``model.transformer.blocks.N.q_proj``); one trained here on the native model carries
Llama's. Both load: keys are converted to native names, every LoRA matrix is checked against
the base model's layer shapes (a wrong base is a clear error, not a peft size-mismatch
traceback), and the weights are set through peft.
"""

from __future__ import annotations

import importlib
import json
import re
import warnings
from pathlib import Path

import torch

from a2d_guard.errors import A2DGuardError
from a2d_guard.models.base_ref import warn_if_other_base
from a2d_guard.models.hub_ids import fetch_snapshot, looks_like_hub_id
from a2d_guard.models.llada import llada_to_native_key
from a2d_guard.models.safetensors_file import load_safetensors
from a2d_guard.models.spec import ModelSpec
from a2d_guard.paths import require_folder

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_LORA_KEY_RE = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.\w+)?\.weight$")

# LoraConfig fields we carry over from adapter_config.json (the rest are peft bookkeeping).
_LORA_FIELDS = ("r", "lora_alpha", "lora_dropout", "bias", "use_rslora", "fan_in_fan_out")


def resolve_adapter(name: str | Path) -> Path:
    """A local adapter folder as is; ``ORG/NAME`` that is not a local path from the Hub.

    Only the two adapter files are fetched (``a2d-guard push`` uploads them with a card).
    """
    path = Path(name).expanduser()
    if path.exists() or not looks_like_hub_id(str(name)):
        return path
    return fetch_snapshot(str(name), [ADAPTER_CONFIG, ADAPTER_WEIGHTS], "adapter")


def read_adapter(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read ``adapter_config.json`` and ``adapter_model.safetensors`` (never pickle).

    ``folder`` may be a Hub id (``resolve_adapter``). A damaged file (an interrupted copy,
    download or write) is an ``A2DGuardError`` naming it, not a JSON or safetensors traceback.
    """
    folder = resolve_adapter(folder)
    fix = f"pass the folder that holds {ADAPTER_CONFIG}"
    if folder.is_file() and (folder.parent / ADAPTER_CONFIG).is_file():
        fix += f" ({str(folder.parent)!r})"
    require_folder(folder, "adapter folder", fix)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (folder / name).is_file():
            raise A2DGuardError(
                f"adapter folder {str(folder)!r} has no {name}; point --adapter at a PEFT adapter "
                "folder saved with safetensors (e.g. OUTPUT/adapter from `a2d-guard train`)"
            )
    fix = ("copy or download the adapter again, or re-train it (a2d-guard train ... --output DIR writes "
           "DIR/adapter)")
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise A2DGuardError(f"{folder / ADAPTER_CONFIG} is not valid JSON; {fix}") from None
    if not isinstance(config, dict):
        raise A2DGuardError(f"{folder / ADAPTER_CONFIG} is not a JSON object; {fix}")
    return config, load_safetensors(folder / ADAPTER_WEIGHTS, fix)


def custom_lora_layers(model) -> dict[type, type]:
    """Layer type -> peft LoRA layer class, for every module type of ``model`` that names one.

    A layer peft does not know (``compress.QLRLinear``) declares its LoRA class as a
    ``peft_lora_layer = "package.module:Class"`` attribute, resolved here by import at call
    time: ``models`` stays below ``compress`` (no import edge), as in ``models.formats``.
    """
    found: dict[type, type] = {}
    for module in model.modules():
        spec = getattr(type(module), "peft_lora_layer", None)
        if isinstance(spec, str) and type(module) not in found:
            mod, _, attr = spec.partition(":")
            found[type(module)] = getattr(importlib.import_module(mod), attr)
    return found


def register_lora_layers(config, model):
    """Teach ``config`` (a ``LoraConfig``) the custom LoRA layers ``model`` needs; returns whether any."""
    mapping = custom_lora_layers(model)
    if mapping:
        config._register_custom_module(mapping)  # peft's custom-module API (docs: developer_guides/custom_models)
    return bool(mapping)


def _layer_shape(layer) -> tuple[int, int]:
    """(out, in) of a dense or compressed linear layer (a QLRLinear has no ``weight``)."""
    if hasattr(layer, "out_features") and hasattr(layer, "in_features"):
        return int(layer.out_features), int(layer.in_features)
    return tuple(layer.weight.shape)


def _check_shapes(model, state: dict[str, torch.Tensor], folder: Path, base: str | None) -> list[str]:
    """Raise if any LoRA matrix does not fit the base layer; return the target leaf names."""
    hint = f" (it names base model {base!r})" if base else ""
    targets: set[str] = set()
    for key, tensor in state.items():
        m = _LORA_KEY_RE.match(key)
        if not m:
            continue
        module_name = m["module"]
        try:
            layer = model.get_submodule(module_name)
        except AttributeError:
            raise A2DGuardError(
                f"adapter {str(folder)!r} targets module {module_name!r}, which this model does not "
                f"have: the adapter was trained on a different base model{hint}; load it on that base"
            ) from None
        out_f, in_f = _layer_shape(layer)
        want = (tensor.shape[0], in_f) if m["ab"] == "A" else (out_f, tensor.shape[1])
        if tuple(tensor.shape) != want:
            raise A2DGuardError(
                f"adapter {str(folder)!r} does not fit this model: {key} has shape "
                f"{tuple(tensor.shape)} but layer {module_name!r} is {out_f}x{in_f}; the adapter was "
                f"trained on a different base model{hint}; load it on that base"
            )
        targets.add(module_name.rsplit(".", 1)[-1])
    if not targets:
        raise A2DGuardError(f"adapter {str(folder)!r} holds no LoRA weights (no '*.lora_A.weight' keys)")
    return sorted(targets)


def attach_adapter(model, spec: ModelSpec, folder: str | Path, merge: bool = True, base: str | None = None):
    """Load the adapter in ``folder`` onto ``model``; merged into the weights by default.

    Merging gives inference the base model's speed; pass ``merge=False`` to keep a
    ``PeftModel`` (e.g. to continue training). A compressed base (``QLRLinear`` layers) cannot
    take a merge (its weights are integer codes): there ``merge=True`` returns the base model
    with the LoRA layers left in place, unmerged, which every caller runs like a merged one.
    ``base``: the name ``model`` was loaded by;
    an adapter whose ``base_model_name_or_path`` names another base loads with an
    ``A2DGuardWarning`` (``models.base_ref``).
    """
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict

    folder = Path(folder)
    config, state = read_adapter(folder)
    if config.get("peft_type", "LORA").upper() != "LORA":
        raise A2DGuardError(f"adapter {str(folder)!r} is a {config.get('peft_type')} adapter; only LoRA is supported")
    if spec.family in ("llada", "tiny"):
        state = {llada_to_native_key(k): v for k, v in state.items()}
    targets = _check_shapes(model, state, folder, config.get("base_model_name_or_path"))
    warn_if_other_base(config.get("base_model_name_or_path"), base, folder)
    lora = LoraConfig(target_modules=targets, **{k: config[k] for k in _LORA_FIELDS if k in config})
    unmergeable = register_lora_layers(lora, model)
    with warnings.catch_warnings():  # peft probes a deprecated transformers attribute; not the user's concern
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, lora)
    result = set_peft_model_state_dict(peft_model, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise A2DGuardError(f"adapter {str(folder)!r} has weights this model cannot take: {unexpected[:3]}")
    peft_model.eval()
    if not merge:
        return peft_model
    return peft_model.get_base_model() if unmergeable else peft_model.merge_and_unload()
