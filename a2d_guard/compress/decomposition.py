"""W ≈ Q + L R by alternating minimisation, with zero / svd / ODLRI initialisation.

Objective (CALDERA, arXiv 2405.18886; ODLRI, arXiv 2506.02077): the activation-aware error
‖(W - Q - L R) Xᵀ‖_F² = N · tr(E H Eᵀ), E = W - Q - L R, H = XᵀX / N from the calibration
activations X [N, in] of this layer.

Loop (the joint-optimisation framework the ODLRI paper unifies):  for t = 1..T:
    Q_t      ← quantize(W - L_{t-1} R_{t-1})          (LDLQ under H: quantizer.quantize_ldlq)
    L_t R_t  ← argmin_{rank r} ‖(W - Q_t - L R) Xᵀ‖    (closed form: SVD after whitening)
The rank-r step is exact: with H = C Cᵀ (Cholesky), ‖E Xᵀ‖_F = ‖E C‖_F, so the best L R is
the truncated SVD of (W - Q) C mapped back by C⁻¹ (Eckart–Young in the whitened space).

Initialisations of L₀R₀:
- ``zero``: L₀R₀ = 0. Q is fitted first and takes over most of W (quantize-first methods).
- ``svd``: the activation-aware rank-r fit of W itself (low-rank-first methods).
- ``odlri`` (the paper's initialisation): take the k input channels with the largest diag(H) (activation
  outliers), H_o = H restricted to those channels (zero elsewhere), and fit L₀R₀ to W under
  H_o + εI. L R is thereby given the role of carrying the outlier-sensitive weights, so the
  residual that Q must cover has a smaller range (smaller quantization scale) and the
  quantization error is not amplified by the outlier activations.

4-bit factors (``lr_bits=4``, the paper's storage of L and R; CALDERA, arXiv 2405.18886,
quantizes them inside its LPLR step): after the loop, L and R are rounded group-wise (RTN, grids
along each factor's input dimension, ``auto_group_size``), and Q takes one more LDLQ step on
W - L̂ R̂, so Q absorbs the factors' rounding error instead of it adding to the final error.
The recorded history ends with the error of that (Q, L̂, R̂), the one that is stored.

Monotonicity: the LR step never raises the error for a given Q (up to the tiny damping
that makes H invertible), but LDLQ is a heuristic, so a whole round *can*. A round that
raises the error is rejected and the loop stops at the previous iterate: the recorded
history (error after each accepted round) is non-increasing and the result is its last.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from a2d_guard.compress.quantizer import (
    QuantizedMatrix,
    auto_group_size,
    one_cpu_thread,
    quantize_ldlq,
    quantize_rtn,
)

INITS = ("zero", "svd", "odlri")


@dataclass(frozen=True)
class DecompositionConfig:
    bits: int = 2
    rank: int = 16
    init: str = "odlri"
    outliers: int | None = None  # k: outlier input channels for ODLRI; None: rank // 16, at least 1
    iters: int = 10  # T: alternating (Q, LR) rounds
    group_size: int = 128
    error_feedback: bool = True  # LDLQ (True) or round-to-nearest (False) for the Q step
    quant_damp: float = 0.01  # GPTQ damping of H in the Q step, relative to mean(diag H)
    lr_damp: float = 1e-6  # damping of H in the LR step (keeps it exact in practice)
    odlri_eps: float = 1e-2  # ε of H_o + εI, relative to mean(diag H)
    tol: float = 1e-6  # relative slack when comparing errors
    lr_bits: int = 16  # 16: float L R; 4: L and R group-quantized at 4 bits after the loop


@dataclass
class Decomposition:
    q: QuantizedMatrix
    left: torch.Tensor  # L [out, r]
    right: torch.Tensor  # R [r, in]
    history: list[float] = field(default_factory=list)  # relative act. error after each round
    init_error: float = float("nan")  # relative act. error of L₀R₀ alone (W - L₀R₀)
    left_q: QuantizedMatrix | None = None  # L̂ [out, r] at lr_bits (None: float L R)
    right_q: QuantizedMatrix | None = None  # R̂ [r, in] at lr_bits

    @property
    def act_err(self) -> float:
        return self.history[-1]

    @property
    def quant_scale(self) -> float:
        """Mean quantization step of Q over all groups (ODLRI reports it shrinking)."""
        return float(self.q.scales.float().mean())

    def reconstruct(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.q.dequantize(dtype) + self.left.to(dtype) @ self.right.to(dtype)


def act_error_sq(e: torch.Tensor, h: torch.Tensor) -> float:
    """tr(E H Eᵀ) = ‖E Xᵀ‖_F² / N.  e [out, in], h [in, in]."""
    e = e.double()
    return float(((e @ h.double()) * e).sum())


def relative_act_error(w: torch.Tensor, w_hat: torch.Tensor, h: torch.Tensor) -> float:
    """‖(W - Ŵ) Xᵀ‖_F / ‖W Xᵀ‖_F: the metric the paper reports per layer."""
    denom = act_error_sq(w, h)
    return (act_error_sq(w - w_hat, h) / max(denom, 1e-30)) ** 0.5


def damped_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Lower Cholesky factor of H + λI in float64, λ = damp · mean(diag H).  [n, n]

    A calibration H summed in float32 over few (or repeated, e.g. all-mask) tokens can be
    singular or very slightly indefinite; λ is raised tenfold until the factorisation holds.
    """
    hd = h.double()
    n = hd.shape[0]
    eye = torch.eye(n, dtype=torch.float64, device=hd.device)
    scale = max(float(torch.diagonal(hd).clamp_min(0).mean()), 1e-12)
    lam = damp * scale
    for _ in range(12):
        chol, info = torch.linalg.cholesky_ex(hd + max(lam, 1e-12 * scale) * eye)
        if int(info) == 0:
            return chol
        lam = max(lam * 10, 1e-9 * scale)
    raise RuntimeError("calibration Hessian is not positive semi-definite even after damping")


def weighted_lowrank(a: torch.Tensor, h: torch.Tensor, rank: int, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin over L [out, r], R [r, in] of tr((A - L R) H (A - L R)ᵀ), H damped by damp·mean(diag).

    Whitening: H + λI = C Cᵀ; SVD of A C = U S Vᵀ; L = U_r S_r^½, R = S_r^½ V_rᵀ C⁻¹.
    The split of S between L and R balances their magnitudes (they are trained later).
    """
    out, n = a.shape
    dev = a.device
    if rank == 0:
        return a.new_zeros(out, 0), a.new_zeros(0, n)
    chol = damped_cholesky(h.to(dev), damp)  # [n, n] lower, H + λI = C Cᵀ
    y = a.double() @ chol  # [out, n] whitened
    u, s, vh = torch.linalg.svd(y, full_matrices=False)
    root = s[:rank].sqrt()
    left = u[:, :rank] * root  # [out, r]
    right_white = root[:, None] * vh[:rank]  # [r, n]
    right = torch.linalg.solve_triangular(chol, right_white, upper=False, left=False)  # R C = R_w
    return left.float(), right.float()


def num_outliers(outliers: int | None, rank: int) -> int:
    """k for ODLRI: as given, or the paper's ratio k/r = 16/256 (at least one channel).

    k must stay well below r: L₀R₀ spends about k of its r directions on fitting the outlier
    columns exactly, and after the first Q step the L R step has to keep carrying them, so
    with k = r nothing is left to correct the quantization error elsewhere (measured on
    MiniLM: at r = 16, k = 16 is worse than zero init, k = 1..4 better).
    """
    return outliers if outliers is not None else max(1, rank // 16)


def outlier_hessian(h: torch.Tensor, k: int, eps: float) -> torch.Tensor:
    """H_o + εI: H kept on the k channels with the largest diag(H), zero elsewhere.  [n, n]"""
    n = h.shape[0]
    k = min(k, n)
    top = torch.topk(torch.diagonal(h), k).indices
    h_o = torch.zeros_like(h)
    h_o[top[:, None], top[None, :]] = h[top[:, None], top[None, :]]
    idx = torch.arange(n, device=h.device)
    h_o[idx, idx] += eps * float(torch.diagonal(h).clamp_min(0).mean())
    return h_o


def initial_lowrank(w: torch.Tensor, h: torch.Tensor, cfg: DecompositionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """L₀ [out, r], R₀ [r, in] for ``cfg.init``."""
    out, n = w.shape
    if cfg.init == "zero" or cfg.rank == 0:
        return w.new_zeros(out, cfg.rank), w.new_zeros(cfg.rank, n)
    if cfg.init == "svd":
        return weighted_lowrank(w, h, cfg.rank, cfg.lr_damp)
    if cfg.init == "odlri":
        k = num_outliers(cfg.outliers, cfg.rank)
        return weighted_lowrank(w, outlier_hessian(h, k, cfg.odlri_eps), cfg.rank, 0.0)
    raise ValueError(f"unknown init {cfg.init!r}; use one of {', '.join(INITS)}")


def decompose(w: torch.Tensor, h: torch.Tensor, cfg: DecompositionConfig) -> Decomposition:
    """Run the alternating loop on one weight ``w`` [out, in] with its Hessian ``h`` [in, in]."""
    with one_cpu_thread(w.device):
        return _decompose(w, h, cfg)


def _decompose(w: torch.Tensor, h: torch.Tensor, cfg: DecompositionConfig) -> Decomposition:
    out, n = w.shape
    if cfg.rank < 0 or cfg.rank >= min(out, n):
        raise ValueError(f"rank {cfg.rank} must be in [0, {min(out, n)}) for a {out}x{n} weight")
    if cfg.iters < 1:
        raise ValueError(f"iters must be >= 1, got {cfg.iters}")
    w = w.float()
    h = h.float().to(w.device)
    denom = max(act_error_sq(w, h), 1e-30)

    def rel(q_hat: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> float:
        return (act_error_sq(w - q_hat - left @ right, h) / denom) ** 0.5

    def quantize(a: torch.Tensor) -> QuantizedMatrix:
        if cfg.error_feedback:
            return quantize_ldlq(a, h, cfg.bits, cfg.group_size, damp=cfg.quant_damp)
        return quantize_rtn(a, cfg.bits, cfg.group_size)

    left, right = initial_lowrank(w, h, cfg)
    init_error = rel(torch.zeros_like(w), left, right)
    best: tuple[QuantizedMatrix, torch.Tensor, torch.Tensor] | None = None
    history: list[float] = []
    for _ in range(cfg.iters):
        q = quantize(w - left @ right)  # Q step
        q_hat = q.dequantize()
        if cfg.rank > 0:  # LR step: exact best rank-r fit of the residual W - Q
            left, right = weighted_lowrank(w - q_hat, h, cfg.rank, cfg.lr_damp)
        err = rel(q_hat, left, right)
        if history and err > history[-1] * (1 + cfg.tol):
            break  # this round made it worse: keep the previous iterate
        best = (q, left, right)
        history.append(err)
        if cfg.rank == 0:
            break  # no L R to alternate with: another Q step would repeat this one exactly
        if len(history) >= 2 and history[-2] - err <= cfg.tol * history[-2]:
            break  # converged
    assert best is not None
    q, left, right = best
    left_q = right_q = None
    if cfg.lr_bits < 16 and cfg.rank > 0:
        left_q = quantize_rtn(left, cfg.lr_bits, auto_group_size(left.shape[1]))  # [out, r]
        right_q = quantize_rtn(right, cfg.lr_bits, auto_group_size(right.shape[1]))  # [r, in]
        left, right = left_q.dequantize(), right_q.dequantize()
        q = quantize(w - left @ right)  # Q absorbs the factors' rounding error
        history.append(rel(q.dequantize(), left, right))
    return Decomposition(q=q, left=left, right=right, history=history, init_error=init_error,
                         left_q=left_q, right_q=right_q)
