"""What a compression run reports: per-layer error, quantization scale, bits per weight, memory,
and the model-level masked-diffusion loss against the uncompressed model.

- act_err: ‖(W - Q - L R) Xᵀ‖_F / ‖W Xᵀ‖_F per layer (ODLRI's "activation-aware error");
  the overall figure is the mean over layers (each layer counts once, as in the paper).
- quant_scale: the mean step of Q's group grids (ODLRI reports it shrinking with outlier init).
- bpw: stored bits per weight of a compressed layer *including L R*, at 16-bit storage of
  scales, offsets and factors (the serving dtype): (b·m·n + 32·m·n/g + 16·r·(m+n)) / (m·n);
  with ``--lr-bits 4`` the factors count at 4 bits plus their own group grids.
- memory: bytes of every parameter and buffer of the model as it is (its dtype).
- masked-diffusion loss: mean cross-entropy (nats) over masked tokens of held-out text, with
  every non-special token masked independently at a fixed ratio λ (LLaDA's forward process at
  t = λ); the same masks for both models, so the difference is paired.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F

from a2d_guard.compress.data import Batch, noised
from a2d_guard.diffusion.forward_process import EPS
from a2d_guard.models.forward import model_logits
from a2d_guard.models.spec import ModelSpec

LOSS_RATIOS = (0.15, 0.5, 0.85)


@dataclass
class LayerReport:
    name: str
    out_features: int
    in_features: int
    group_size: int
    act_err: float
    init_err: float
    quant_scale: float
    bpw: float
    rounds: int
    history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def bits_per_weight(out: int, n: int, bits: int, group_size: int, rank: int, float_bits: int = 16,
                    lr_bits: int = 16) -> float:
    """(b·m·n + 2·float_bits·m·n/g + LR) / (m·n), L R included.

    LR = float_bits·r·(m+n) for float factors; at ``lr_bits`` 4 (packed, ``--lr-bits 4``) the
    factors' own codes and grids: 4·r·(m+n) + 2·float_bits·(m·r/g_L + r·n/g_R), with the
    group sizes ``auto_group_size`` picks for L [m, r] and R [r, n]."""
    from a2d_guard.compress.quantizer import auto_group_size

    total = bits * out * n + 2 * float_bits * out * (n // group_size)
    if rank and lr_bits < 16:
        total += lr_bits * rank * (out + n)
        total += 2 * float_bits * (out * (rank // auto_group_size(rank)) + rank * (n // auto_group_size(n)))
    else:
        total += float_bits * rank * (out + n)
    return total / (out * n)


def summarize(reports: list[LayerReport]) -> dict:
    """Overall act_err / quant_scale (means over layers) and bpw (weighted by layer size)."""
    if not reports:
        return {"act_err": float("nan"), "quant_scale": float("nan"), "bpw": float("nan")}
    sizes = [r.out_features * r.in_features for r in reports]
    return {
        "act_err": sum(r.act_err for r in reports) / len(reports),
        "quant_scale": sum(r.quant_scale for r in reports) / len(reports),
        "bpw": sum(r.bpw * s for r, s in zip(reports, sizes, strict=True)) / sum(sizes),
    }


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of all parameters and buffers (tied tensors counted once)."""
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


@torch.no_grad()
def masked_diffusion_loss(
    model, spec: ModelSpec, batches: list[Batch], ratios=LOSS_RATIOS, seed: int = 0
) -> dict[str, float]:
    """ratio -> mean CE (nats) over masked tokens at mask ratio λ = ratio (fixed seed per ratio)."""
    out = {}
    for ratio in ratios:
        gen = torch.Generator(device=batches[0].input_ids.device).manual_seed(seed)
        t = torch.tensor((ratio - EPS) / (1 - EPS))
        total, count = 0.0, 0
        for b in batches:
            noisy, masked = noised(b, spec, t.expand(b.input_ids.shape[0]), gen)
            if not masked.any():
                continue
            logits = model_logits(model, spec, noisy, b.attention_mask)  # [B, L, V]
            ce = F.cross_entropy(logits[masked].float(), b.input_ids[masked], reduction="sum")
            total += float(ce)
            count += int(masked.sum())
        out[f"{ratio:g}"] = total / max(count, 1)
    return out
