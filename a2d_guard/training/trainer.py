"""The training loop: A2D (or plain SFT) with LoRA or full fine-tuning, DDP, exact resume.

``train(config)`` is the one entry point (the CLI and the demo call it). Order of work:
validate the output folder, read and tokenize the data, load the model, then wrap LoRA /
DDP, then loop over optimizer steps. Everything that can be a user mistake is checked
before anything is written, so a bad call leaves the output folder as it was.

Determinism: which rows a micro-batch sees, and each row's mask, are pure functions of
(seed, stream position) (``BatchStream``); LoRA dropout is seeded by ``step_seed``. An
interrupted-and-resumed run therefore replays the very same batches, masks and dropout as
an uninterrupted one.

Multi-process: launched by ``torchrun``/``accelerate launch`` (``WORLD_SIZE`` > 1), the
model is wrapped in DDP (gloo on CPU, NCCL on GPU); gradients are averaged, so the loss is
the mean over the global batch. Rank 0 alone writes files.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from a2d_guard import outputs
from a2d_guard.errors import A2DGuardError
from a2d_guard.train_layout import ADAPTER_DIR, MODEL_DIR
from a2d_guard.training import checkpoint as ckpt
from a2d_guard.training.config import TrainConfig, config_yaml
from a2d_guard.training.content_rows import content_keyed_rows
from a2d_guard.training.data import BatchStream, DataStats, encode_rows, load_rows
from a2d_guard.training.lora import add_lora, export_adapter
from a2d_guard.training.objective import a2d_loss
from a2d_guard.training.resume import check_resume_config

METRICS_FILE = "metrics.jsonl"


@dataclass
class TrainResult:
    output: Path
    steps: int
    adapter_dir: Path | None
    model_dir: Path | None
    stats: DataStats
    metrics: list[dict] = field(default_factory=list)
    rank: int = 0  # under torchrun, only rank 0 should report


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()


def init_distributed(device: torch.device) -> DistContext:
    """Read torchrun's environment; start the process group when there is more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local)


def step_seed(seed: int, rank: int, micro_step: int) -> int:
    """The seed of every random draw in micro-step ``micro_step`` of process ``rank``."""
    return ((seed * 1_000_003 + micro_step) * 8191 + rank) % (2**63 - 1)


def lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based): warm-up, then constant or linear decay."""
    scale = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    if config.lr_schedule == "linear":
        scale *= max(0.0, 1.0 - step / max(1, total_steps))
    return config.lr * scale


# ---------------------------------------------------------------- output folder


def written_names(config: TrainConfig) -> list[str]:
    """What a run creates at the top of its output folder (claimed in its manifest, see ``outputs``)."""
    return [ckpt.CONFIG_FILE, METRICS_FILE, ckpt.CHECKPOINTS, ADAPTER_DIR if config.finetune == "lora" else MODEL_DIR]


def check_output(config: TrainConfig, resume: bool, overwrite: bool) -> Path | None:
    """Validate the output folder (read-only). Returns the checkpoint to resume from, if any."""
    out = Path(config.output)
    if resume and overwrite:
        raise A2DGuardError("--resume and --overwrite contradict each other; pass one of them")
    if out.exists() and not out.is_dir():
        raise A2DGuardError(f"output {str(out)!r} is a file; pass a folder to --output")
    non_empty = out.is_dir() and any(out.iterdir())
    if resume:
        found = ckpt.latest_checkpoint(out) if out.is_dir() else None
        if found is None:
            raise A2DGuardError(
                f"--resume: {str(out)!r} holds no checkpoint ({ckpt.CHECKPOINTS}/step-*); "
                "train without --resume to start a new run"
            )
        return found
    if non_empty and not overwrite:
        raise A2DGuardError(
            f"output folder {str(out)!r} is not empty; pass --resume to continue its run, "
            "--overwrite to replace it, or pick a new --output"
        )
    if non_empty and overwrite:
        outputs.check_replaceable(out, "--overwrite", command="train",
                                  fix="move those files elsewhere, or pick a new or empty folder for --output")
    return None


# ---------------------------------------------------------------- model


def build_model(config: TrainConfig, device: torch.device):
    """Base model (+ LoRA). On GPU the LoRA base is bf16 and runs under bf16 autocast."""
    from a2d_guard.models.loader import load_model

    if config.dtype in ("auto",):
        dtype = torch.bfloat16 if (device.type == "cuda" and config.finetune == "lora") else torch.float32
    else:
        dtype = config.dtype
    model, tokenizer, spec = load_model(
        config.model, dtype=dtype, device=device, family=config.family, seed=config.model_seed
    )
    if config.finetune != "lora" and any(hasattr(type(m), "peft_lora_layer") for m in model.modules()):
        raise A2DGuardError(
            f"--model {config.model!r} is a compressed base (QLRLinear layers, integer codes): it trains only as a "
            "LoRA adapter; set finetune: lora (the default)"
        )
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.finetune == "lora":
        with torch.random.fork_rng(devices=[]):  # LoRA A is random: seed it, leave the global RNG alone
            torch.manual_seed(config.seed)
            model = add_lora(model, spec, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_targets,
                             naming=config.lora_target_names)
    model.train()
    return model, tokenizer, spec


def trainable_parameters(model) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def clip_gradients(params: list[torch.nn.Parameter], max_grad_norm: float | None) -> None:
    """Scale the gradients to a total norm of at most ``max_grad_norm``; ``None`` leaves them
    as they are (the A2D authors' loop has no clipping; ours clips at 1.0 for stability)."""
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)


# ---------------------------------------------------------------- the loop


class _Totals:
    """Sums over the micro-batches (and ranks) of one optimizer step -> one metrics row."""

    FIELDS = ("loss", "rows", "harmful_loss", "harmful_rows", "retain_loss", "retain_rows",
              "eos_hits", "harmful_masked", "tokens")

    def __init__(self) -> None:
        self.v = torch.zeros(len(self.FIELDS), dtype=torch.float64)

    def add(self, terms, tokens: int) -> None:
        ps, harm = terms.per_sample.double().cpu(), terms.is_harmful.cpu()
        self.v += torch.tensor([
            float(ps.sum()), ps.numel(), float(ps[harm].sum()), int(harm.sum()),
            float(ps[~harm].sum()), int((~harm).sum()), terms.eos_hits, terms.harmful_masked, tokens,
        ], dtype=torch.float64)

    def reduce(self, dist: DistContext) -> dict:
        if dist.world_size > 1:
            torch.distributed.all_reduce(self.v)
        d = dict(zip(self.FIELDS, self.v.tolist(), strict=True))

        def ratio(a: str, b: str):
            return d[a] / d[b] if d[b] else None

        return {"loss": ratio("loss", "rows"), "harmful_loss": ratio("harmful_loss", "harmful_rows"),
                "retain_loss": ratio("retain_loss", "retain_rows"), "eos_rate": ratio("eos_hits", "harmful_masked"),
                "tokens": int(d["tokens"])}


def _progress(enabled: bool, total: int, start: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        TextColumn("{task.fields[info]}"), disable=not enabled, transient=False)
    task = progress.add_task("train", total=total, completed=start, info="")
    return progress, task


def train(config: TrainConfig, resume: bool = False, overwrite: bool = False, log=print,
          allow_config_change: bool = False, on_step: Callable[[int, int], None] | None = None) -> TrainResult:
    """Run one training job described by ``config``; see the module docstring.

    ``allow_config_change`` (with ``resume``): continue although run-changing keys differ from
    the checkpoint's; the change is recorded in the config history (``training/resume.py``).

    ``on_step(done, total)``: called with the optimizer steps done, once before the first
    step and after every step (the demo draws its own per-stage bar from it).
    """
    from a2d_guard.models.loader import resolve_device, save_model

    config.validate()
    if config.data is None:
        raise A2DGuardError("no training data: pass --data FILE (.jsonl/.json/.csv) or hf:NAME[:SPLIT]")
    device = resolve_device(config.device)
    dist = init_distributed(device)
    if dist.world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    say = log if dist.is_main else (lambda *_: None)
    out = Path(config.output)

    # 1. everything that can be a user mistake, read-only
    if allow_config_change and not resume:
        raise A2DGuardError("--allow-config-change only applies with --resume; drop it or add --resume")
    resume_from = check_output(config, resume, overwrite)
    state, history = None, []
    if resume_from is not None:  # before loading data and model: a refused resume should not wait for them
        state, saved_trainable, saved_opt = ckpt.read_checkpoint(resume_from)
        history = check_resume_config(config, state, resume_from, allow_config_change)
        if state["world_size"] != dist.world_size:
            raise A2DGuardError(
                f"--resume: the checkpoint was written by {state['world_size']} processes, this run has "
                f"{dist.world_size}; resume with the same number of processes"
            )
    rows, skipped = load_rows(config.data, skip_bad_rows=config.skip_bad_rows)
    if config.content_rows:  # crossed rows after the file's own (training/content_rows.py)
        crossed = content_keyed_rows(rows)
        rows = rows + crossed
        say(f"content rows: +{len(crossed) // 2} harmful responses under safe prompts, "
            f"+{len(crossed) // 2} harmful prompts with safe responses")
    model, tokenizer, spec = build_model(config, device)
    examples, stats = encode_rows(rows, tokenizer, spec, config.max_length)
    stats.skipped = skipped
    say(f"data: {len(rows)} rows from {config.data}: {stats.summary()}")
    if config.finetune == "lora":  # what the adapter edits (a recipe may reach the LM head)
        say(f"LoRA targets: {', '.join(sorted(model.peft_config['default'].target_modules))}")

    # 2. optimizer, DDP, restored state
    named = trainable_parameters(model)
    names = [n for n, _ in named]
    optimizer = torch.optim.AdamW([p for _, p in named], lr=config.lr, weight_decay=config.weight_decay,
                                  betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_eps)
    start_step = 0
    if state is not None:
        with torch.no_grad():
            for n, p in named:
                p.copy_(saved_trainable[n].to(p.device, p.dtype))
        ckpt.load_optimizer(optimizer, names, saved_opt, state["optimizer"])
        start_step = int(state["step"])
        say(f"resuming from {resume_from} at step {start_step}")
    core = model
    if dist.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    stream = BatchStream(examples, config.batch_size, config.seed, dist.rank, dist.world_size, config.padding)
    steps_per_epoch = math.ceil(stream.micro_batches_per_epoch() / config.grad_accum)
    total_steps = config.max_steps or config.epochs * steps_per_epoch

    # 3. the output folder (rank 0; only now that every input checked out)
    saved_yaml = config_yaml(config, history)
    if dist.is_main:
        if overwrite:
            outputs.remove_written(out, "--overwrite", command="train")  # only what a run wrote; never rmtree
        outputs.claim(out, "train", written_names(config))
        (out / ckpt.CONFIG_FILE).write_text(saved_yaml, encoding="utf-8")
        _trim_metrics(out / METRICS_FILE, start_step)
    dist.barrier()

    def save(step: int) -> None:
        trainable = {n: p for n, p in named}
        extra = None
        if config.finetune == "lora":
            def extra(tmp: Path) -> None:
                export_adapter(core, spec, tmp / ADAPTER_DIR, base_model=config.model)
        ckpt.save_checkpoint(
            ckpt.checkpoint_dir(out, step), trainable, optimizer,
            {"step": step, "micro_step": step * config.grad_accum,
             "epoch": stream.epoch_at(step * config.grad_accum), "world_size": dist.world_size,
             "rng": {"scheme": "masks: row_seed(seed, stream position); dropout: step_seed(seed, rank, micro_step)",
                     "seed": config.seed},
             "config": config.to_dict(), "config_history": history},
            saved_yaml, extra,
        )
        ckpt.prune_checkpoints(out, config.keep_checkpoints)

    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))
    metrics: list[dict] = []
    progress, task = _progress(config.progress and dist.is_main, total_steps, start_step)
    report_step = on_step if (on_step is not None and dist.is_main) else (lambda done, total: None)
    report_step(start_step, total_steps)
    with progress, (out / METRICS_FILE).open("a") if dist.is_main else _Null() as metrics_file:
        for step in range(start_step, total_steps):
            t0 = time.perf_counter()
            lr = lr_at(config, step, total_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            totals = _Totals()
            for k in range(config.grad_accum):
                micro = step * config.grad_accum + k
                seed = step_seed(config.seed, dist.rank, micro)
                torch.manual_seed(seed)  # LoRA dropout (masks come from the rows' own seeds)
                batch = stream.batch(micro)
                sync = k == config.grad_accum - 1 or dist.world_size == 1
                ctx = model.no_sync() if not sync else _Null()
                with ctx, autocast:
                    terms = a2d_loss(model, spec, batch, config.objective, config.mask_prompt, config.eps, device)
                    (terms.loss / config.grad_accum).backward()
                totals.add(terms, batch.input_ids.numel())
            clip_gradients([p for _, p in named], config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            row = totals.reduce(dist)
            elapsed = time.perf_counter() - t0
            record = {"step": step + 1, "epoch": round(stream.epoch_at((step + 1) * config.grad_accum), 4),
                      "loss": row["loss"], "harmful_loss": row["harmful_loss"], "retain_loss": row["retain_loss"],
                      "eos_rate": row["eos_rate"], "tokens_per_s": row["tokens"] / max(elapsed, 1e-9), "lr": lr}
            metrics.append(record)
            if dist.is_main and ((step + 1) % config.log_every == 0 or step + 1 == total_steps):
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
            progress.update(task, advance=1, info=f"loss {row['loss']:.4f}")
            report_step(step + 1, total_steps)
            if config.save_every and (step + 1) % config.save_every == 0 and step + 1 < total_steps:
                if dist.is_main:
                    save(step + 1)
                dist.barrier()

    # 4. final checkpoint and the deliverable
    adapter_dir = model_dir = None
    if dist.is_main:
        if total_steps > start_step:
            save(total_steps)
        if config.finetune == "lora":
            adapter_dir = ckpt.write_atomically(
                out / ADAPTER_DIR, lambda tmp: export_adapter(core, spec, tmp, base_model=config.model))
        else:
            core.eval()
            model_dir = ckpt.write_atomically(out / MODEL_DIR, lambda tmp: save_model(core, tokenizer, spec, tmp))
        say(f"wrote {adapter_dir or model_dir} after {total_steps} steps")
    dist.barrier()
    return TrainResult(out, total_steps, adapter_dir or (out / ADAPTER_DIR if config.finetune == "lora" else None),
                       model_dir or (out / MODEL_DIR if config.finetune == "full" else None), stats, metrics,
                       dist.rank)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None


def _trim_metrics(path: Path, keep_until_step: int) -> None:
    """On resume, drop rows written after the checkpoint (they will be recomputed)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= keep_until_step]
    path.write_text("".join(line + "\n" for line in kept))
