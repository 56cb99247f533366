"""The one seam between algorithms and kernels (DESIGN §6).

Every caller goes through these functions. On CUDA tensors with Triton importable they run
the Triton kernel; otherwise (CPU, or ``A2D_GUARD_DISABLE_TRITON=1``) the plain-torch
reference from the same kernel module. ``triton_kernels`` is imported lazily, here only.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover - the kernel modules are imported lazily, below
    from a2d_guard.triton_kernels.qlr_matmul import PackedMatrix
    from a2d_guard.triton_kernels.token_stats import TokenStats


@functools.lru_cache(maxsize=1)
def triton_available() -> bool:
    if os.environ.get("A2D_GUARD_DISABLE_TRITON", "") not in ("", "0"):
        return False
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True


def use_kernel(t: torch.Tensor) -> bool:
    """Kernels run on CUDA tensors, or anywhere under TRITON_INTERPRET=1 when forced."""
    if t.is_cuda:
        return triton_available()
    return os.environ.get("A2D_GUARD_FORCE_TRITON", "") not in ("", "0") and triton_available()


def random_confidence(seed, step, position) -> torch.Tensor:
    """Per-position uniform confidence for ``remasking="random"`` (float64).

    Drawn at the hash index reserved for it (``rng.RANDOM_CONFIDENCE_INDEX``), so it never
    collides with the Gumbel noise of a token and matches what ``token_stats`` returns.
    """
    from a2d_guard.triton_kernels.rng import RANDOM_CONFIDENCE_INDEX, counter_uniform_ref

    return counter_uniform_ref(seed, step, position, RANDOM_CONFIDENCE_INDEX)


def counter_uniform(seed, step, position, index, dtype=torch.float64) -> torch.Tensor:
    """Uniform noise in (0, 1) from (seed, step, position, index); see ``triton_kernels.rng``."""
    from a2d_guard.triton_kernels.rng import counter_uniform_ref

    return counter_uniform_ref(seed, step, position, index, dtype=dtype)


def candidate_index(candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row -> (sequence, position) map of the True entries of ``candidates`` [B, L] bool.

    Row-major order (sequence by sequence, left to right), so each sequence's candidates
    are one contiguous, position-sorted run of rows: the engine slices per-sequence
    top-k and the monitor's leftmost row from it. Returns (seq_idx [M], pos_idx [M]) int64.
    On CUDA this syncs once (M is data-dependent).
    """
    if not isinstance(candidates, torch.Tensor) or candidates.dim() != 2 or (
        candidates.dtype != torch.bool
    ):
        got = (f"{candidates.dim()}-D {candidates.dtype} tensor"
               if isinstance(candidates, torch.Tensor) else type(candidates).__name__)
        raise ValueError(f"candidates must be a 2-D [B, L] bool tensor, got {got}")
    seq_idx, pos_idx = candidates.nonzero(as_tuple=True)  # [M], [M] row-major
    return seq_idx, pos_idx


def gather_rows(hidden: torch.Tensor, seq_idx: torch.Tensor, pos_idx: torch.Tensor,
                *, validate: bool = True) -> torch.Tensor:
    """hidden[seq_idx, pos_idx]: the candidate rows, so the LM head runs on M rows, not B·L.

    hidden [B, L, D] any float dtype; seq_idx, pos_idx [M] int64 on hidden's device
    (see ``candidate_index``). Returns [M, D] in hidden's dtype. ``validate=False`` skips
    the index range check (one host sync on CUDA) when the indices come from
    ``candidate_index`` on the same [B, L] shape.
    """
    from a2d_guard.triton_kernels import gather_rows as kernels

    if use_kernel(hidden):
        return kernels.gather_rows(hidden, seq_idx, pos_idx, validate=validate)
    return kernels.gather_rows_ref(hidden, seq_idx, pos_idx, validate=validate)


def token_stats(logits: torch.Tensor, eos_id: int, temperature: torch.Tensor,
                seeds: torch.Tensor, steps: torch.Tensor, positions: torch.Tensor,
                *, validate: bool = True, ban_eos: torch.Tensor | None = None) -> TokenStats:
    """x0 and every confidence of each candidate row in one pass over its logits.

    logits [M, V] (fp16/bf16/fp32/fp64, after logit_bias, untempered); per row [M]:
    temperature (float; pass float64 to match the reference sampler's Python-float
    temperature bit for bit), seeds, steps, positions (int64: the counters of the Gumbel
    noise). Returns ``TokenStats`` (x0 int64; p_x0, margin, neg_entropy, p_eos, rand_conf
    float64, all [M]); see ``a2d_guard.triton_kernels.token_stats`` for the equations. The
    CPU reference is float64 and equals the reference sampler bit for bit; the CUDA kernel
    accumulates in float32 (float64 for float64 logits), so it matches to rounding and x0
    may differ only where two tokens' scores tie to rounding. ``validate=False`` skips the
    temperature value check (one host sync on CUDA). ``ban_eos`` [M] bool (None: no row):
    those rows never choose EOS as x0, while every statistic, p_x0 included, reads the
    unbanned softmax (the ``a2d`` decode protocol).
    """
    from a2d_guard.triton_kernels import token_stats as kernels

    args = (logits, eos_id, temperature, seeds, steps, positions)
    if use_kernel(logits):
        return kernels.token_stats(*args, validate=validate, ban_eos=ban_eos)
    return _token_stats_ref_in_chunks(kernels, *args, validate=validate, ban_eos=ban_eos)


REF_CHUNK_BYTES = 64 << 20  # float64 [rows, V] working set of one chunk of the torch reference


def _token_stats_ref_in_chunks(kernels, logits, eos_id, temperature, seeds, steps, positions, *, validate,
                               ban_eos):
    """The torch reference over slices of rows, so its float64 [M, V] temporaries (softmax, the
    banned copy, Gumbel noise: several at once) stay within ``REF_CHUNK_BYTES`` each.

    Why: at LLaDA's vocabulary (126,464) 256 candidate rows make each temporary 259 MB, and
    that, not the model, set the engine's peak memory on CPU. Every statistic is per row, so
    slicing changes no bit (tested)."""
    m, v = logits.shape
    rows = max(1, REF_CHUNK_BYTES // (8 * max(v, 1)))
    if m <= rows:
        return kernels.token_stats_ref(logits, eos_id, temperature, seeds, steps, positions, validate=validate,
                                       ban_eos=ban_eos)
    parts = [kernels.token_stats_ref(logits[i:i + rows], eos_id, temperature[i:i + rows], seeds[i:i + rows],
                                     steps[i:i + rows], positions[i:i + rows], validate=validate,
                                     ban_eos=None if ban_eos is None else ban_eos[i:i + rows])
             for i in range(0, m, rows)]
    return type(parts[0])(*(torch.cat(field) for field in zip(*parts, strict=True)))


def packed_matrix(qweight: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor, bits: int, group_size: int,
                  cols: int) -> PackedMatrix:
    """A group-quantized matrix as ``qlr_matmul`` reads it (``triton_kernels.qlr_matmul.PackedMatrix``)."""
    from a2d_guard.triton_kernels.qlr_matmul import PackedMatrix

    return PackedMatrix(qweight, scales, offsets, bits, group_size, cols)


def qlr_matmul(x: torch.Tensor, q: PackedMatrix, left=None, right=None, bias=None) -> torch.Tensor:
    """x (Q + L R)ᵀ + b from Q's packed codes, never building the dense weight (ODLRI, W ≈ Q + L R).

    x [..., K] -> [..., N] in x's dtype; ``left`` [N, r] / ``right`` [r, K] are dense tensors or
    ``PackedMatrix`` (4-bit factors). CUDA with Triton (fp16/bf16/fp32): the fused kernel;
    otherwise (CPU, float64) the torch reference, which dequantizes Q a few rows at a time.
    Forward only: ``compress.qlr_autograd`` adds the backward pass for training.
    """
    from a2d_guard.triton_kernels import qlr_matmul as kernels

    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])  # [M, K]
    if use_kernel(x2) and x2.dtype in kernels.KERNEL_DTYPES:
        y = kernels.qlr_matmul(x2, q, left, right, bias)
    else:
        y = kernels.qlr_matmul_ref(x2, q, left, right, bias)
    return y.reshape(*lead, q.rows)


def qlr_matmul_t(g: torch.Tensor, q: PackedMatrix, left=None, right=None) -> torch.Tensor:
    """g (Q + L R): the input gradient of ``qlr_matmul``, Q dequantized in row tiles.  g [M, N] -> [M, K]

    The torch tiled reference on every device (a Triton backward kernel is not written yet:
    training on a compressed base is bound by the forward passes it shares with serving)."""
    from a2d_guard.triton_kernels import qlr_matmul as kernels

    return kernels.qlr_matmul_t_ref(g, q, left, right)
