"""``TrainConfig``: every knob of an A2D run, with the paper's defaults, YAML in and out.

Defaults follow A2D (arXiv 2509.23286, §4 "Implementation details"): LoRA r=32, α=64,
dropout 0.05, AdamW lr 5e-5, weight decay 0.1, batch 16, 10 epochs, max length 128,
seed 42. Precedence is defaults < recipe (``recipe: paper``, ``--recipe``; see
``training/recipe.py``) < YAML file < CLI flags; the resolved config is written into every
checkpoint (torchtune/nanochat convention) so a run can be reproduced from its output
folder alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from a2d_guard.errors import A2DGuardError
from a2d_guard.training.recipe import RECIPE_KEY, recipe_names, recipe_values
from a2d_guard.yaml_file import read_yaml_mapping

OBJECTIVES = ("a2d", "sft")
FINETUNE_MODES = ("lora", "full")
MASK_PROMPT_MODES = ("none", "harmful", "all")
LR_SCHEDULES = ("constant", "linear")
PADDING_MODES = ("max_length", "longest")
LORA_TARGET_NAMINGS = ("native", "original")
HISTORY_KEY = "config_history"  # in a run's config.yaml: changes made on --resume (training/resume.py)


@dataclass
class TrainConfig:
    """One training run.

    ``objective``: ``a2d`` (harmful rows: every masked position predicts EOS) or ``sft``
    (labels ignored: every row predicts its own tokens; used for the demo's base model and
    its response-level baseline). ``mask_prompt``: ``none`` is the paper (the prompt is
    never masked); ``harmful`` also masks the user text of harmful rows (target EOS), the
    extension that closes DIJA's masks-in-the-prompt gap; ``all`` masks the user text of
    every row (retain rows predict their own tokens). ``content_rows`` (an extension, off
    by default; ``a2d`` objective, ``mask_prompt`` none) adds each harmful response under a
    benign prompt (harmful) and each harmful prompt with a benign response (safe), so
    p(EOS) keys on the text, not only the prompt. ``batch_size`` is per process and
    per micro-batch: one optimizer step sees ``batch_size * grad_accum * world_size`` rows.

    Three keys where the A2D authors' code differs from our defaults (``--recipe paper`` sets
    theirs): ``padding`` (``max_length``: every row is EOS-padded to ``max_length``, so every
    row has the same answer length whatever else is in its batch; ``longest``: to the longest
    row of its micro-batch), ``lora_targets`` + ``lora_target_names`` (``native``: leaf names of
    the loaded model; ``original``: peft suffixes over the family's original module names, which
    is how ``ff_out`` also reaches LLaDA's LM head) and ``max_grad_norm`` (``None``: no clipping).
    ``recipe`` records which preset the values started from; it is applied by ``from_recipe``,
    ``merge_config``/``load_config`` and ``--recipe``, not by setting the field directly.
    """

    model: str = "tiny"
    data: str | None = None
    output: str = "a2d-output"
    family: str | None = None
    model_seed: int = 0  # initialisation seed of the built-in tiny model only
    recipe: str | None = None  # the preset the values started from (training/recipes/NAME.yaml)

    objective: str = "a2d"
    finetune: str = "lora"
    mask_prompt: str = "none"
    content_rows: bool = False  # also train crossed rows (training/content_rows.py); not in the paper
    eps: float = 1e-3  # λ = (1 - ε) t + ε

    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    lora_targets: list[str] | None = None  # None: the family's attention + MLP projections
    lora_target_names: str = "native"  # native leaf names, or "original": peft suffixes over the hub names

    lr: float = 5e-5
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float | None = 1.0  # None: no clipping
    lr_schedule: str = "constant"
    warmup_steps: int = 0

    batch_size: int = 16
    grad_accum: int = 1
    epochs: int = 10
    max_steps: int | None = None
    max_length: int = 128
    padding: str = "max_length"  # or "longest": EOS-pad each micro-batch to its longest row
    seed: int = 42

    save_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 1
    gradient_checkpointing: bool = False
    dtype: str = "auto"  # fp32 weights on CPU; bf16 base + fp32 LoRA under bf16 autocast on GPU
    device: str | None = None
    skip_bad_rows: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        """Raise ``A2DGuardError`` naming the first bad key and the fix."""
        _choice("objective", self.objective, OBJECTIVES)
        _choice("finetune", self.finetune, FINETUNE_MODES)
        _choice("mask_prompt", self.mask_prompt, MASK_PROMPT_MODES)
        _choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        _choice("padding", self.padding, PADDING_MODES)
        _choice("lora_target_names", self.lora_target_names, LORA_TARGET_NAMINGS)
        if self.recipe is not None and self.recipe not in recipe_names():
            raise A2DGuardError(f"unknown recipe {self.recipe!r}; available recipes: {', '.join(recipe_names())}")
        if self.lora_target_names == "original" and not self.lora_targets:
            raise A2DGuardError("lora_target_names 'original' needs lora_targets (the suffixes to match); "
                                "give lora_targets or use lora_target_names 'native'")
        if self.max_grad_norm is not None and not (self.max_grad_norm > 0):
            raise A2DGuardError(f"max_grad_norm must be > 0, got {self.max_grad_norm!r}; to turn clipping off "
                                "use null in YAML, None in Python, or --max-grad-norm none")
        if self.content_rows and self.objective != "a2d":
            raise A2DGuardError(f"content_rows needs objective a2d (objective {self.objective!r} would train the "
                                "model to write harmful responses under benign prompts); drop content_rows")
        if self.content_rows and self.mask_prompt != "none":
            raise A2DGuardError(f"content_rows puts harmful responses under benign prompts, which mask_prompt "
                                f"{self.mask_prompt!r} would teach to refuse; use mask_prompt none with content_rows")
        for name in ("lora_r", "lora_alpha", "batch_size", "grad_accum", "epochs", "max_length", "log_every"):
            if getattr(self, name) <= 0:
                raise A2DGuardError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        for name in ("save_every", "keep_checkpoints", "warmup_steps", "seed", "model_seed"):
            if getattr(self, name) < 0:
                raise A2DGuardError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise A2DGuardError(f"max_steps must be a positive integer, got {self.max_steps!r}")
        if not (self.lr > 0):
            raise A2DGuardError(f"lr must be > 0, got {self.lr!r}")
        if not (0.0 <= self.lora_dropout < 1.0):
            raise A2DGuardError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not (0.0 < self.eps < 1.0):
            raise A2DGuardError(f"eps must be in (0, 1), got {self.eps!r}")
        if self.max_length < 8:
            raise A2DGuardError(f"max_length {self.max_length} is too short for a chat prompt; use >= 8")
        if self.dtype not in ("auto", "fp32", "float32", "bf16", "bfloat16", "fp64", "float64"):
            raise A2DGuardError(f"dtype {self.dtype!r} is not supported for training; use auto, fp32 or bf16")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> TrainConfig:
        """Recipe ``name`` over the defaults, then ``overrides`` (e.g. ``data=...``) over it."""
        return merge_config(None, {RECIPE_KEY: name, **overrides}, where="from_recipe")


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise A2DGuardError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def config_keys() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def _coerce(key: str, value: Any, annotation: str, where: str) -> Any:
    """Check one YAML/CLI value against the field's type (YAML ints are fine for floats)."""
    tp = typing.get_type_hints(TrainConfig)[key]
    args = typing.get_args(tp)
    if isinstance(tp, types.UnionType):  # `X | None`
        if value is None:
            return None
        tp = next(a for a in args if a is not type(None))
    elif value is None:
        raise A2DGuardError(f"{where}: key {key!r} cannot be null; give a value or delete the line")
    origin = typing.get_origin(tp) or tp
    if origin is bool:
        if isinstance(value, bool):
            return value
    elif origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as text
            try:
                return float(value)
            except ValueError:
                pass
    elif origin is str:
        if isinstance(value, str):
            return value
    elif origin is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
    raise A2DGuardError(
        f"{where}: key {key!r} must be {annotation}, got {value!r}; fix the value"
    )


def _apply(values: dict[str, Any], overrides: dict[str, Any], where: str) -> None:
    """Set ``overrides`` into ``values`` (unknown keys and wrong types are errors)."""
    known = config_keys()
    annotations = {f.name: str(f.type) for f in fields(TrainConfig)}
    for key, value in overrides.items():
        norm = key.replace("-", "_")
        if norm not in known:
            close = difflib.get_close_matches(norm, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise A2DGuardError(
                f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(known)}"
            )
        values[norm] = _coerce(norm, value, annotations[norm], where)


def merge_config(
    base: TrainConfig | None = None, overrides: dict[str, Any] | None = None, where: str = "config"
) -> TrainConfig:
    """``base`` with ``overrides`` applied (unknown keys and wrong types are errors).

    A ``recipe`` key that differs from ``base.recipe`` first sets the recipe's values, then the
    other overrides win over them; the same recipe as ``base``'s changes nothing (a resumed run
    keeps the values it was saved with).
    """
    base = base or TrainConfig()
    values = base.to_dict()
    overrides = dict(overrides or {})
    if RECIPE_KEY in overrides:
        recipe = _coerce(RECIPE_KEY, overrides.pop(RECIPE_KEY), "str | None", where)
        if recipe is not None and recipe != base.recipe:
            _apply(values, recipe_values(recipe), where=f"recipe {recipe!r}")
        values[RECIPE_KEY] = recipe
    _apply(values, overrides, where)
    return TrainConfig(**values)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None,
                base: TrainConfig | None = None) -> TrainConfig:
    """Read a YAML file over ``base`` (default: the built-in defaults), then apply ``overrides``
    (the CLI flags: the CLI wins). A ``recipe`` (the flags' or else the file's) is applied
    first, so both the file and the flags override its values.

    A run's own ``config.yaml`` may carry ``config_history`` (what ``--resume
    --allow-config-change`` changed, and at which step); it describes that run's past, not
    a setting, so it is ignored here.
    """
    raw = read_yaml_mapping(path, "config file")
    raw.pop(HISTORY_KEY, None)
    overrides = dict(overrides or {})
    in_file = raw.pop(RECIPE_KEY, None)  # a recipe goes first, under the file's keys and the flags
    recipe = overrides.pop(RECIPE_KEY) if RECIPE_KEY in overrides else in_file
    config = base or TrainConfig()
    if recipe is not None:
        config = merge_config(config, {RECIPE_KEY: recipe}, where=str(path))
    config = merge_config(config, raw, where=str(path))
    return merge_config(config, overrides, where="command line")


def config_yaml(config: TrainConfig, history: list[dict] | None = None) -> str:
    """The YAML a run saves: every key, then ``config_history`` when a resume changed any."""
    import yaml

    data = config.to_dict()
    if history:
        data[HISTORY_KEY] = history
    return yaml.safe_dump(data, sort_keys=False)


def dump_config(config: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(config_yaml(config), encoding="utf-8")
