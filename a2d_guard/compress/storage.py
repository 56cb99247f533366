"""Save and load a compressed model folder (safetensors + JSON only).

Layout: the family's usual ``config.json`` (LLaDA's own config and key names for llada/tiny,
the transformers config for dream/masked_lm) plus the key ``"a2d_guard_compression"``,
``model.safetensors`` with every tensor of the model (``QLRLinear`` layers as ``qweight``,
``scales``, ``offsets``, ``L``, ``R`` [, ``bias``]), and the tokenizer files. Because the
config carries that key, ``a2d_guard.models.load_model(folder)`` routes here (through the
format registry of ``a2d_guard.models.formats``, which names ``load_compressed``), so the
folder works wherever ``--model DIR`` is accepted.

Loading builds the architecture with its parameters on the meta device (no memory, no
random init), swaps the listed layers for empty ``QLRLinear`` shells, and assigns the
stored tensors: the dense weights of compressed layers are never materialised.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from torch import nn

from a2d_guard.compress.qlr_linear import QLRLinear
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.formats import COMPRESSION_KEY
from a2d_guard.models.loader import FAMILY_KEY
from a2d_guard.models.spec import ModelSpec

FORMAT = "a2d-guard-qlr"
VERSION = 2  # the newest this reader knows; 1: float L R only, 2: adds "lr_bits" (packed 4-bit L R)
WEIGHTS = "model.safetensors"


def _key_to_checkpoint(family: str):
    if family in ("llada", "tiny"):
        from a2d_guard.models.llada import native_to_llada_key

        return native_to_llada_key
    return lambda k: k


def _key_to_native(family: str):
    if family in ("llada", "tiny"):
        from a2d_guard.models.llada import llada_to_native_key

        return llada_to_native_key
    return lambda k: k


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """safetensors refuses shared tensors: keep the first of each tied group, remember the rest."""
    kept: dict[tuple, str] = {}
    out, tied = {}, {}
    for key, t in state.items():
        ident = (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride()), t.device)
        if t.numel() and ident in kept:
            tied[key] = kept[ident]
            continue
        kept[ident] = key
        out[key] = t.detach().contiguous().cpu()
    return out, tied


def _config_dict(model, spec: ModelSpec) -> dict:
    if spec.family in ("llada", "tiny"):
        from a2d_guard.models.llada import llada_config_from_llama

        raw = llada_config_from_llama(model.config, mask_id=spec.mask_id, eos_id=spec.eos_id, pad_id=spec.pad_id)
    else:
        raw = model.config.to_dict()
        raw[FAMILY_KEY] = spec.family
        raw.update(mask_token_id=spec.mask_id, eos_token_id=spec.eos_id, pad_token_id=spec.pad_id)
    float_dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    raw["torch_dtype"] = str(next(iter(float_dtypes), torch.float32)).replace("torch.", "")
    return raw


def save_compressed(model, tokenizer, spec: ModelSpec, folder: str | Path, info: dict) -> Path:
    """Write ``model`` (with ``QLRLinear`` layers) into ``folder``; ``info`` goes into the config."""
    from a2d_guard.outputs import save_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    to_ckpt = _key_to_checkpoint(spec.family)
    layers = {
        to_ckpt(name): {
            "in_features": m.in_features, "out_features": m.out_features, "bits": m.bits,
            "group_size": m.group_size, "rank": m.rank, "bias": m.bias is not None, "lr_bits": m.lr_bits,
        }
        for name, m in model.named_modules()
        if isinstance(m, QLRLinear)
    }
    state, tied = _dedupe({to_ckpt(k): v for k, v in model.state_dict().items()})
    save_safetensors(state, folder / WEIGHTS, metadata={"format": "pt", "a2d_guard": FORMAT})
    raw = _config_dict(model, spec)
    # version 2 only where a v1 reader would fail: packed 4-bit factors (--lr-bits 4)
    version = 2 if any(spec["lr_bits"] != 16 for spec in layers.values()) else 1
    raw[COMPRESSION_KEY] = {"format": FORMAT, "version": version, **info, "layers": layers, "tied": tied}
    (folder / "config.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(str(folder))
    return folder


@contextlib.contextmanager
def params_on_meta():
    """Create every ``nn.Parameter`` on the meta device (buffers stay real: RoPE's inv_freq)."""
    original = nn.Module.register_parameter

    def register(module, name, param):
        original(module, name, param)
        if param is not None and param.device.type != "meta":
            module._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


def _empty_model(folder: Path, raw: dict, family: str):
    from transformers.initialization import no_init_weights

    with params_on_meta(), no_init_weights():
        if family in ("llada", "tiny"):
            from a2d_guard.models.llada import build_bidirectional_llama, llama_config_from_llada

            return build_bidirectional_llama(llama_config_from_llada(raw))
        if family == "dream":
            from transformers import Qwen2ForCausalLM

            from a2d_guard.models.dream import qwen2_config_from_dream
            from a2d_guard.models.llada import make_bidirectional

            return make_bidirectional(Qwen2ForCausalLM(qwen2_config_from_dream(raw)))
        from transformers import AutoConfig, AutoModelForMaskedLM

        return AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(str(folder)))


def load_compressed(folder: Path, raw_config: dict, family: str, dtype: torch.dtype, device) -> nn.Module:
    """Build the compressed model stored in ``folder`` (called by ``load_model``)."""
    from safetensors.torch import load_file

    info = raw_config[COMPRESSION_KEY]
    if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") not in range(1, VERSION + 1):
        raise A2DGuardError(
            f"{folder}/config.json has an {COMPRESSION_KEY} entry this a2d-guard cannot read "
            f"(expected format {FORMAT!r} version 1 to {VERSION}); re-run `a2d-guard compress` with this version"
        )
    weights = Path(folder) / WEIGHTS
    if not weights.is_file():
        raise A2DGuardError(f"compressed model folder {str(folder)!r} has no {WEIGHTS}; re-run `a2d-guard compress`")
    to_native = _key_to_native(family)
    model = _empty_model(Path(folder), raw_config, family)
    for name, spec in info["layers"].items():
        shell = QLRLinear(
            spec["in_features"], spec["out_features"], spec["bits"], spec["group_size"], spec["rank"],
            bias=spec["bias"], device="meta", lr_bits=spec.get("lr_bits", 16),
        )
        native = to_native(name)
        parent, _, child = native.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, shell)
    stored = load_file(str(weights))
    for key, source in info.get("tied", {}).items():
        stored[key] = stored[source]
    state = {to_native(k): v for k, v in stored.items()}
    model.load_state_dict(state, strict=True, assign=True)
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if left:
        raise A2DGuardError(f"{weights} lacks tensors for {left[:3]}; the folder is incomplete, re-run compress")
    with torch.no_grad():
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if p.is_floating_point() and p.dtype != dtype:
                    setattr(module, name, nn.Parameter(p.to(dtype), requires_grad=p.requires_grad))
            if isinstance(module, QLRLinear):  # grids (of Q, and of L R at lr_bits 4) in the model dtype
                for name, buf in list(module.named_buffers(recurse=False)):
                    if buf.is_floating_point():
                        setattr(module, name, buf.to(dtype))
    if getattr(model.config, "tie_word_embeddings", False):
        model.tie_weights()
    return model.to(device).eval()
