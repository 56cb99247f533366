"""``load_model``: a Hub id, a local folder or ``tiny`` -> (model, tokenizer, ModelSpec).

Only safetensors and JSON are read. The family is detected from ``config.json`` unless given;
``trust_remote_code`` is off unless the caller asks for it.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from a2d_guard.errors import A2DGuardError
from a2d_guard.models import dream, llada, masked_lm
from a2d_guard.models.formats import find_format, load_with_format
from a2d_guard.models.hub_ids import fetch_snapshot, looks_like_hub_id
from a2d_guard.models.safetensors_file import check_weights_folder
from a2d_guard.models.spec import FAMILIES, ModelSpec

TINY = "tiny"
FAMILY_KEY = "a2d_guard_family"  # written into config.json by save_model
# What a model folder needs from the Hub: configs, tokenizer files, safetensors (never pickle).
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The one place a user's device becomes a ``torch.device`` (CLI, ``LLM``, training).

    Checked here, before any tensor moves: without this, a CUDA-less torch fails deep in
    ``.to("cuda")`` with an ``AssertionError`` traceback, and a missing ordinal with a
    CUDA runtime error.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise A2DGuardError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise A2DGuardError(
                f"--device {device}: CUDA is not available on this machine (torch.cuda.is_available() is "
                "False); use --device cpu (device='cpu' in Python) or install a CUDA build of torch"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise A2DGuardError(
                f"--device {device}: this machine has {count} CUDA device(s); use one of "
                f"{', '.join(f'cuda:{i}' for i in range(count))}"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise A2DGuardError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bf16 on GPU, fp32 on CPU unless asked otherwise."""
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "fp64": torch.float64,
             "float64": torch.float64, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if dtype not in names:
        raise A2DGuardError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(names))}")
    return names[dtype]


def resolve_folder(name_or_path: str) -> Path:
    """A local folder as is; otherwise a Hub id fetched into the local cache."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise A2DGuardError(f"model path {name_or_path!r} is a file; pass the folder that holds config.json")
        return path
    if not looks_like_hub_id(name_or_path):
        raise A2DGuardError(
            f"model path {name_or_path!r} does not exist; pass an existing folder, a Hub id "
            f"like GSAI-ML/LLaDA-8B-Instruct, or {TINY!r} for the built-in model"
        )
    return fetch_snapshot(name_or_path, _HUB_PATTERNS, "model")


def read_config(folder: Path) -> dict:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise A2DGuardError(
            f"model folder {str(folder)!r} has no config.json; pass a folder saved with "
            "save_pretrained/save_model or a checkpoint downloaded from the Hub"
        )
    try:
        return json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise A2DGuardError(f"{config_file} is not valid JSON ({exc.msg} at line {exc.lineno})") from None


def detect_family(raw: dict) -> str:
    if raw.get(FAMILY_KEY) in FAMILIES:
        return raw[FAMILY_KEY]
    if llada.is_llada_config(raw):
        return "llada"
    if dream.is_dream_config(raw):
        return "dream"
    if masked_lm.is_masked_lm_config(raw):
        return "masked_lm"
    raise A2DGuardError(
        f"cannot tell the model family from config.json (model_type={raw.get('model_type')!r}); "
        f"pass --family with one of {', '.join(f for f in FAMILIES if f != TINY)}"
    )


def _token_id(tokenizer, token: str) -> int | None:
    vocab = tokenizer.get_vocab()
    return vocab.get(token)


def _first(*values):
    for v in values:
        if isinstance(v, list):
            v = v[0] if v else None
        if v is not None:
            return int(v)
    return None


def make_spec(family: str, raw: dict, tokenizer, model) -> ModelSpec:
    """Token ids from config.json first, then the tokenizer; never hard-coded."""
    vocab_size = int(model.get_output_embeddings().weight.shape[0])
    max_pos = int(getattr(model.config, "max_position_embeddings", 0) or tokenizer.model_max_length)
    return spec_from_config(family, raw, tokenizer, vocab_size, max_pos)


def spec_from_config(family: str, raw: dict, tokenizer, vocab_size: int, max_pos: int) -> ModelSpec:
    """``make_spec`` without the model: for a process that holds only the tokenizer and the
    config (the vLLM plugin's front end, whose weights live in vLLM's engine process)."""
    if family in ("llada", "tiny"):
        mask = _first(raw.get("mask_token_id"), _token_id(tokenizer, "<|mdm_mask|>"), tokenizer.mask_token_id)
        eos = _first(raw.get("eos_token_id"), tokenizer.eos_token_id)
        eot = _token_id(tokenizer, "<|eot_id|>")
        pad = _first(raw.get("pad_token_id"), eos)
        targets, shift = llada.NATIVE_LORA_TARGETS, False
    elif family == "dream":
        mask = _first(raw.get("mask_token_id"), _token_id(tokenizer, "<|mask|>"), tokenizer.mask_token_id)
        eos = _first(raw.get("eos_token_id"), tokenizer.eos_token_id)
        eot = _token_id(tokenizer, "<|im_end|>")
        pad = _first(raw.get("pad_token_id"), eos)
        targets, shift = llada.NATIVE_LORA_TARGETS, True
    else:  # masked_lm
        mask = _first(tokenizer.mask_token_id)
        eos = _first(tokenizer.eos_token_id, tokenizer.sep_token_id)
        eot = None
        pad = _first(tokenizer.pad_token_id, eos)
        targets, shift = ("query", "key", "value"), False
    if mask is None or eos is None:
        raise A2DGuardError(
            f"the {family} model has no mask or EOS token id (mask={mask}, eos={eos}); set "
            "mask_token_id/eos_token_id in config.json or use a tokenizer that defines them"
        )
    return ModelSpec(family=family, mask_id=mask, eos_id=eos, eot_id=eot, pad_id=pad,
                     shift_logits=shift, vocab_size=vocab_size, max_positions=max_pos,
                     lora_targets=tuple(targets))


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' loading chatter (model-type notices, progress bars) and restore it.

    We load LLaDA/Dream configs into Llama/Qwen2 on purpose; the "model of type llada"
    notice would only alarm users.
    """
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_tokenizer(folder: Path, family: str, trust_remote_code: bool = False):
    """The folder's tokenizer, as ``load_model`` loads it."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except Exception:
        if family == "dream":  # Dream ships a custom class around the Qwen2 BPE files
            from transformers import Qwen2TokenizerFast

            return Qwen2TokenizerFast.from_pretrained(str(folder))
        raise


def load_model(
    name_or_path: str,
    adapter: str | Path | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    family: str | None = None,
    trust_remote_code: bool = False,
    seed: int = 0,
    merge_adapter: bool = True,
):
    """Load a model for diffusion decoding: returns ``(model, tokenizer, spec)``.

    ``name_or_path``: ``"tiny"`` (built in, deterministic from ``seed``), a local folder, or a
    Hub id. ``family`` overrides detection (llada, dream, masked_lm). ``adapter``: a PEFT
    LoRA folder, merged into the weights unless ``merge_adapter=False``.
    """
    if family is not None and family not in FAMILIES:
        raise A2DGuardError(f"unknown model family {family!r}; use one of {', '.join(FAMILIES)}")
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if name_or_path == TINY or family == TINY:
        if name_or_path != TINY:
            raise A2DGuardError("family 'tiny' is only the built-in model; pass --model tiny")
        from a2d_guard.models.tiny import build_tiny_model, build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
        model = build_tiny_model(seed=seed, vocab_size=len(tokenizer)).to(device=dev, dtype=dt)
        raw = {}
        fam = TINY
    else:
        folder = resolve_folder(name_or_path)
        raw = read_config(folder)
        with quiet_transformers():
            model, tokenizer, fam = _load_from_folder(folder, raw, family, dt, dev, trust_remote_code)
    spec = make_spec(fam, raw, tokenizer, model)
    if adapter is not None:
        from a2d_guard.models.adapter import attach_adapter

        model = attach_adapter(model, spec, adapter, merge=merge_adapter, base=name_or_path)
    model.eval()
    return model, tokenizer, spec


def _load_from_folder(folder: Path, raw: dict, family: str | None, dt, dev, trust_remote_code: bool):
    """(model, tokenizer, family) from a local folder with a parsed config.json."""
    fam = family or detect_family(raw)
    if fam == TINY:  # a saved tiny model is an ordinary LLaDA-layout folder
        fam = "llada"
    check_weights_folder(folder, "copy or download the model again (a Hub model: delete it from the Hugging Face "
                                 "cache to fetch it anew), or re-run the command that wrote the folder")
    tokenizer = load_tokenizer(folder, fam, trust_remote_code)
    fmt = find_format(raw)  # e.g. a folder written by `a2d-guard compress` (models/formats.py)
    if fmt is not None:
        model = load_with_format(fmt, folder, raw, fam, dt, dev)
    elif fam == "llada":
        if not llada.is_llada_config(raw):
            raise A2DGuardError(
                f"{str(folder)!r} is not a LLaDA checkpoint (model_type={raw.get('model_type')!r}); "
                "pass the right --family"
            )
        model = llada.load_llada(folder, raw, dt, dev)
    elif fam == "dream":
        model = dream.load_dream(folder, raw, dt, dev)
    else:
        model = masked_lm.load_masked_lm(folder, dt, dev, trust_remote_code)
    return model.to(dev), tokenizer, fam


def save_model(model, tokenizer, spec: ModelSpec, folder: str | Path) -> Path:
    """Write a folder that ``load_model`` reads back (LLaDA layout for llada/tiny)."""
    from a2d_guard.outputs import follow_umask

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if spec.family in ("llada", "tiny"):
        llada.save_llada(model, folder, mask_id=spec.mask_id, eos_id=spec.eos_id, pad_id=spec.pad_id)
    else:
        model.save_pretrained(str(folder), safe_serialization=True)
        for weights in folder.glob("*.safetensors"):  # transformers writes them owner-only
            follow_umask(weights)
        raw = read_config(folder)
        raw[FAMILY_KEY] = spec.family
        raw.update(mask_token_id=spec.mask_id, eos_token_id=spec.eos_id, pad_token_id=spec.pad_id)
        (folder / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    tokenizer.save_pretrained(str(folder))
    return folder
