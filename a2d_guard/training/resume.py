"""What may differ between a checkpoint's config and the run that resumes it.

A resumed run writes its config into ``config.yaml`` and every later checkpoint, so a key
changed on ``--resume`` would make that file misstate the steps already done. Each
``TrainConfig`` key is in one of four classes:

- **structural** (``STRUCTURAL_KEYS``): the checkpoint's tensors were built for them (base
  model, LoRA shape and targets, LoRA vs full). Never allowed: start a new run.
- **free** (``FREE_KEYS``): they do not change the maths of any step: where files go, how
  often they are written or logged, the progress bar, the device (moving a run to another
  machine is what resume is for; note that with ``dtype: auto`` a CPU <-> GPU move also
  switches fp32 <-> bf16 autocast), gradient checkpointing (same gradients, less memory)
  and ``skip_bad_rows`` (a run that started reads the same rows either way, or stops).
- **length** (``LENGTH_KEYS``: ``epochs``, ``max_steps``): extending or shortening a run is
  free while the learning rate ignores the run's length (``lr_schedule: constant``); under
  ``linear`` the decay of every remaining step depends on it, so it changes the run.
- **run-changing**: every other key (learning rate and optimizer, schedule and warm-up,
  objective, data, masking, batch, sequence length, seeds, dtype). Refused unless the
  caller passes ``allow_change`` (``--allow-config-change``).

Every accepted difference outside the free keys (run-changing and length) is appended to
the config history (``config_history`` in ``config.yaml`` and ``trainer_state.json``):
``{"step": N, "changed": {key: {"from": old, "to": new}}}``, so the saved config states
the current values and the history what the steps before N ran with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from a2d_guard.errors import A2DGuardError
from a2d_guard.training.config import TrainConfig

STRUCTURAL_KEYS = ("model", "model_seed", "family", "finetune", "lora_r", "lora_alpha", "lora_targets",
                   "lora_target_names")
FREE_KEYS = ("output", "save_every", "keep_checkpoints", "log_every", "progress", "device",
             "gradient_checkpointing", "skip_bad_rows")
LENGTH_KEYS = ("epochs", "max_steps")


def config_changes(saved: dict[str, Any], config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (old, new)}`` for every key the checkpoint records with another value."""
    now = config.to_dict()
    return {k: (saved[k], now[k]) for k in now if k in saved and saved[k] != now[k]}


def run_changing(changes: dict[str, tuple[Any, Any]], lr_schedule: str) -> list[str]:
    """The keys of ``changes`` that change the run's maths (structural ones excluded)."""
    free = set(FREE_KEYS) | (set(LENGTH_KEYS) if lr_schedule == "constant" else set())
    return [k for k in changes if k not in free and k not in STRUCTURAL_KEYS]


def _listing(changes: dict[str, tuple[Any, Any]], keys: list[str]) -> str:
    return ", ".join(f"{k} {changes[k][0]!r} -> {changes[k][1]!r}" for k in keys)


def check_resume_config(config: TrainConfig, state: dict, folder: Path, allow_change: bool = False) -> list[dict]:
    """Refuse a resume whose config differs where it matters; return the new config history.

    ``state`` is the checkpoint's ``trainer_state.json``; ``folder`` names it in messages.
    """
    saved = state.get("config", {})
    changes = config_changes(saved, config)
    structural = [k for k in STRUCTURAL_KEYS if k in changes]
    if structural:
        k = structural[0]
        raise A2DGuardError(
            f"--resume: {k} was {changes[k][0]!r} in {str(folder)!r} but is {changes[k][1]!r} now; the checkpoint's "
            "weights and optimizer only fit the same value: use it, or start a new run with another --output"
        )
    changing = run_changing(changes, saved.get("lr_schedule", config.lr_schedule))
    if changing and not allow_change:
        why = (" (under lr_schedule linear the run's length sets every step's learning rate)"
               if set(changing) & set(LENGTH_KEYS) else "")
        raise A2DGuardError(
            f"--resume: this run differs from its checkpoint {str(folder)!r} in {_listing(changes, changing)}{why}; "
            "that changes the run, and its saved config would misstate the steps already done: pass the "
            "checkpoint's values, pass --allow-config-change to continue with the new ones (recorded under "
            "config_history in config.yaml), or start a new run with another --output"
        )
    history = list(state.get("config_history", []))
    recorded = {k: {"from": old, "to": new} for k, (old, new) in changes.items() if k not in FREE_KEYS}
    if recorded:
        history.append({"step": int(state.get("step", 0)), "changed": recorded})
    return history
