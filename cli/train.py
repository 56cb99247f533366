"""``a2d-guard train``: A2D safety alignment as a LoRA adapter (DESIGN §7).

Precedence: built-in defaults (the paper's hyperparameters) < ``--recipe`` (or ``recipe:`` in the
file) < the run's saved ``config.yaml`` (``--resume`` only) < ``--config FILE`` (YAML) < flags
given here. Every flag defaults to "not given" so
that a saved or YAML value is only overridden on purpose, and a resume compares with its
checkpoint only what the user changed (``training/resume.py`` says what may change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from a2d_guard.cli.errors import user_errors_exit_1
from a2d_guard.cli.options import DeviceOpt


def _opt(flag: str, help: str, *aliases: str):
    return typer.Option(flag, *aliases, help=help)


OptStr = Annotated[str | None, _opt("--model", "Hub id, local folder, or 'tiny' (default tiny).", "-m")]
DataOpt = Annotated[str | None, _opt("--data", "Rows with prompt, response, is_safe|label: "
                                               ".jsonl/.json/.csv or hf:NAME[:SPLIT].")]
ConfigOpt = Annotated[Path | None, _opt("--config", "YAML file of TrainConfig keys (flags win).")]
OutputOpt = Annotated[str | None, _opt("--output", "Run folder: adapter/, checkpoints/, metrics.jsonl "
                                                   "(default a2d-output).", "-o")]
RecipeOpt = Annotated[str | None, _opt(
    "--recipe", "Start from a packaged preset: 'paper' reproduces the A2D authors' training (pad to the "
    "longest row of each batch, their LoRA targets as peft matches them, LLaDA's LM head included, no "
    "gradient clipping). --config and explicit flags override its values.")]


def _grad_norm(value: str) -> float | str | None:
    """``--max-grad-norm``: a number, or none/off for no clipping (the config validates the number)."""
    if value.strip().lower() in ("none", "off", "null"):
        return None
    try:
        return float(value)
    except ValueError:
        return value  # TrainConfig names the bad value and the fix


@user_errors_exit_1
def train(
    model: OptStr = None,
    data: DataOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = None,
    recipe: RecipeOpt = None,
    epochs: Annotated[int | None, _opt("--epochs", "Passes over the data (default 10).")] = None,
    max_steps: Annotated[int | None, _opt("--max-steps", "Stop after N optimizer steps (wins over --epochs).")] = None,
    lr: Annotated[float | None, _opt("--lr", "AdamW learning rate (default 5e-5).")] = None,
    batch_size: Annotated[int | None, _opt("--batch-size", "Rows per micro-batch per process (default 16).")] = None,
    grad_accum: Annotated[int | None, _opt("--grad-accum", "Micro-batches per optimizer step (default 1).")] = None,
    max_length: Annotated[int | None, _opt("--max-length", "Tokens per row, prompt included (default 128).")] = None,
    save_every: Annotated[int | None, _opt("--save-every", "Checkpoint every N steps, 0: only at the end "
                                                                      "(default 500).")] = None,
    seed: Annotated[int | None, _opt("--seed", "Data order, masking and dropout seed (default 42).")] = None,
    objective: Annotated[str | None, _opt("--objective", "a2d (default) or sft.")] = None,
    mask_prompt: Annotated[str | None, _opt("--mask-prompt", "none (paper), harmful (also mask the prompt of "
                                                             "harmful rows, target EOS) or all.")] = None,
    content_rows: Annotated[bool | None, _opt(
        "--content-rows/--no-content-rows", "Also train each harmful response under a safe prompt (target EOS) "
        "and each harmful prompt with a safe response, so p(EOS) reads the text, not only the prompt "
        "(an extension; off by default).")] = None,
    padding: Annotated[str | None, _opt("--padding", "max_length (default: every row EOS-padded to "
                                                     "--max-length) or longest (to the longest row of its "
                                                     "micro-batch, as the A2D code).")] = None,
    max_grad_norm: Annotated[str | None, _opt("--max-grad-norm", "Clip the gradient norm to this (default 1.0); "
                                                                 "none: no clipping.")] = None,
    gradient_checkpointing: Annotated[
        bool | None, _opt("--gradient-checkpointing/--no-gradient-checkpointing", "Trade compute for memory.")
    ] = None,
    skip_bad_rows: Annotated[bool, _opt("--skip-bad-rows", "Skip (and count) bad rows instead of stopping.")] = False,
    device: DeviceOpt = None,
    resume: Annotated[bool, _opt("--resume", "Continue the run in --output from its latest checkpoint, with its "
                                             "saved config (--config and flags given here change it).")] = False,
    allow_config_change: Annotated[bool, _opt(
        "--allow-config-change", "With --resume: accept values that change the run (e.g. --lr) and record them "
        "under config_history in config.yaml. Output, logging, checkpointing, device, and run length under a "
        "constant lr schedule may always change; model and LoRA shape never.")] = False,
    overwrite: Annotated[bool, _opt("--overwrite", "Replace the run in --output.")] = False,
    progress: Annotated[bool, _opt("--progress/--no-progress", "Show a progress bar.")] = True,
) -> None:
    """Train an A2D adapter: harmful rows learn EOS at every masked position."""
    from a2d_guard.training import load_config, merge_config
    from a2d_guard.training import train as run_training

    given = {
        "model": model, "data": data, "output": output, "epochs": epochs, "max_steps": max_steps, "lr": lr,
        "batch_size": batch_size, "grad_accum": grad_accum, "max_length": max_length, "save_every": save_every,
        "seed": seed, "objective": objective, "mask_prompt": mask_prompt, "recipe": recipe, "padding": padding,
        "content_rows": content_rows,
        "gradient_checkpointing": gradient_checkpointing, "device": device,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    if max_grad_norm is not None:  # "none" is a value here (no clipping), not "not given"
        overrides["max_grad_norm"] = _grad_norm(max_grad_norm)
    if skip_bad_rows:
        overrides["skip_bad_rows"] = True
    overrides["progress"] = progress
    if config is not None:
        cfg = load_config(config, overrides)
    else:
        cfg = merge_config(None, overrides, where="command line")
    saved = Path(cfg.output) / "config.yaml"
    if resume and saved.is_file():  # continue the run as it was saved; only what is given here changes
        base = load_config(saved)
        cfg = load_config(config, overrides, base=base) if config is not None else merge_config(
            base, overrides, where="command line")
    result = run_training(cfg, resume=resume, overwrite=overwrite, log=typer.echo,
                          allow_config_change=allow_config_change)
    target = result.adapter_dir or result.model_dir
    if result.rank == 0:
        typer.echo(f"done: {result.steps} steps; load it with: "
                   f"a2d-guard generate --model {cfg.model} --adapter {target}")
