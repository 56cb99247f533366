"""``compress_checkpoint``: the one library call behind ``a2d-guard compress``.

Order matters for "nothing half-written": every user mistake that can be found cheaply
(bits, init, the output folder, the calibration file, then layer shapes against rank and
group size) raises before the heavy work; the folder is written under a temporary name
next to the destination and renamed into place only when complete. ``--overwrite`` replaces
only an earlier compressed folder (``a2d_guard.outputs``): a folder holding anything
``compress`` did not write is refused, never deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from a2d_guard.compress.apply import CompressConfig, compress_model, plan_layers
from a2d_guard.compress.data import calibration_inputs, make_batches, read_texts, split_texts, tokenize
from a2d_guard.compress.decomposition import num_outliers
from a2d_guard.compress.metrics import LOSS_RATIOS, masked_diffusion_loss, model_bytes, summarize
from a2d_guard.compress.storage import WEIGHTS, save_compressed
from a2d_guard.errors import A2DGuardError
from a2d_guard.outputs import check_replaceable, write_folder


@dataclass(frozen=True)
class CalibrationConfig:
    samples: int = 128  # calibration texts
    eval_samples: int = 32  # held-out texts for the loss (at most a fifth of the file)
    max_length: int = 256  # tokens per text
    batch_size: int = 8
    seed: int = 0

    def validate(self) -> None:
        for name in ("samples", "eval_samples", "max_length", "batch_size"):
            if getattr(self, name) < 1:
                raise A2DGuardError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")


def describe_method(rank: int) -> str:
    """What was stored, in words for the report: ``--rank 0`` means no L R at all, i.e. plain
    group-wise quantization (LDLQ-rounded Q, one round; ``--init``/``--outliers`` unused)."""
    if rank == 0:
        return "Q only: plain group-wise quantization (rank 0, no low-rank L R)"
    return f"Q + L R (rank {rank})"


def check_output(output: str | Path, overwrite: bool = False) -> Path:
    out = Path(output).expanduser()
    if out.exists() and not out.is_dir():
        raise A2DGuardError(f"output {str(output)!r} is a file; pass a new folder with --output")
    if overwrite:
        check_replaceable(out, "--overwrite", command="compress",
                          fix="move those files elsewhere, or pick a new or empty folder for --output")
    elif out.exists() and any(out.iterdir()):
        raise A2DGuardError(f"output {str(output)!r} already exists and is not empty; pass a new folder with --output, "
                            "or --overwrite to replace an earlier compressed folder")
    if not out.parent.exists():
        raise A2DGuardError(f"the parent folder of --output {str(output)!r} does not exist; create it first")
    return out


def compress_checkpoint(
    model_name: str,
    calib_file: str | Path,
    output: str | Path,
    cfg: CompressConfig,
    calib: CalibrationConfig = CalibrationConfig(),
    family: str | None = None,
    dtype: str | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> dict:
    """Load, calibrate under random masking, compress, measure, and save. Returns the report.

    ``overwrite``: replace ``output`` if it holds only an earlier ``compress`` output.
    """
    from a2d_guard.models import load_model

    started = time.perf_counter()
    cfg.validate()
    calib.validate()
    out = check_output(output, overwrite)
    texts = read_texts(calib_file)
    calib_texts, eval_texts = split_texts(texts, calib.samples, calib.eval_samples, calib.seed)
    model, tokenizer, spec = load_model(model_name, dtype=dtype, device=device, family=family, seed=calib.seed)
    plan_layers(model, cfg)  # rank / group-size mistakes surface before any work
    dev = next(model.parameters()).device
    calib_batches = make_batches(tokenize(calib_texts, tokenizer, spec, calib.max_length), spec, calib.batch_size, dev)
    eval_batches = make_batches(tokenize(eval_texts, tokenizer, spec, calib.max_length), spec, calib.batch_size, dev)

    bytes_before = model_bytes(model)
    loss_before = masked_diffusion_loss(model, spec, eval_batches, LOSS_RATIOS, seed=calib.seed)
    inputs = calibration_inputs(calib_batches, spec, calib.seed)

    def run_model(ids, attn):
        from a2d_guard.models.forward import model_logits

        return model_logits(model, spec, ids, attn)

    reports = compress_model(model, inputs, run_model, cfg, log=log)
    bytes_after = model_bytes(model)
    loss_after = masked_diffusion_loss(model, spec, eval_batches, LOSS_RATIOS, seed=calib.seed)
    summary = summarize(reports)
    report = {
        "model": model_name,
        "family": spec.family,
        "output": str(out),
        **asdict(cfg),
        "method": describe_method(cfg.rank),
        "outliers": num_outliers(cfg.outliers, cfg.rank) if cfg.rank else 0,  # the k actually used (odlri)
        **summary,
        "memory": {"before_bytes": bytes_before, "after_bytes": bytes_after,
                   "ratio": bytes_after / max(bytes_before, 1)},
        "md_loss": {r: {"uncompressed": loss_before[r], "compressed": loss_after[r]} for r in loss_before},
        "calibration": {"file": str(calib_file), "texts": len(calib_texts), "eval_texts": len(eval_texts),
                        "tokens": int(sum(int(b.attention_mask.sum()) for b in calib_batches)),
                        "max_length": calib.max_length, "seed": calib.seed},
        "layers": [r.to_dict() for r in reports],
    }

    info = {**asdict(cfg), "outliers": report["outliers"], **summary, "calibration": report["calibration"]}
    write_folder(out, lambda tmp: save_compressed(model, tokenizer, spec, tmp, info), "--overwrite", "compress")
    report["memory"]["file_bytes"] = (out / WEIGHTS).stat().st_size
    report["seconds"] = round(time.perf_counter() - started, 2)
    return report
