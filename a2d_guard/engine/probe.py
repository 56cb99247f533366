"""Batched p(EOS) reads at chosen positions of many canvases (the Guard's forwards, DESIGN §10).

Why here, next to the runner: a guard check is not a decode but the same tensor work as one
engine step without the commit: pack canvases (right padding + key padding mask, so padding
changes nothing), one forward of the model body, gather only the rows we read
(``ops.gather_rows``), LM head on those rows, p(EOS) from ``ops.token_stats`` (one pass over
each vocab row; the Triton kernel on CUDA). Many canvases run per forward, so the checks of
a whole call cost a few batched forwards, never a Python loop of one-row forwards.
"""

from __future__ import annotations

import torch
from torch.nn.utils.rnn import pad_sequence

from a2d_guard import ops
from a2d_guard.engine.runner import ModelRunner
from a2d_guard.models.spec import ModelSpec


@torch.no_grad()
def eos_probabilities(model, spec: ModelSpec, canvases: list[list[int]], reads: list[list[int]],
                      max_batch: int = 64) -> list[list[float]]:
    """p(EOS) at positions ``reads[i]`` of canvas ``canvases[i]``, for every i.

    Canvases run ``max_batch`` at a time, grouped by length (less padding); the answer for a
    canvas does not depend on its neighbours (each row attends to its own tokens only).
    Canvases with nothing to read cost no forward. Returns one list of floats per canvas,
    in ``reads`` order.
    """
    runner = ModelRunner(model, spec)  # cheap: holds references; its row logic handles Dream's shift
    out: list[list[float]] = [[] for _ in canvases]
    order = sorted((i for i in range(len(canvases)) if reads[i]), key=lambda i: len(canvases[i]))
    for start in range(0, len(order), max_batch):
        chunk = order[start : start + max_batch]
        rows = [torch.tensor(canvases[i], dtype=torch.long) for i in chunk]
        input_ids = pad_sequence(rows, batch_first=True, padding_value=spec.pad_id).to(runner.device)  # [B, L]
        lengths = torch.tensor([len(r) for r in rows], device=runner.device)  # [B]
        valid = torch.arange(input_ids.shape[1], device=runner.device)[None, :] < lengths[:, None]  # [B, L]
        # Same rule as the runner: no padding -> no mask, the one-sequence attention path.
        attention_mask = None if bool((lengths == lengths[0]).all()) else valid.long()
        seq_idx = torch.tensor([b for b, i in enumerate(chunk) for _ in reads[i]], device=runner.device)  # [M]
        pos_idx = torch.tensor([p for i in chunk for p in reads[i]], device=runner.device)  # [M]
        logits = runner.row_logits(input_ids, attention_mask, seq_idx, pos_idx)  # [M, V]
        m = pos_idx.numel()
        zeros = torch.zeros(m, dtype=torch.int64, device=runner.device)  # [M]
        stats = ops.token_stats(logits, spec.eos_id, torch.zeros(m, dtype=torch.float64, device=runner.device),
                                zeros, zeros, pos_idx, validate=False)
        p_eos = stats.p_eos.tolist()  # one host sync per chunk
        at = 0
        for i in chunk:
            out[i] = p_eos[at : at + len(reads[i])]
            at += len(reads[i])
    return out
