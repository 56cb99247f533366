"""Compress a whole model, block by block (the GPTQ/CALDERA pipeline), into ``QLRLinear`` layers.

Which layers: every ``nn.Linear`` inside the transformer blocks (attention and MLP
projections). Embeddings, the LM head and anything outside the blocks (BERT's pooler / MLM
transform) stay dense: they are a small share of an 8B model and the most sensitive part.

Why block by block: block i is calibrated on the outputs of the already-compressed blocks
0..i-1, so each layer's H describes the inputs it will really see after compression (as in
GPTQ, arXiv 2210.17323), and only one block's H matrices are alive at a time (an 8B model's would not fit).
The inputs of block 0 are captured once by running the model on the noised calibration
batches (data.py) and stopping at the first block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from a2d_guard.compress.calibration import collect_hessians
from a2d_guard.compress.decomposition import INITS, DecompositionConfig, decompose
from a2d_guard.compress.metrics import LayerReport, bits_per_weight
from a2d_guard.compress.qlr_linear import QLRLinear
from a2d_guard.compress.quantizer import AUTO_GROUP_SIZES, auto_group_size  # noqa: F401 (re-exported here)
from a2d_guard.errors import A2DGuardError

BITS = (2, 3, 4)
LR_BITS = (4, 16)


@dataclass(frozen=True)
class CompressConfig:
    """What ``a2d-guard compress`` asks for. ``group_size=None``: per layer, the largest of
    128/64/32/16/8 that divides its input dimension (the whole row if none does)."""

    bits: int = 2
    rank: int = 16
    init: str = "odlri"
    outliers: int | None = None  # None: rank // 16 (the paper's 16 of 256), at least 1
    iters: int = 10
    group_size: int | None = None
    error_feedback: bool = True
    lr_bits: int = 16  # storage of L and R: 16 (the serving dtype) or 4 (group-quantized, as the paper)

    def validate(self) -> None:
        if self.bits not in BITS:
            raise A2DGuardError(f"--bits {self.bits} is not supported; use 2, 3 or 4")
        if self.lr_bits not in LR_BITS:
            raise A2DGuardError(f"--lr-bits {self.lr_bits} is not supported; use 16 (float L R) or 4 (packed)")
        if self.init not in INITS:
            raise A2DGuardError(f"--init {self.init!r} is unknown; use one of {', '.join(INITS)}")
        if self.rank < 0:
            raise A2DGuardError(f"--rank {self.rank} is negative; use 0 (no low-rank part) or more")
        if self.outliers is not None and self.outliers < 1:
            raise A2DGuardError(f"--outliers {self.outliers} must be at least 1 (or omit it: rank/16)")
        if self.outliers is not None and self.rank == 0:
            raise A2DGuardError(f"--outliers {self.outliers} needs a low-rank part; --rank 0 has none (plain "
                                "quantization): drop --outliers or give --rank > 0")
        if self.iters < 1:
            raise A2DGuardError(f"--iters {self.iters} must be at least 1")
        if self.group_size is not None and self.group_size < 1:
            raise A2DGuardError(f"--group-size {self.group_size} must be positive")


@dataclass
class LayerPlan:
    name: str
    out_features: int
    in_features: int
    group_size: int
    has_bias: bool


def find_blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer's layer list: the ``ModuleList`` holding the most ``nn.Linear`` layers."""
    best, best_count = None, 0
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            count = sum(isinstance(m, nn.Linear) for m in module.modules())
            if count > best_count:
                best, best_count = module, count
    if best is None:
        raise A2DGuardError(f"{type(model).__name__} has no list of transformer blocks with linear layers to compress")
    return best


def block_linears(model: nn.Module, block: nn.Module) -> dict[str, nn.Linear]:
    """Full module name -> linear layer, for the linears inside ``block``."""
    names = {id(m): n for n, m in model.named_modules()}
    prefix = names[id(block)]
    return {f"{prefix}.{n}": m for n, m in block.named_modules() if isinstance(m, nn.Linear)}


def plan_layers(model: nn.Module, cfg: CompressConfig) -> list[LayerPlan]:
    """Every layer to compress, with its group size; user mistakes raise before any work."""
    cfg.validate()
    plans = []
    for block in find_blocks(model):
        for name, lin in block_linears(model, block).items():
            out, n = lin.out_features, lin.in_features
            if cfg.rank >= min(out, n):
                raise A2DGuardError(
                    f"--rank {cfg.rank} is too large for layer {name} ({out}x{n}); use a rank below {min(out, n)}"
                )
            group = cfg.group_size if cfg.group_size is not None else auto_group_size(n)
            if n % group:
                raise A2DGuardError(
                    f"--group-size {group} does not divide the input dimension {n} of layer {name}; "
                    f"use a divisor of {n} such as {auto_group_size(n)}, or omit --group-size"
                )
            plans.append(LayerPlan(name, out, n, group, lin.bias is not None))
    return plans


# Names a decoder layer has used for its KV cache argument (transformers renamed it again in
# 5.24: ``past_key_values`` -> ``cache``). A value of transformers' ``Cache`` type is dropped
# whatever its name, so the next rename cannot make a replayed block grow its cache.
_CACHE_KWARGS = ("past_key_values", "past_key_value", "layer_past", "cache")


def _is_kv_cache(key: str, value: object) -> bool:
    if key in _CACHE_KWARGS:
        return True
    try:
        from transformers.cache_utils import Cache
    except ImportError:  # pragma: no cover - transformers always has it since 4.36
        return False
    return isinstance(value, Cache)


class _Stop(Exception):
    """Raised by the capture hook: nothing after block 0 needs to run."""


@dataclass
class BlockInput:
    args: tuple
    kwargs: dict
    valid: torch.Tensor  # [B, L] bool, real tokens

    @property
    def hidden(self) -> torch.Tensor:
        return self.args[0] if self.args else self.kwargs["hidden_states"]

    def with_hidden(self, hidden: torch.Tensor) -> BlockInput:
        if self.args:
            return replace(self, args=(hidden, *self.args[1:]))
        return replace(self, kwargs={**self.kwargs, "hidden_states": hidden})


def capture_block_inputs(
    block: nn.Module,
    inputs: list[tuple[torch.Tensor, torch.Tensor]],  # (ids [B, L], attention mask [B, L])
    run_model: Callable[[torch.Tensor, torch.Tensor], object],
) -> list[BlockInput]:
    """What block 0 receives (hidden states and every extra argument) for each batch."""
    captured: list[BlockInput] = []

    def hook(module, args, kwargs):
        kwargs = dict(kwargs)
        for key, value in kwargs.items():  # a KV cache would grow with every replay of the block
            if _is_kv_cache(key, value):
                kwargs[key] = None
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        captured.append(BlockInput(tuple(args), kwargs, valid=None))  # type: ignore[arg-type]
        raise _Stop

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for ids, attn in inputs:
                try:
                    run_model(ids, attn)
                except _Stop:
                    pass
                captured[-1].valid = attn.bool()
    finally:
        handle.remove()
    return captured


def _block_output(out) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def compress_linear(lin: nn.Linear, h: torch.Tensor, cfg: DecompositionConfig) -> tuple[QLRLinear, object]:
    """Decompose one layer and build its replacement (same dtype and device)."""
    dec = decompose(lin.weight.detach(), h, cfg)
    bias = lin.bias.detach() if lin.bias is not None else None
    left, right = (dec.left_q, dec.right_q) if dec.left_q is not None else (dec.left, dec.right)
    return QLRLinear.from_parts(dec.q, left, right, bias, lin.weight.dtype), dec


def compress_model(
    model: nn.Module,
    inputs: list[tuple[torch.Tensor, torch.Tensor]],
    run_model: Callable[[torch.Tensor, torch.Tensor], object],
    cfg: CompressConfig,
    log: Callable[[str], None] | None = None,
) -> list[LayerReport]:
    """Replace every block linear of ``model`` by a ``QLRLinear``, in place. Returns per-layer reports."""
    plans = {p.name: p for p in plan_layers(model, cfg)}
    blocks = find_blocks(model)
    states = capture_block_inputs(blocks[0], inputs, run_model)
    reports: list[LayerReport] = []
    for index, block in enumerate(blocks):
        t0 = time.perf_counter()
        linears = block_linears(model, block)
        with torch.no_grad():
            hessians = collect_hessians(
                linears, states, run=lambda s, b=block: b(*s.args, **s.kwargs), valid_of=lambda s: s.valid
            )
        for name, lin in linears.items():
            plan = plans[name]
            dcfg = DecompositionConfig(
                bits=cfg.bits, rank=cfg.rank, init=cfg.init, outliers=cfg.outliers, iters=cfg.iters,
                group_size=plan.group_size, error_feedback=cfg.error_feedback, lr_bits=cfg.lr_bits,
            )
            layer, dec = compress_linear(lin, hessians[name], dcfg)
            set_submodule(model, name, layer)
            reports.append(
                LayerReport(
                    name=name, out_features=plan.out_features, in_features=plan.in_features,
                    group_size=plan.group_size, act_err=dec.act_err, init_err=dec.init_error,
                    quant_scale=dec.quant_scale, rounds=len(dec.history), history=list(dec.history),
                    bpw=bits_per_weight(plan.out_features, plan.in_features, cfg.bits, plan.group_size, cfg.rank,
                                        lr_bits=cfg.lr_bits),
                )
            )
        del hessians
        with torch.no_grad():  # next block sees this block's *compressed* outputs
            states = [s.with_hidden(_block_output(block(*s.args, **s.kwargs))) for s in states]
        if log is not None:
            errs = [r.act_err for r in reports[-len(linears):]]
            log(f"block {index + 1}/{len(blocks)}: {len(linears)} layers, mean act. error "
                f"{sum(errs) / len(errs):.4f} ({time.perf_counter() - t0:.1f}s)")
    return reports

