"""Merge a LoRA adapter into its base: one plain model folder, in the base's own layout.

Why: serving a merged model costs nothing extra per token and needs no peft, and other
tools (or ``compress``) can take the folder as a plain checkpoint. ``load_model`` already
merges (peft ``merge_and_unload``) when it attaches an adapter; this saves the result with
``save_model``, so a LLaDA base gives LLaDA's keys and config back and ``--model OUT``
loads it. ``config.json`` records what was merged (``a2d_guard_merged``: base and adapter).
The folder is built under a temporary name and moved in whole (``outputs.write_folder``).
"""

from __future__ import annotations

import json
from pathlib import Path

from a2d_guard.errors import A2DGuardError

MERGED_KEY = "a2d_guard_merged"


def merge_adapter(model: str, adapter: str | Path, output: str | Path, dtype: str | None = None,
                  device: str | None = None, family: str | None = None, trust_remote_code: bool = False,
                  seed: int = 0, overwrite: bool = False) -> Path:
    """Load ``model`` + ``adapter`` merged and write it to ``output``.

    ``overwrite``: replace ``output`` if it holds only an earlier merge's output.
    """
    from a2d_guard.models.loader import load_model, read_config, save_model
    from a2d_guard.outputs import check_replaceable, write_folder

    out = Path(output).expanduser()
    if overwrite:  # checked before the (possibly long) load, and again when the folder moves in
        check_replaceable(out, "--overwrite", command="merge")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise A2DGuardError(f"--output {str(output)!r} already exists and is not empty; pass a new folder, or "
                            "--overwrite to replace an earlier merged folder")
    merged, tokenizer, spec = load_model(model, adapter=adapter, dtype=dtype, device=device, family=family,
                                         trust_remote_code=trust_remote_code, seed=seed, merge_adapter=True)
    if any(hasattr(type(m), "peft_lora_layer") for m in merged.modules()):  # compress.QLRLinear layers
        raise A2DGuardError(
            f"{model!r} is a compressed base: a LoRA adapter cannot be merged into its integer codes; serve it "
            "unmerged instead (--model BASE --adapter ADAPTER works with generate, serve, eval and Guard)"
        )

    out.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        save_model(merged, tokenizer, spec, tmp)
        raw = read_config(tmp)
        raw[MERGED_KEY] = {"base": model, "adapter": str(adapter)}
        (tmp / "config.json").write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")

    return write_folder(out, write, "--overwrite", "merge")
