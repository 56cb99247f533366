"""Tensor work of one engine step: pack, forward, gather, LM head, token stats, monitor, commit.

Why it is faster than the reference: the reference runs the LM head and a float64 softmax
on every position of every sequence ([B, L, V]); only the candidate rows (masked, left of
the block end) matter, so we gather those hidden rows (``ops.gather_rows``), run the head
on [M, D] and reduce each vocab row in one pass (``ops.token_stats``). Monitor, top-k and
early-exit checks are batched tensor ops with one host sync per step.

Threshold decoding (Fast-dLLM) is one more term in the commit rule: a candidate commits when
its rank by the mode's confidence is below k, or when its p(x0) is at least its sequence's
``parallel_threshold`` (+inf for exact-mode sequences, so both kinds share one step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.nn.utils.rnn import pad_sequence

from a2d_guard import ops
from a2d_guard.config import REMASKING_MODES
from a2d_guard.diffusion.monitor import first_visible_end, should_reject
from a2d_guard.engine.cached_forward import BlockCache, check_cache_mode
from a2d_guard.engine.sequence import Sequence
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec

_MODE_INDEX = {mode: i for i, mode in enumerate(REMASKING_MODES)}  # the confidence table's columns, by name


def confidence_table(stats, positions: torch.Tensor) -> torch.Tensor:
    """Every remasking mode's confidence of each candidate row, one column per mode in
    ``REMASKING_MODES`` order (so ``_MODE_INDEX`` reads a column by the mode's name).  # [M, MODES]"""
    pos = positions.to(torch.float64)
    by_mode = {"low_confidence": stats.p_x0, "margin": stats.margin, "entropy": stats.neg_entropy,
               "random": stats.rand_conf, "left_to_right": -pos, "right_to_left": pos}
    return torch.stack([by_mode[mode].to(torch.float64) for mode in REMASKING_MODES], 1)


@dataclass
class StepOutcome:
    """What happened to one sequence in a step; the engine applies it to the sequence (its
    canvas and status), the runner writes no ``Sequence`` field of the decode."""

    p_eos: float
    canvas: torch.Tensor | None = None  # [L] the canvas after this step's commit
    rejected: bool = False
    reject_position: int = -1
    stop_position: int = -1
    is_full: bool = False
    masks_left: int = 0  # masks left of the block's end after the commit (ends a block early)
    error: str | None = None


class StepInputs(NamedTuple):
    """Per-sequence scalars of one step, on the device, in two host-to-device copies.  # each [B]"""

    lengths: torch.Tensor
    block_ends: torch.Tensor
    prompt_lengths: torch.Tensor
    seeds: torch.Tensor
    steps: torch.Tensor
    modes: torch.Tensor
    k: torch.Tensor
    ban_eos: torch.Tensor
    temperature: torch.Tensor
    thresholds: torch.Tensor
    parallel: torch.Tensor

    @classmethod
    def pack(cls, seqs: list[Sequence], ks: list[int], device) -> StepInputs:
        ints = torch.tensor([[s.length, s.block_end, s.prompt_length, s.params.seed, s.num_steps,
                              _MODE_INDEX[s.params.remasking], k, s.policy.ban_eos]
                             for s, k in zip(seqs, ks, strict=True)], dtype=torch.int64).to(device)  # [B, 8]
        floats = torch.tensor([[float(s.params.temperature), float(s.params.eos_threshold), _parallel_threshold(s)]
                               for s in seqs], dtype=torch.float64).to(device)  # [B, 3]
        return cls(*ints.unbind(1), *floats.unbind(1))


# What the step's one host sync brings back per sequence, by name (the columns of ``summary``).
_SUMMARY = ("p_eos", "rejected", "leftmost", "stop_position", "is_full", "bad", "masks_left")


def split_body_head(model):
    """(body, head): the transformer that makes hidden states and the layer that makes logits.

    Llama/Qwen2 (llada, dream, tiny) keep them as ``model.model`` / ``model.lm_head``; BERT-like
    masked LMs as ``model.base_model`` / ``model.cls``. ``head`` is None when we cannot tell:
    the runner then computes full logits and gathers rows from them (correct, just slower).
    """
    if hasattr(model, "lm_head") and hasattr(model, "model"):
        return model.model, model.lm_head
    if hasattr(model, "cls") and hasattr(model, "base_model"):
        return model.base_model, model.cls
    return model, None


def _parallel_threshold(seq: Sequence) -> float:
    """The p(x0) at which a candidate commits regardless of k; +inf (never) in exact mode."""
    t = seq.params.parallel_threshold
    return math.inf if t is None else float(t)


class ModelRunner:
    """``cache``: "none" (exact mode: the whole canvas every step) or "prefix"/"dual" (fast
    mode, DESIGN §12: :class:`BlockCache` computes the hidden rows; everything after the
    hidden rows, from the LM head to the commit, is the same code in both modes).
    ``token_forwards`` counts token positions run through the body (padding included)."""

    def __init__(self, model, spec: ModelSpec, cache: str = "none", max_num_seqs: int = 64):
        self.model = model
        self.spec = spec
        self.body, self.head = split_body_head(model)
        self.device = next(model.parameters()).device
        self.token_forwards = 0
        self.block_cache = None
        if check_cache_mode(cache) != "none":
            if self.head is None:
                raise A2DGuardError(f"cache={cache!r} needs a model with a separate LM head (Llama/Qwen2-shaped); "
                                    "use cache='none'")
            self.block_cache = BlockCache(model, self.body, spec, cache, max_num_seqs)

    @property
    def kv_pool(self):
        return None if self.block_cache is None else self.block_cache.pool

    def row_logits(self, input_ids, attention_mask, seq_idx, pos_idx) -> torch.Tensor:
        """Logits at positions ``pos_idx`` of canvases ``seq_idx`` only (the decode's candidates,
        the guard's probe reads): the body on the canvases, the LM head on those rows.  # [M, V]"""
        rows = (pos_idx - 1).clamp_min(0) if self.spec.shift_logits else pos_idx  # Dream: row i-1 predicts i
        if self.head is None:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # [B, L, V]
            return ops.gather_rows(logits, seq_idx, rows, validate=False)
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, D]
        return self.head(ops.gather_rows(hidden, seq_idx, rows, validate=False))  # [M, V]

    @torch.no_grad()
    def execute(self, seqs: list[Sequence], ks: list[int]) -> list[StepOutcome]:
        """One denoising step for every running sequence: the outcome of each, its new canvas included."""
        spec, dev = self.spec, self.device
        b = len(seqs)
        inputs = StepInputs.pack(seqs, ks, dev)
        lengths, block_ends, k = inputs.lengths, inputs.block_ends, inputs.k

        input_ids = pad_sequence([s.canvas for s in seqs], batch_first=True, padding_value=spec.pad_id)  # [B, L]
        generated = pad_sequence([s.generated for s in seqs], batch_first=True, padding_value=False)  # [B, L]
        positions = torch.arange(input_ids.shape[1], device=dev)[None, :]  # [1, L]
        valid = positions < lengths[:, None]  # [B, L]
        # No padding -> no mask at all: the same attention path as the one-sequence reference.
        same_length = len({s.length for s in seqs}) == 1
        attention_mask = None if same_length else valid.long()

        masked = (input_ids == spec.mask_id) & valid
        seq_idx, pos_idx = ops.candidate_index(masked & (positions < block_ends[:, None]))  # [M], [M]
        counts = torch.bincount(seq_idx, minlength=b)  # [B]; >= 1 each: k >= 1 guarantees a candidate
        starts = torch.cumsum(counts, 0) - counts  # first (= leftmost) row of each sequence

        if self.block_cache is None:
            logits = self.row_logits(input_ids, attention_mask, seq_idx, pos_idx)  # [M, V]
            self.token_forwards += input_ids.numel()
        else:
            hidden, spent = self.block_cache.hidden_rows(seqs, input_ids, seq_idx, pos_idx)  # [M, D]
            logits = self.head(hidden)  # [M, V]
            self.token_forwards += spent
        logits = self._apply_logit_bias(logits, seqs, seq_idx)
        # a policy that bans EOS (a2d): EOS may not be chosen as x0; every statistic still reads the unbanned softmax
        banned = inputs.ban_eos.bool()[seq_idx] if any(s.policy.ban_eos for s in seqs) else None  # [M]
        stats = ops.token_stats(logits, spec.eos_id, inputs.temperature[seq_idx], inputs.seeds[seq_idx],
                                inputs.steps[seq_idx], pos_idx, validate=False, ban_eos=banned)
        # A NaN/inf logit makes the row's softmax NaN: fail that request only.
        bad_rows = torch.isnan(stats.p_x0) | torch.isnan(stats.p_eos)  # [M]
        bad_seq = torch.zeros(b, dtype=torch.int32, device=dev).index_add_(0, seq_idx, bad_rows.int()) > 0

        # Monitor (DESIGN §4) on the canvas before this step's commit.
        leftmost = pos_idx[starts]  # [B]
        p_eos = stats.p_eos[starts].to(torch.float64)  # [B]
        rejected = should_reject(input_ids, generated, leftmost, p_eos, spec.mask_id, spec.end_ids, inputs.thresholds)
        rejected &= ~bad_seq

        # Per-sequence top-k by confidence; ties -> leftmost (stable sorts keep row order).
        conf = confidence_table(stats, pos_idx).gather(1, inputs.modes[seq_idx][:, None]).squeeze(1)  # [M]
        order = torch.sort(conf, descending=True, stable=True).indices
        order = order[torch.sort(seq_idx[order], stable=True).indices]  # group by sequence, keep conf order
        rank = torch.arange(order.numel(), device=dev) - starts[seq_idx[order]]
        sure = stats.p_x0[order].to(torch.float64) >= inputs.parallel[seq_idx[order]]  # threshold decoding
        keep = ((rank < k[seq_idx[order]]) | sure) & ~(rejected | bad_seq)[seq_idx[order]]
        chosen = order[keep]
        input_ids[seq_idx[chosen], pos_idx[chosen]] = stats.x0[chosen]

        response = generated & (positions >= inputs.prompt_lengths[:, None])
        stop_at = first_visible_end(input_ids, response, spec.mask_id, spec.end_ids)  # [B]
        still_masked = (input_ids == spec.mask_id) & valid  # [B, L]
        is_full = ~still_masked.any(dim=1)  # [B]
        masks_left = (still_masked & (positions < block_ends[:, None])).sum(1)  # [B]

        columns = {"p_eos": p_eos, "rejected": rejected, "leftmost": leftmost, "stop_position": stop_at,
                   "is_full": is_full, "bad": bad_seq, "masks_left": masks_left}
        summary = torch.stack([columns[name].double() for name in _SUMMARY], 1).tolist()  # one host sync
        rows = [dict(zip(_SUMMARY, row, strict=True)) for row in summary]
        if self.block_cache is not None:
            self.block_cache.after_step(seqs, [int(row["leftmost"]) for row in rows])
        return [
            StepOutcome(p_eos=row["p_eos"], canvas=input_ids[i, : s.length], rejected=bool(row["rejected"]),
                        reject_position=int(row["leftmost"]), stop_position=int(row["stop_position"]),
                        is_full=bool(row["is_full"]), masks_left=int(row["masks_left"]),
                        error="non-finite logits" if row["bad"] else None)
            for i, (s, row) in enumerate(zip(seqs, rows, strict=True))
        ]

    def _apply_logit_bias(self, logits, seqs, seq_idx) -> torch.Tensor:
        """OpenAI ``logit_bias``: add each request's biases to that request's rows (sparse)."""
        entries = [(i, tok, val) for i, s in enumerate(seqs) for tok, val in s.params.logit_bias.items()]
        if not entries:
            return logits
        logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits.clone()
        ent_seq = torch.tensor([e[0] for e in entries], device=logits.device)  # [E]
        ent_tok = torch.tensor([e[1] for e in entries], device=logits.device)  # [E]
        ent_val = torch.tensor([e[2] for e in entries], dtype=logits.dtype, device=logits.device)  # [E]
        rows, ents = (seq_idx[:, None] == ent_seq[None, :]).nonzero(as_tuple=True)  # every (row, entry) pair
        logits.index_put_((rows, ent_tok[ents]), ent_val[ents], accumulate=True)
        return logits
