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

import torch
from torch.nn.utils.rnn import pad_sequence

from a2d_guard import ops
from a2d_guard.config import REMASKING_MODES
from a2d_guard.diffusion.monitor import first_visible_end, should_reject
from a2d_guard.engine.cached_forward import BlockCache, check_cache_mode
from a2d_guard.engine.sequence import Sequence
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.spec import ModelSpec

_MODE_INDEX = {mode: i for i, mode in enumerate(REMASKING_MODES)}


@dataclass
class StepOutcome:
    """What happened to one sequence in a step (the engine turns it into a status)."""

    p_eos: float
    rejected: bool = False
    reject_position: int = -1
    stop_position: int = -1
    is_full: bool = False
    masks_left: int = 0  # masks left of the block's end after the commit (ends a block early)
    error: str | None = None


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

    def _hidden_rows(self, input_ids, attention_mask, seq_idx, pos_idx) -> torch.Tensor:
        """Logits of the candidate rows only.  # [M, V]"""
        rows = (pos_idx - 1).clamp_min(0) if self.spec.shift_logits else pos_idx  # Dream: row i-1 predicts i
        if self.head is None:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits  # [B, L, V]
            return ops.gather_rows(logits, seq_idx, rows, validate=False)
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # [B, L, D]
        return self.head(ops.gather_rows(hidden, seq_idx, rows, validate=False))  # [M, V]

    @torch.no_grad()
    def execute(self, seqs: list[Sequence], ks: list[int]) -> list[StepOutcome]:
        """One denoising step for every running sequence; mutates their canvases."""
        spec, dev = self.spec, self.device
        b = len(seqs)
        # Per-sequence scalars in two host-to-device copies (ints, floats).
        ints = torch.tensor([[s.length, s.block_end, s.prompt_length, s.params.seed, s.num_steps,
                              _MODE_INDEX[s.params.remasking], k, s.policy.ban_eos]
                             for s, k in zip(seqs, ks, strict=True)], dtype=torch.int64).to(dev)  # [B, 8]
        floats = torch.tensor([[float(s.params.temperature), float(s.params.eos_threshold),
                                _parallel_threshold(s)] for s in seqs], dtype=torch.float64).to(dev)  # [B, 3]
        lengths, block_ends, prompt_lengths, seeds, steps, modes, k, ban_eos = ints.unbind(1)
        temperature, thresholds, parallel = floats.unbind(1)

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
            logits = self._hidden_rows(input_ids, attention_mask, seq_idx, pos_idx)  # [M, V]
            self.token_forwards += input_ids.numel()
        else:
            hidden, spent = self.block_cache.hidden_rows(seqs, input_ids, seq_idx, pos_idx)  # [M, D]
            logits = self.head(hidden)  # [M, V]
            self.token_forwards += spent
        logits = self._apply_logit_bias(logits, seqs, seq_idx)
        # a policy that bans EOS (a2d): EOS may not be chosen as x0; every statistic still reads the unbanned softmax
        banned = ban_eos.bool()[seq_idx] if any(s.policy.ban_eos for s in seqs) else None  # [M]
        stats = ops.token_stats(logits, spec.eos_id, temperature[seq_idx], seeds[seq_idx], steps[seq_idx], pos_idx,
                                validate=False, ban_eos=banned)
        # A NaN/inf logit makes the row's softmax NaN: fail that request only.
        bad_rows = torch.isnan(stats.p_x0) | torch.isnan(stats.p_eos)  # [M]
        bad_seq = torch.zeros(b, dtype=torch.int32, device=dev).index_add_(0, seq_idx, bad_rows.int()) > 0

        # Monitor (DESIGN §4) on the canvas before this step's commit.
        leftmost = pos_idx[starts]  # [B]
        p_eos = stats.p_eos[starts].to(torch.float64)  # [B]
        rejected = should_reject(input_ids, generated, leftmost, p_eos, spec.mask_id, spec.end_ids, thresholds)
        rejected &= ~bad_seq

        # Per-sequence top-k by confidence; ties -> leftmost (stable sorts keep row order).
        pos_f = pos_idx.to(torch.float64)
        table = torch.stack([stats.p_x0, stats.margin, stats.neg_entropy, stats.rand_conf, -pos_f, pos_f], 1)
        conf = table.to(torch.float64).gather(1, modes[seq_idx][:, None]).squeeze(1)  # [M]
        order = torch.sort(conf, descending=True, stable=True).indices
        order = order[torch.sort(seq_idx[order], stable=True).indices]  # group by sequence, keep conf order
        rank = torch.arange(order.numel(), device=dev) - starts[seq_idx[order]]
        sure = stats.p_x0[order].to(torch.float64) >= parallel[seq_idx[order]]  # threshold decoding
        keep = ((rank < k[seq_idx[order]]) | sure) & ~(rejected | bad_seq)[seq_idx[order]]
        chosen = order[keep]
        input_ids[seq_idx[chosen], pos_idx[chosen]] = stats.x0[chosen]

        response = generated & (positions >= prompt_lengths[:, None])
        stop_at = first_visible_end(input_ids, response, spec.mask_id, spec.end_ids)  # [B]
        still_masked = (input_ids == spec.mask_id) & valid  # [B, L]
        is_full = ~still_masked.any(dim=1)  # [B]
        masks_left = (still_masked & (positions < block_ends[:, None])).sum(1)  # [B]

        for i, s in enumerate(seqs):
            s.canvas = input_ids[i, : s.length]
        summary = torch.stack([p_eos, rejected.double(), leftmost.double(), stop_at.double(), is_full.double(),
                               bad_seq.double(), masks_left.double()], 1).tolist()  # one host sync
        if self.block_cache is not None:
            self.block_cache.after_step(seqs, [int(row[2]) for row in summary])
        return [
            StepOutcome(p_eos=row[0], rejected=bool(row[1]), reject_position=int(row[2]), stop_position=int(row[3]),
                        is_full=bool(row[4]), masks_left=int(row[6]), error="non-finite logits" if row[5] else None)
            for row in summary
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
