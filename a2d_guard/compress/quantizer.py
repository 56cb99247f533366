"""Group-wise uniform quantization of a weight matrix, with LDLQ/GPTQ error feedback.

Format (per output row, per group of ``group_size`` consecutive input columns):
``w ≈ code · scale + offset`` with integer ``code`` in ``[0, 2**bits - 1]``; ``scale`` is the
group's step ((max - min) / (2**bits - 1)) and ``offset`` its minimum. Asymmetric min-max
grids waste no level on an empty side of a skewed group, which matters at 2 bits.

Error feedback (LDLQ of QuIP, arXiv 2307.13304; GPTQ, arXiv 2210.17323, Algorithm 1): columns
are rounded left to right and the rounding error of column j is pushed onto the columns not
yet rounded through the inverse Hessian's Cholesky factor, so the *activation-aware* error
‖(W - Q) Xᵀ‖_F (H = XᵀX) is what gets minimised, not the plain weight error. This is the
Q-step of the CALDERA/ODLRI loop.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

AUTO_GROUP_SIZES = (128, 64, 32, 16, 8)


def auto_group_size(in_features: int) -> int:
    """The largest of 128/64/32/16/8 that divides ``in_features`` (the whole row if none does)."""
    return next((g for g in AUTO_GROUP_SIZES if in_features % g == 0), in_features)


@dataclass
class QuantizedMatrix:
    """Integer codes and per-group affine parameters of one [out, in] matrix."""

    codes: torch.Tensor  # [out, in] uint8, values in [0, 2**bits)
    scales: torch.Tensor  # [out, in // group_size] float
    offsets: torch.Tensor  # [out, in // group_size] float
    bits: int
    group_size: int

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.codes, self.scales, self.offsets, self.group_size, dtype)


def dequantize(
    codes: torch.Tensor,  # [out, in] integer
    scales: torch.Tensor,  # [out, G]
    offsets: torch.Tensor,  # [out, G]
    group_size: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """codes · scale + offset, broadcast over each group -> [out, in] in ``dtype``."""
    out, n = codes.shape
    c = codes.to(dtype).reshape(out, n // group_size, group_size)  # [out, G, g]
    w = c * scales.to(dtype).unsqueeze(-1) + offsets.to(dtype).unsqueeze(-1)
    return w.reshape(out, n)


def group_params(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max grid of each row of ``w`` [out, g] -> (scale [out], offset [out]).

    A constant group gets scale 1 (any positive value works: every code decodes exactly).
    """
    lo = w.min(dim=1).values
    hi = w.max(dim=1).values
    scale = (hi - lo) / ((1 << bits) - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale, lo


def round_to_grid(w: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, bits: int) -> torch.Tensor:
    """Nearest code of ``w`` [out, k] on the grids (scale, offset) [out] -> codes [out, k] float."""
    return torch.clamp(torch.round((w - offset[:, None]) / scale[:, None]), 0, (1 << bits) - 1)


def quantize_rtn(w: torch.Tensor, bits: int, group_size: int) -> QuantizedMatrix:
    """Round-to-nearest, group-wise. ``w`` [out, in] -> QuantizedMatrix.

    Error bound (tested): every entry is within scale/2 of its dequantized value.
    """
    out, n = w.shape
    _check(n, bits, group_size)
    w = w.float()
    groups = w.reshape(out * (n // group_size), group_size)  # one row per (row, group)
    scale, offset = group_params(groups, bits)
    codes = round_to_grid(groups, scale, offset, bits)
    return QuantizedMatrix(
        codes=codes.reshape(out, n).to(torch.uint8),
        scales=scale.reshape(out, n // group_size),
        offsets=offset.reshape(out, n // group_size),
        bits=bits,
        group_size=group_size,
    )


def hessian_inverse_factor(h: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """Upper Cholesky factor U of (H + λI)⁻¹ with λ = damp · mean(diag H)  # [n, n]

    GPTQ's trick: the sequence of per-column updates of LDLQ equals reading rows of this U.
    Dead inputs (diag 0: a channel that never fired) get diag 1 so H stays invertible; their
    weights do not matter for the activation-aware error.
    """
    h = h.double().clone()
    n = h.shape[0]
    diag = torch.diagonal(h)
    dead = diag <= 0
    diag[dead] = 1.0
    diag += damp * diag.mean()
    idx = torch.arange(n, device=h.device)
    for _ in range(4):  # grow damping if the calibration H is numerically singular
        chol, info = torch.linalg.cholesky_ex(h)
        if int(info) == 0:
            break
        h[idx, idx] += damp * diag.mean()
    else:
        raise RuntimeError("calibration Hessian is not positive definite even after damping")
    h_inv = torch.cholesky_inverse(chol)
    return torch.linalg.cholesky(h_inv, upper=True)


def quantize_ldlq(
    w: torch.Tensor,  # [out, in]
    h: torch.Tensor,  # [in, in] = XᵀX / N
    bits: int,
    group_size: int,
    damp: float = 0.01,
    block_size: int = 128,
) -> QuantizedMatrix:
    """LDLQ/GPTQ: round columns left to right, feeding each column's error forward.

    For column j with inverse-Hessian Cholesky row U[j]: e = (w_j - q_j) / U[j, j] and
    W[:, j:] -= e · U[j, j:] (GPTQ's Algorithm 1 with lazy block updates; LDLQ in QuIP's terms).
    A group's grid is fixed when its first column is reached, from the weights as updated
    by the error feedback so far (GPTQ's grouping rule).
    """
    out, n = w.shape
    _check(n, bits, group_size)
    dev = w.device
    w = w.float().clone()
    u = hessian_inverse_factor(h.to(dev), damp).float()  # [n, n]
    dead = torch.diagonal(h.to(dev)) <= 0
    w[:, dead] = 0.0
    codes = torch.zeros(out, n, dtype=torch.uint8, device=dev)
    num_groups = n // group_size
    scales = torch.zeros(out, num_groups, device=dev)
    offsets = torch.zeros(out, num_groups, device=dev)
    maxq = (1 << bits) - 1
    # Blocks aligned to groups when groups are small, so a group's grid sees updated weights.
    block = group_size * max(1, block_size // group_size) if group_size <= block_size else block_size
    scale = offset = None
    with one_cpu_thread(dev):
        for i1 in range(0, n, block):
            i2 = min(i1 + block, n)
            w1 = w[:, i1:i2].clone()  # [out, B]
            err1 = torch.zeros_like(w1)
            u1 = u[i1:i2, i1:i2]
            for i in range(i2 - i1):
                col = i1 + i
                if col % group_size == 0:
                    g = col // group_size
                    grp = torch.cat([w1[:, i : i + group_size], w[:, i2 : col + group_size]], dim=1)
                    scale, offset = group_params(grp, bits)
                    scales[:, g], offsets[:, g] = scale, offset
                x = w1[:, i]
                q = torch.clamp(torch.round((x - offset) / scale), 0, maxq)
                codes[:, col] = q.to(torch.uint8)
                e = (x - (q * scale + offset)) / u1[i, i]
                w1[:, i:] -= e[:, None] * u1[i, i:][None, :]
                err1[:, i] = e
            w[:, i2:] -= err1 @ u[i1:i2, i2:]
    return QuantizedMatrix(codes=codes, scales=scales, offsets=offsets, bits=bits, group_size=group_size)


@contextlib.contextmanager
def one_cpu_thread(device: torch.device):
    """LDLQ's column loop is thousands of tiny ops (and the decomposition's factorisations are
    small): on CPU, fanning each out to worker threads costs more than it saves, far more on a
    busy machine. The thread count is restored after."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check(n: int, bits: int, group_size: int) -> None:
    if bits not in (2, 3, 4, 8):
        raise ValueError(f"bits must be 2, 3, 4 or 8, got {bits}")
    if group_size <= 0 or n % group_size:
        raise ValueError(f"group size {group_size} does not divide the input dimension {n}")
