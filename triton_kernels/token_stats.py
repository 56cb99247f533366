"""Fused token statistics: x0, p(x0), margin, -entropy and p(EOS) in one pass per vocab row.

Why fused: the engine only needs a handful of numbers per candidate row (the token to
commit, its confidence under each remasking mode, and the A2D monitor's p(EOS)), yet the
reference computes a full float64 softmax tensor over every position. Here one program
reads each row of logits once, tile by tile, with an *online softmax* (Milakov & Gimelshein
2018): keep the running max m and the running sum s = Σ exp(x_i - m), rescale both by
exp(m_old - m_new) whenever the max grows, and keep everything else as running maxima or
rescaled sums, so no [M, V] tensor is ever written.

Per row (x = logits, p = softmax(x), all untempered; T = temperature):
  x0          = argmax_i x_i                  if T == 0
              = argmax_i (x_i + T * g_i)      if T > 0, g_i = -log(-log u_i) (Gumbel-max:
                argmax of logits + Gumbel noise is a sample from softmax(x / T))
                over i != eos_id on rows with ban_eos (the A2D authors' decode, protocol
                ``a2d``: EOS can never be chosen, but every number below still comes
                from the unbanned softmax, so p_x0 is the chosen token's unbanned p)
  p_x0        = p[x0] = exp(x[x0] - m) / s
  margin      = p_top1 - p_top2 = (exp(x_(1) - m) - exp(x_(2) - m)) / s
  neg_entropy = Σ p_i log p_i = t / s - log s,  t = Σ exp(x_i - m) (x_i - m)
  p_eos       = exp(x[eos_id] - m) / s
  rand_conf   = u(seed, step, position, RANDOM_CONFIDENCE_INDEX)
with u_i = counter_uniform(seed, step, position, i) (``rng.py``), so the sample of a row
depends only on its own counters, never on the batch or the tile order.

``token_stats_ref`` computes the same in float64 with exactly the operations of the
reference sampler (``diffusion/confidence.py``), so the engine's CPU path reproduces the
oracle bit for bit; the kernel accumulates in float32 (float64 for float64 logits) and
matches the ref to rounding. Argmax ties resolve to the lowest index, as ``torch.argmax``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .rng import RANDOM_CONFIDENCE_INDEX, counter_uniform_ref

try:
    import triton
    import triton.language as tl

    from .rng import counter_finish_tl, counter_prefix_tl, counter_uniform_tl
except ImportError:  # pragma: no cover - Triton is Linux-only; the torch ref still works
    triton = None

LOGIT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
MAX_BLOCK_V = 4096


class TokenStats(NamedTuple):
    """Per-row results, all [M]: x0 int64, the rest float64 (from both ref and kernel)."""

    x0: torch.Tensor  # [M] int64 token to commit
    p_x0: torch.Tensor  # [M] softmax prob of x0 (low_confidence)
    margin: torch.Tensor  # [M] top1 - top2 prob (margin)
    neg_entropy: torch.Tensor  # [M] Σ p log p = -H (entropy; higher = more confident)
    p_eos: torch.Tensor  # [M] softmax prob of eos_id (A2D monitor)
    rand_conf: torch.Tensor  # [M] u at RANDOM_CONFIDENCE_INDEX (random)


# --- checks shared by the kernel launcher and the ref --------------------------------------


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dim()}-D {t.dtype} tensor of shape {tuple(t.shape)} on {t.device}"
    return repr(type(t).__name__)


def _check_args(logits, eos_id, temperature, seeds, steps, positions, validate: bool, ban_eos=None) -> None:
    """Raise ValueError naming the bad argument; ``validate`` also checks temperature values
    (one host sync on CUDA)."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ValueError(f"logits must be a 2-D [M, V] tensor, got {_describe(logits)}")
    if logits.dtype not in LOGIT_DTYPES:
        raise ValueError(f"logits dtype {logits.dtype} is not supported; use one of "
                         f"{', '.join(str(d) for d in LOGIT_DTYPES)}")
    m, v = logits.shape
    if v == 0:
        raise ValueError("logits has an empty vocab dimension (V = 0)")
    if isinstance(eos_id, bool) or not isinstance(eos_id, int) or not 0 <= eos_id < v:
        raise ValueError(f"eos_id must be an int in [0, {v}) for V = {v}, got {eos_id!r}")
    for name, t, kind in (("temperature", temperature, "float"), ("seeds", seeds, "int64"),
                          ("steps", steps, "int64"), ("positions", positions, "int64")):
        if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.shape[0] != m:
            raise ValueError(f"{name} must be a 1-D [M] tensor with M = {m} (one per logits "
                             f"row), got {_describe(t)}")
        ok = t.is_floating_point() if kind == "float" else t.dtype == torch.int64
        if not ok:
            raise ValueError(f"{name} must be a {kind} tensor, got {t.dtype}")
        if t.device != logits.device:
            raise ValueError(f"{name} is on {t.device} but logits is on {logits.device}; "
                             "move them to one device")
    if ban_eos is not None and (not isinstance(ban_eos, torch.Tensor) or ban_eos.dtype != torch.bool
                                or ban_eos.shape != (m,) or ban_eos.device != logits.device):
        raise ValueError(f"ban_eos must be None or a 1-D [M] bool tensor with M = {m} on {logits.device}, "
                         f"got {_describe(ban_eos)}")
    if validate and m > 0 and not bool(((temperature >= 0) & temperature.isfinite()).all()):
        raise ValueError("temperature must be finite and >= 0 for every row "
                         "(0 = greedy argmax, > 0 = Gumbel-max sampling)")


# --- torch reference ------------------------------------------------------------------------


def token_stats_ref(logits: torch.Tensor, eos_id: int, temperature: torch.Tensor,
                    seeds: torch.Tensor, steps: torch.Tensor, positions: torch.Tensor,
                    *, validate: bool = True, ban_eos: torch.Tensor | None = None) -> TokenStats:
    """Float64 torch reference, op for op the reference sampler's (``diffusion/confidence.py``:
    ``choose_x0`` and ``confidence``), so the engine's CPU path equals the oracle bit for bit.
    Rows with T > 0 get Gumbel noise; greedy rows skip it. ``ban_eos`` [M] bool: those rows
    choose x0 with EOS's logit at -inf, as the ``a2d`` protocol's decoder does."""
    _check_args(logits, eos_id, temperature, seeds, steps, positions, validate, ban_eos)
    m, v = logits.shape
    x = logits.to(torch.float64)  # [M, V]
    probs = torch.softmax(x, dim=-1)  # [M, V] unbanned: every statistic reads it
    if ban_eos is not None:
        eos_col = torch.arange(v, device=x.device) == eos_id  # [V]
        x = x.masked_fill(ban_eos[:, None] & eos_col[None, :], float("-inf"))  # [M, V] scores of x0 only
    x0 = x.argmax(dim=-1) if m > 0 else torch.zeros(0, dtype=torch.int64, device=x.device)
    hot = (temperature > 0).nonzero().squeeze(-1)  # [H] rows that sample
    if hot.numel() > 0:
        tokens = torch.arange(v, dtype=torch.int64)[None, :]  # [1, V]
        u = counter_uniform_ref(seeds[hot].cpu()[:, None], steps[hot].cpu()[:, None],
                                positions[hot].cpu()[:, None], tokens)  # [H, V]
        g = (-torch.log(-torch.log(u))).to(x.device)  # [H, V] standard Gumbel
        t_hot = temperature[hot].to(torch.float64)[:, None]  # [H, 1]
        x0[hot] = (x[hot] + t_hot * g).argmax(dim=-1)
    p_x0 = probs.gather(-1, x0[:, None]).squeeze(-1)  # [M]
    if v > 1:
        top2 = probs.topk(2, dim=-1).values  # [M, 2]
    else:
        top2 = torch.cat([probs, torch.zeros_like(probs)], -1)  # [M, 2]
    margin = top2[:, 0] - top2[:, 1]  # [M]
    neg_entropy = (probs * torch.log(probs.clamp_min(1e-300))).sum(-1)  # [M]
    p_eos = probs[:, eos_id]  # [M]
    rand_conf = counter_uniform_ref(seeds.cpu(), steps.cpu(), positions.cpu(),
                                    RANDOM_CONFIDENCE_INDEX).to(x.device)  # [M]
    return TokenStats(x0, p_x0, margin, neg_entropy, p_eos, rand_conf)


# --- Triton kernel ----------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _gumbel_tl(h, ACC: tl.constexpr):
        """Standard Gumbel g = -log(e), e = -log(u), u = (2k + 1) / 2^25, k = h >> 8.

        u is the same value as ``counter_uniform_ref`` ((k + 0.5) / 2^24), but float32 cannot
        hold it near 1 (it would round to 1 and give g = +inf, a token that always wins).
        So e is computed from the exact w = 2k + 1: for u <= 7/8, e = -log(u); above,
        with v = 1 - u (exact), e = -log(1 - v) = 2 atanh(z), z = v / (2 - v) <= 1/15,
        summed as z (1 + z^2/3 + ... + z^14/15): the truncation error z^16 / 17 is below
        float64 precision, and no log of a number near 1 is needed.
        """
        w = (h >> 8).to(tl.int32) * 2 + 1  # [BLOCK] odd, in [1, 2^25)
        u = w.to(ACC) * (1.0 / 33554432.0)
        vv = (33554432 - w).to(ACC) * (1.0 / 33554432.0)  # 1 - u
        z = vv / (2.0 - vv)
        z2 = z * z
        one = tl.full((), 1.0, ACC)  # coefficients divided in ACC (a literal 1/3 is float32)
        poly = one / 15
        poly = poly * z2 + one / 13
        poly = poly * z2 + one / 11
        poly = poly * z2 + one / 9
        poly = poly * z2 + one / 7
        poly = poly * z2 + one / 5
        poly = poly * z2 + one / 3
        poly = poly * z2 + one
        e = tl.where(w > 29360128, 2.0 * z * poly, -tl.log(u))  # 29360128 = 7/8 * 2^25
        return -tl.log(e)

    @triton.jit
    def _token_stats_kernel(
        logits_ptr, temp_ptr, seed_ptr, step_ptr, pos_ptr, ban_ptr,
        x0_ptr, px0_ptr, margin_ptr, negent_ptr, peos_ptr, rand_ptr,
        V, eos_id, eos_off, stride_m, stride_v,
        BLOCK_V: tl.constexpr, ACC: tl.constexpr,
    ):
        """One program per row; loops over V in BLOCK_V tiles keeping only running scalars."""
        row = tl.program_id(0).to(tl.int64)  # int64 before multiplying strides
        row_ptr = logits_ptr + row * stride_m
        temp = tl.load(temp_ptr + row).to(ACC)
        seed = tl.load(seed_ptr + row)
        step = tl.load(step_ptr + row)
        pos = tl.load(pos_ptr + row)
        ban = tl.load(ban_ptr + row) != 0  # EOS may not be x0 on this row (protocol a2d)
        prefix = counter_prefix_tl(seed, step, pos)  # row's hash state, token index mixed in below

        neg_inf = float("-inf")
        m = tl.full((), neg_inf, ACC)  # running max of x
        s = tl.full((), 0.0, ACC)  # Σ exp(x - m)
        t = tl.full((), 0.0, ACC)  # Σ exp(x - m) (x - m)
        v1 = tl.full((), neg_inf, ACC)  # largest logit
        v2 = tl.full((), neg_inf, ACC)  # second largest logit (with multiplicity)
        best = tl.full((), neg_inf, ACC)  # best score x (+ T g)
        best_x = tl.full((), neg_inf, ACC)  # logit at the best score
        best_i = tl.full((), 0, tl.int32)  # its index (0 if the row is all -inf, as torch)
        for start in range(0, V, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)  # [BLOCK_V]
            valid = cols < V
            x = tl.load(row_ptr + cols.to(tl.int64) * stride_v, mask=valid,
                        other=neg_inf).to(ACC)  # [BLOCK_V], tail = -inf

            # top-2 logits: merge the tile's top-2 into the running top-2. No `& valid` in
            # the index searches: tail columns come after every valid one, so min() never
            # picks a tail column over a valid column with the same value.
            t1 = tl.max(x, axis=0)
            i1 = tl.min(tl.where(x == t1, cols, V), axis=0)
            t2 = tl.max(tl.where(cols == i1, neg_inf, x), axis=0)
            v2 = tl.maximum(tl.minimum(v1, t1), tl.maximum(v2, t2))
            v1 = tl.maximum(v1, t1)

            # online softmax: rescale s and t to the new max, with no inf - inf anywhere
            # (even in branches tl.where discards) so -inf logits and rows stay NaN-free
            m_new = tl.maximum(m, t1)
            m_safe = tl.where(m_new > neg_inf, m_new, 0.0)
            alpha = tl.exp(m - m_safe)  # exp(m_old - m_new); 0 while m_old == -inf
            shift = tl.where(m > neg_inf, m, m_safe) - m_safe  # m_old - m_new (0 while s == 0)
            d = x - m_safe  # [BLOCK_V]
            e = tl.exp(d)  # [BLOCK_V], 0 on the tail and at -inf logits
            # e * d with d clamped finite: 0 (not 0 * -inf = NaN) where e == 0
            t = alpha * (t + s * shift) + tl.sum(e * tl.maximum(d, -3.0e38), axis=0)
            s = alpha * s + tl.sum(e, axis=0)
            m = m_new

            # argmax of the score; later tiles only win on a strictly larger score, so ties
            # go to the lowest index. Greedy rows reuse the top-1 (no noise, no extra pass)
            # unless EOS is banned: then the score is x with EOS at -inf (p_x0 still reads x).
            xa = tl.where(ban & (cols == eos_id), neg_inf, x)  # [BLOCK_V]
            if temp > 0:
                score = xa + temp * _gumbel_tl(counter_finish_tl(prefix, cols), ACC)  # [BLOCK_V]
                sb = tl.max(score, axis=0)
                ib = tl.min(tl.where(score == sb, cols, V), axis=0)
                xb = tl.max(tl.where(cols == ib, x, neg_inf), axis=0)
            elif ban:
                sb = tl.max(xa, axis=0)
                ib = tl.min(tl.where(xa == sb, cols, V), axis=0)
                xb = sb
            else:
                sb = t1
                ib = i1
                xb = t1
            better = sb > best
            best = tl.where(better, sb, best)
            best_i = tl.where(better, ib, best_i)
            best_x = tl.where(better, xb, best_x)

        m_safe = tl.where(m > neg_inf, m, 0.0)
        x_eos = tl.load(row_ptr + eos_off).to(ACC)
        tl.store(x0_ptr + row, best_i.to(tl.int64))
        tl.store(px0_ptr + row, (tl.exp(best_x - m_safe) / s).to(tl.float64))
        tl.store(margin_ptr + row,
                 ((tl.exp(v1 - m_safe) - tl.exp(v2 - m_safe)) / s).to(tl.float64))
        tl.store(negent_ptr + row, (t / s - tl.log(s)).to(tl.float64))
        tl.store(peos_ptr + row, (tl.exp(x_eos - m_safe) / s).to(tl.float64))
        rand_index = tl.full((), 0xFFFFFFFF, tl.uint32)  # rng.RANDOM_CONFIDENCE_INDEX
        tl.store(rand_ptr + row, counter_uniform_tl(seed, step, pos, rand_index))


def token_stats(logits: torch.Tensor, eos_id: int, temperature: torch.Tensor,
                seeds: torch.Tensor, steps: torch.Tensor, positions: torch.Tensor,
                *, validate: bool = True, ban_eos: torch.Tensor | None = None, block_v: int | None = None,
                num_warps: int | None = None) -> TokenStats:
    """Launch the fused kernel: one program per row of ``logits`` [M, V].

    ``ban_eos`` [M] bool (None: no row): as in ``token_stats_ref``.
    ``block_v`` (a power of two) is the vocab tile; by default min(next_pow2(V), 4096).
    Tests pass a small one so the online (multi-tile) path runs on tiny V.
    """
    if triton is None:
        raise ValueError("token_stats needs Triton; call token_stats_ref instead")
    _check_args(logits, eos_id, temperature, seeds, steps, positions, validate, ban_eos)
    _check_runnable(logits)
    m, v = logits.shape
    if v >= 2**31 - 1:
        raise ValueError(f"V = {v} does not fit the kernel's int32 token index")
    if block_v is None:
        block_v = min(triton.next_power_of_2(v), MAX_BLOCK_V)
    if block_v < 16 or block_v & (block_v - 1):
        raise ValueError(f"block_v must be a power of two >= 16, got {block_v}")
    if num_warps is None:
        num_warps = 8 if block_v >= 2048 else 4
    dev = logits.device
    x0 = torch.empty(m, dtype=torch.int64, device=dev)  # [M]
    outs = [torch.empty(m, dtype=torch.float64, device=dev) for _ in range(5)]  # 5 x [M]
    if m == 0:
        return TokenStats(x0, *outs)
    acc = tl.float64 if logits.dtype == torch.float64 else tl.float32
    ban = (torch.zeros(m, dtype=torch.int8, device=dev) if ban_eos is None
           else ban_eos.to(torch.int8).contiguous())  # [M]
    temperature, seeds, steps, positions = (
        a.contiguous() for a in (temperature, seeds, steps, positions))
    _token_stats_kernel[(m,)](
        logits, temperature, seeds, steps, positions, ban, x0, *outs,
        v, eos_id, eos_id * logits.stride(1), logits.stride(0), logits.stride(1),
        BLOCK_V=block_v, ACC=acc, num_warps=num_warps,
    )
    return TokenStats(x0, *outs)


def _check_runnable(t: torch.Tensor) -> None:
    """CPU tensors only run under the interpreter, which Triton picks when the kernel is
    defined; say how to fix it instead of failing deep inside Triton."""
    if not t.is_cuda and type(_token_stats_kernel).__name__ != "InterpretedFunction":
        raise ValueError(
            f"the Triton kernel needs CUDA tensors, got {t.device}; use token_stats_ref, or set "
            "TRITON_INTERPRET=1 before a2d_guard.triton_kernels is imported"
        )
