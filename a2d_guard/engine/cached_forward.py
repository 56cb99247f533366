"""Fast mode's forward (DESIGN §12, Fast-dLLM arXiv 2505.22618 §3.1): block-wise K/V reuse.

At a sequence's block's first step the whole canvas runs through the model and every
layer's K/V (RoPE applied, canvas positions) is written to the sequence's slot of the
engine's :class:`KVPool`. Until the block ends, later steps run only a *window*:

* ``dual``: the block (from its leftmost mask, which in block 0 may be a prompt mask, to the
  block's end); keys and values left *and* right of it come from the pool;
* ``prefix``: the block and everything right of it; only the left part comes from the pool.

The window's own K/V are recomputed at every step and written back before attention, so a
window query attends to fresh keys inside the window and cached keys outside it: the
approximation is only that the cached keys were computed when the block still held its
masks. The window is fixed for the whole block (a token committed inside it must have its
K/V recomputed, not read from the block's first step).

Sequences at different phases share a step as **two forwards**: one over the full canvases
of the sequences at a block's first step, one over the padded windows of the rest. Why not
one padded forward: a full canvas is 10x a dual window at LLaDA's settings (prompt 128 +
gen 256 vs block 32), so padding every window to the canvas length would spend the very
compute the cache saves; two forwards cost one extra weight read per step, which is small
next to the token-forwards saved at batch 64.

The layer loop is Llama/Qwen2's decoder layer written out (the modules are called as they
are, so merged LoRA, compressed ``QLRLinear`` layers and any dtype work unchanged); at a
block's first step it reproduces transformers' forward bit for bit (tested in float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from a2d_guard.engine.kv_cache import KVPool
from a2d_guard.errors import A2DGuardError

CACHE_MODES = ("none", "prefix", "dual")

_BODY_PARTS = ("embed_tokens", "layers", "norm", "rotary_emb")
_LAYER_PARTS = ("input_layernorm", "post_attention_layernorm", "mlp", "self_attn")
_ATTN_PARTS = ("q_proj", "k_proj", "v_proj", "o_proj")


def check_cache_mode(cache) -> str:
    if cache not in CACHE_MODES:
        raise A2DGuardError(f"unknown cache mode {cache!r}; use one of {', '.join(CACHE_MODES)} "
                            "(none = exact mode, the default)")
    return cache


def check_cacheable(body) -> None:
    """Fast mode needs a Llama/Qwen2-shaped body (LLaDA, Dream, tiny); name what is missing."""
    missing = [p for p in _BODY_PARTS if not hasattr(body, p)]
    if not missing:
        layer = body.layers[0]
        missing = [f"layers[0].{p}" for p in _LAYER_PARTS if not hasattr(layer, p)]
        if not missing:
            attn = layer.self_attn
            missing = [f"self_attn.{p}" for p in _ATTN_PARTS if not hasattr(attn, p)]
            if hasattr(attn, "q_norm") or hasattr(attn, "k_norm"):
                missing.append("(no q_norm/k_norm: Qwen3-style attention is not supported)")
    if missing:
        raise A2DGuardError(
            f"cache needs a Llama/Qwen2-shaped model (LLaDA, Dream, tiny); {type(body).__name__} lacks "
            f"{', '.join(missing)}. Use cache='none' (exact mode) for this model"
        )


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class BlockCache:
    """The pool plus the two forwards of a fast-mode step; the runner asks it for hidden rows."""

    def __init__(self, model, body, spec, mode: str, num_slots: int):
        check_cacheable(body)
        if mode not in ("prefix", "dual"):
            raise A2DGuardError(f"BlockCache mode must be 'prefix' or 'dual', got {mode!r}")
        self.body, self.spec, self.mode = body, spec, mode
        param = next(model.parameters())
        self.pool = KVPool.for_model(model.config, num_slots, param.dtype, param.device)
        self.groups = model.config.num_attention_heads // self.pool.kv_heads  # GQA: query heads per kv head
        self.shift = 1 if spec.shift_logits else 0  # Dream: row i-1 predicts position i

    # -- the step -----------------------------------------------------------------------
    def hidden_rows(self, seqs, input_ids: torch.Tensor, seq_idx: torch.Tensor,
                    pos_idx: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(final hidden states of the candidate rows [M, D], token-forwards spent).

        ``input_ids`` [B, L] padded canvases, ``seq_idx``/``pos_idx`` [M] the candidates. A
        sequence whose cache is not for its current block takes the full forward. Group
        membership, widths and lengths come from the host-side sequences (no device sync).
        """
        dev = input_ids.device
        rows = (pos_idx - self.shift).clamp_min(0)  # [M] hidden row that predicts each candidate (as the runner)
        out: torch.Tensor | None = None
        spent = 0
        for is_full in (True, False):
            members = [i for i, s in enumerate(seqs) if (s.kv_block != s.block) == is_full]
            if not members:
                continue
            group = [seqs[i] for i in members]
            group_of = torch.full((len(seqs),), -1, dtype=torch.long)
            group_of[members] = torch.arange(len(members))
            group_of = group_of.to(dev)
            pick = group_of[seq_idx] >= 0  # [M] candidates of this group
            index = torch.tensor(members, device=dev)
            slots = torch.tensor([s.kv_slot for s in group], device=dev)  # [G]
            forward = self._full if is_full else self._window
            hidden, offset = forward(group, input_ids[index], slots)
            spent += hidden.shape[0] * hidden.shape[1]
            g = group_of[seq_idx[pick]]
            part = hidden[g, rows[pick] - offset[g]]  # [M_g, D]
            if out is None:
                out = part.new_empty(pos_idx.numel(), part.shape[-1])
            out[pick] = part
        return out, spent

    def after_step(self, seqs, leftmost: list[int]) -> None:
        """Record, for sequences that ran the full forward, the block and window now cached.

        ``leftmost``: each sequence's leftmost candidate before the step's commit (the runner's
        one host sync already carries it), i.e. the block's first mask at its first step.
        """
        for s, left in zip(seqs, leftmost, strict=True):
            if s.kv_block != s.block:
                end = s.block_end if self.mode == "dual" else s.length
                s.kv_block, s.kv_window = s.block, (max(0, left - self.shift), end)

    # -- the two forwards -----------------------------------------------------------------
    def _full(self, seqs, canvases, slots):
        """Whole canvases [G, L]: write every valid position's K/V; attend to the fresh ones."""
        lengths = [s.length for s in seqs]
        width = max(lengths)
        ids = canvases[:, :width]  # [G, L]
        positions = torch.arange(width, device=ids.device).expand(len(seqs), width)  # [G, L]
        valid = positions < torch.tensor(lengths, device=ids.device)[:, None]  # [G, L]
        key_valid = None if min(lengths) == width else valid  # no padding -> no mask, as transformers does
        hidden = self._layers(ids, positions, slots, valid, key_valid, read_pool=False)
        return hidden, torch.zeros(len(seqs), dtype=torch.long, device=ids.device)

    def _window(self, seqs, canvases, slots):
        """Windows [G, W] (padded on the right): write their K/V, attend to the slot's whole canvas."""
        dev = canvases.device
        lengths = [s.length for s in seqs]
        width = max(end - start for start, end in (s.kv_window for s in seqs))
        starts = torch.tensor([s.kv_window[0] for s in seqs], device=dev)  # [G]
        ends = torch.tensor([s.kv_window[1] for s in seqs], device=dev)  # [G]
        length_t = torch.tensor(lengths, device=dev)  # [G]
        positions = starts[:, None] + torch.arange(width, device=dev)  # [G, W]
        in_window = positions < ends[:, None]  # [G, W]
        positions = torch.minimum(positions, length_t[:, None] - 1)  # padded rows: a real position, never written
        ids = canvases.gather(1, positions)  # [G, W]
        key_len = max(lengths)
        key_valid = None
        if min(lengths) != key_len:
            key_valid = torch.arange(key_len, device=dev)[None, :] < length_t[:, None]  # [G, K]
        hidden = self._layers(ids, positions, slots, in_window, key_valid, read_pool=True, key_len=key_len)
        return hidden, starts

    def _layers(self, ids, positions, slots, write, key_valid, read_pool: bool, key_len: int = 0):
        """Llama/Qwen2 decoder layers over ``ids`` [G, W] at canvas ``positions`` [G, W].

        ``write`` [G, W]: rows whose K/V go to the pool. ``read_pool``: attend to the pool's
        [0, key_len) (window steps) instead of this forward's own K/V (full steps).
        """
        body, pool = self.body, self.pool
        h = body.embed_tokens(ids)  # [G, W, D]
        cos, sin = body.rotary_emb(h, positions)  # [G, W, hd] each
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # broadcast over heads
        wb, ww = write.nonzero(as_tuple=True)  # [N] rows to store
        w_slots, w_pos = slots[wb], positions[wb, ww]
        mask = None if key_valid is None else key_valid[:, None, None, :]  # [G, 1, 1, K]
        shape = (*ids.shape, -1, pool.head_dim)
        for index, layer in enumerate(body.layers):
            attn = layer.self_attn
            residual = h
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(shape).transpose(1, 2)  # [G, H, W, hd]
            k = attn.k_proj(x).view(shape).transpose(1, 2)  # [G, Hkv, W, hd]
            v = attn.v_proj(x).view(shape).transpose(1, 2)
            q = (q * cos) + (_rotate_half(q) * sin)
            k = (k * cos) + (_rotate_half(k) * sin)
            pool.write(index, w_slots, w_pos, k.transpose(1, 2)[wb, ww], v.transpose(1, 2)[wb, ww])
            if read_pool:
                k, v = pool.read(index, slots, key_len)  # [G, Hkv, K, hd]
            if self.groups > 1:
                k = k.repeat_interleave(self.groups, dim=1)
                v = v.repeat_interleave(self.groups, dim=1)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                               scale=getattr(attn, "scaling", pool.head_dim ** -0.5))
            o = o.transpose(1, 2).contiguous().reshape(*ids.shape, -1).contiguous()  # [G, W, H*hd]
            h = residual + attn.o_proj(o)
            residual = h
            h = residual + layer.mlp(layer.post_attention_layernorm(h))
        return body.norm(h)  # [G, W, D]
