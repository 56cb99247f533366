"""The A2D training loss (arXiv 2509.23286 §3) on top of the masked-diffusion forward process.

One call: mask a batch at ratio λ(t) (``forward_mask``), set the targets (``a2d_targets``:
EOS at every masked position of a harmful row, the clean token elsewhere), run the model,
and reduce the cross-entropy the way the family was trained:

- LLaDA (arXiv 2502.09992, SFT Eq. 5), used for ``llada``/``tiny``/``masked_lm``:
  ``L = E_b [ (1 / λ_b) · Σ_{i masked} CE_i / answer_len_b ]`` where ``answer_len_b`` counts
  every maskable position of row b (EOS padding included).
- Dream (shifted logits, re-aligned by ``model_logits``):
  ``L = Σ_{b, i masked} (CE_{b,i} / λ_b) / #masked`` (mean over masked tokens).

The ``1/λ`` weight makes the loss an upper bound on the negative log-likelihood
(LLaDA Eq. 3); without it, lightly-masked samples would dominate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from a2d_guard.diffusion.forward_process import a2d_targets, forward_mask
from a2d_guard.models.forward import model_logits
from a2d_guard.models.spec import ModelSpec
from a2d_guard.training.data import Batch


@dataclass
class LossTerms:
    """The loss to back-propagate and the numbers ``metrics.jsonl`` reports."""

    loss: torch.Tensor  # [] differentiable
    per_sample: torch.Tensor  # [B] detached, in the family's own normalisation
    is_harmful: torch.Tensor  # [B] bool
    eos_hits: int  # harmful masked positions whose argmax is EOS
    harmful_masked: int  # masked positions in harmful rows
    num_masked: int


def maskable_positions(batch: Batch, mask_prompt: str) -> torch.Tensor:
    """Which positions the forward process may mask. -> [B, L] bool.

    Always the response (A2D/LLaDA: the prompt is never masked). ``mask_prompt`` adds the
    user text of harmful rows (``harmful``) or of every row (``all``): DIJA puts masks in
    the user turn, which the paper's objective never trains.
    """
    b, length = batch.input_ids.shape
    pos = torch.arange(length)[None, :]  # [1, L]
    response = pos >= batch.prompt_lengths[:, None]  # [B, L]
    if mask_prompt == "none":
        return response
    start, end = batch.content_spans[:, 0:1], batch.content_spans[:, 1:2]  # [B, 1]
    content = (pos >= start) & (pos < end)  # [B, L]
    rows = batch.is_harmful if mask_prompt == "harmful" else torch.ones(b, dtype=torch.bool)
    return response | (content & rows[:, None])


def draw_masks(batch: Batch, maskable: torch.Tensor, mask_id: int, eps: float):
    """``forward_mask`` row by row, each row from its own seed (``Batch.row_seeds``).

    Per-row generators make a row's mask independent of which batch, process or world
    size it lands in. A row with ``max_mask_ratio`` below 1 (content rows) draws
    t ~ U(0, max_mask_ratio): part of its text always stays visible, so it teaches what
    visible text means, never "this prompt, nothing seen". Rows at 1.0 draw exactly as
    ``forward_mask`` alone would. Returns (noisy [B, L], masked [B, L] bool, λ [B]).
    """
    parts = []
    for i in range(batch.input_ids.shape[0]):
        g = torch.Generator().manual_seed(int(batch.row_seeds[i]))
        cap = 1.0 if batch.max_mask_ratios is None else float(batch.max_mask_ratios[i])
        t = None if cap >= 1.0 else torch.rand(1, generator=g) * cap  # [1]; the draw forward_mask makes
        parts.append(forward_mask(batch.input_ids[i : i + 1], batch.prompt_lengths[i : i + 1], mask_id,
                                  generator=g, eps=eps, t=t, maskable=maskable[i : i + 1]))
    noisy, masked, lam = (torch.cat(t) for t in zip(*parts, strict=True))
    return noisy, masked, lam


def a2d_loss(
    model,
    spec: ModelSpec,
    batch: Batch,  # on CPU: masking is drawn on CPU so it is identical on every device
    objective: str = "a2d",
    mask_prompt: str = "none",
    eps: float = 1e-3,
    device: torch.device | str = "cpu",
) -> LossTerms:
    """Mask, predict, reduce. ``objective="sft"`` ignores the labels (every row retain)."""
    maskable = maskable_positions(batch, mask_prompt)  # [B, L]
    noisy, masked, lam = draw_masks(batch, maskable, spec.mask_id, eps)  # [B, L], [B, L], [B]
    harmful_rows = batch.is_harmful if objective == "a2d" else torch.zeros_like(batch.is_harmful)
    targets = a2d_targets(batch.input_ids, harmful_rows, spec.eos_id)  # [B, L]

    noisy, masked, lam, targets = (t.to(device) for t in (noisy, masked, lam, targets))
    logits = model_logits(model, spec, noisy)  # [B, L, V]
    rows, cols = masked.nonzero(as_tuple=True)  # [M], [M]
    picked = logits[rows, cols].float()  # [M, V]: only masked positions enter the loss
    ce = F.cross_entropy(picked, targets[rows, cols], reduction="none")  # [M]
    weighted = ce / lam[rows]  # [M]  the 1/λ weight

    b = batch.input_ids.shape[0]
    per_row_sum = torch.zeros(b, device=ce.device).index_add(0, rows, weighted)  # [B]
    if spec.shift_logits:  # Dream: mean over masked tokens
        loss = weighted.sum() / max(1, rows.numel())
        counts = torch.zeros(b, device=ce.device).index_add(0, rows, torch.ones_like(weighted))
        per_sample = per_row_sum / counts.clamp(min=1)
    else:  # LLaDA: per-row sum / answer_len, mean over rows
        answer_len = maskable.sum(1).clamp(min=1).to(ce.device)  # [B]
        per_sample = per_row_sum / answer_len
        loss = per_sample.mean()

    with torch.no_grad():
        harmful_mask = batch.is_harmful.to(ce.device)[rows]  # [M]
        hits = (picked.argmax(-1) == spec.eos_id) & harmful_mask
    return LossTerms(
        loss=loss,
        per_sample=per_sample.detach(),
        is_harmful=batch.is_harmful,
        eos_hits=int(hits.sum()),
        harmful_masked=int(harmful_mask.sum()),
        num_masked=int(rows.numel()),
    )
