"""Checkpoints: trainable weights, optimizer and progress in safetensors + JSON, written atomically.

Layout of ``OUTPUT/checkpoints/step-00000020/``::

    trainable.safetensors   every trainable parameter, by its name in the training model
    optimizer.safetensors   AdamW moments and step counts, keyed "<param name>::<field>"
    trainer_state.json      step, micro-step, epoch, optimizer hyper-parameters, RNG scheme
    config.yaml             the resolved TrainConfig
    adapter/                the PEFT adapter at this step (LoRA runs), ready to load

No pickle anywhere (DESIGN §8). RNG state needs no tensor: every random draw comes from
generators seeded by (seed, stream position) for masks and (seed, rank, micro-step) for
dropout (``data.row_seed``, ``trainer.step_seed``), so the step counter *is* the RNG
state and a resumed run draws exactly what an uninterrupted one would. Writes go to a
temporary folder that is renamed into place, so a crash never leaves a half-written
checkpoint where ``--resume`` would find it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from a2d_guard.errors import A2DGuardError

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
TRAINABLE_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
CONFIG_FILE = "config.yaml"
FORMAT_VERSION = 1
_STEP_RE = re.compile(r"^step-(\d+)$")


def checkpoint_dir(output: Path, step: int) -> Path:
    return Path(output) / CHECKPOINTS / f"step-{step:08d}"


def write_atomically(final: Path, writer: Callable[[Path], None]) -> Path:
    """Run ``writer(tmp)`` on a fresh temporary folder next to ``final``, then rename it in."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        writer(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # replace: move the old one aside first, so one always exists whole
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)
    return final


def list_checkpoints(output: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with a state file), oldest first."""
    root = Path(output) / CHECKPOINTS
    found = []
    if root.is_dir():
        for child in root.iterdir():
            m = _STEP_RE.match(child.name)
            if m and (child / STATE_FILE).is_file():
                found.append((int(m[1]), child))
    return sorted(found)


def latest_checkpoint(output: Path) -> Path | None:
    found = list_checkpoints(output)
    return found[-1][1] if found else None


def prune_checkpoints(output: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep=0`` keeps them all)."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(output)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- optimizer <-> safetensors


def optimizer_tensors(optimizer: torch.optim.Optimizer, names: list[str]) -> tuple[dict, dict]:
    """Split ``optimizer.state_dict()`` into tensors (by parameter name) and JSON metadata."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, fields in sd["state"].items():
        for key, value in fields.items():
            if torch.is_tensor(value):
                tensors[f"{names[index]}::{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars[f"{names[index]}::{key}"] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "param_names": names, "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, names: list[str], tensors: dict, meta: dict) -> None:
    if meta["param_names"] != names:
        raise A2DGuardError(
            "the checkpoint's optimizer was built for different trainable parameters; resume with "
            "the same model, finetune mode and LoRA targets, or start a new run with --overwrite"
        )
    index = {name: i for i, name in enumerate(names)}
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        name, field = key.rsplit("::", 1)
        state.setdefault(index[name], {})[field] = value
    for key, value in meta.get("scalars", {}).items():
        name, field = key.rsplit("::", 1)
        state.setdefault(index[name], {})[field] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ---------------------------------------------------------------- save / load


def save_checkpoint(
    folder: Path,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    state: dict,
    config_yaml: str,
    extra_writer: Callable[[Path], None] | None = None,
) -> Path:
    """Write one checkpoint folder atomically. ``trainable`` maps parameter name -> tensor."""
    from a2d_guard.outputs import save_safetensors

    names = list(trainable)

    def write(tmp: Path) -> None:
        save_safetensors({k: v.detach().to("cpu").contiguous() for k, v in trainable.items()}, tmp / TRAINABLE_FILE)
        opt_tensors, opt_meta = optimizer_tensors(optimizer, names)
        save_safetensors(opt_tensors, tmp / OPTIMIZER_FILE)
        full_state = {"format_version": FORMAT_VERSION, **state, "optimizer": opt_meta}
        (tmp / STATE_FILE).write_text(json.dumps(full_state, indent=2) + "\n")
        (tmp / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")
        if extra_writer is not None:
            extra_writer(tmp)

    return write_atomically(folder, write)


def read_checkpoint(folder: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """-> (trainer state, trainable tensors, optimizer tensors).

    A truncated tensor file (a disk that filled up, a partial copy of the run folder) is an
    ``A2DGuardError`` naming the file, like a missing or unreadable one.
    """
    from a2d_guard.models.safetensors_file import load_safetensors

    folder = Path(folder)
    fix = "delete this checkpoint folder to resume from the one before"
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        trainable = load_safetensors(folder / TRAINABLE_FILE, fix)
        opt = load_safetensors(folder / OPTIMIZER_FILE, fix)
    except (OSError, json.JSONDecodeError) as exc:
        raise A2DGuardError(f"checkpoint {str(folder)!r} is incomplete or damaged ({type(exc).__name__}); "
                            "delete it to resume from the one before") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise A2DGuardError(f"checkpoint {str(folder)!r} has format {state.get('format_version')!r}; "
                            f"this a2d-guard reads format {FORMAT_VERSION}")
    return state, trainable, opt
