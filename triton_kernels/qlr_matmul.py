"""Fused ``y = x (Q + L R)ᵀ + b`` straight from Q's bit-packed codes: the dense weight is never built.

Why: ODLRI (arXiv 2506.02077, Eq. 1: W ≈ Q + L R) exists to serve the base model in less
memory. Dequantizing Q to a dense [out, in] matrix in every forward makes a compressed model
slower than the dense one *and* no smaller at its peak (the dense temporary is the size of the
weight it replaced). Here each program decodes only the [BLOCK_N, BLOCK_K] tile of Q it is
about to multiply, in registers, so Q's memory traffic is its packed size (b/16 of bf16).

Storage read (``a2d_guard.compress.packing`` / ``quantizer``):
- ``qweight`` uint8 [N, ceil(K/8)·b]: code i of a row sits at stream bit i·b, little-endian,
  so it is byte (i·b) >> 3 shifted right by (i·b) & 7, spilling into the next byte when
  (i·b) & 7 + b > 8 (only 3-bit codes straddle bytes);
- ``scales``, ``offsets`` [N, K/g]: Q[n, k] = code · scales[n, k // g] + offsets[n, k // g].

The product, per output tile (grid: cdiv(M, BLOCK_M) × cdiv(N, BLOCK_N)):
    acc  = Σ_k  x[m, k] · Q[n, k]          (K loop, Q decoded tile by tile, fp32 accumulator)
    acc += Σ_j  t[m, j] · L[n, j]          (epilogue: t = x Rᵀ [M, r], computed first)
    y    = acc + b[n]
L R is applied as (x Rᵀ) Lᵀ, two skinny products, never as the dense [N, K] product L R.
L and R may each be a dense float tensor or a ``PackedMatrix`` (``--lr-bits 4``: the paper
stores the factors at 4 bits); a packed R goes through this same kernel with no low-rank
part, a packed L is decoded in the epilogue by the same tile decoder as Q.

``qlr_matmul_ref`` is the torch reference: it dequantizes Q ``tile_rows`` output rows at a
time (a bounded working set, ``REF_TILE_BYTES``), so on CPU the dense matrix is never held
either. ``qlr_matmul_t_ref`` is the transposed product g (Q + L R) [M, K] in the same row
tiles, used by the backward pass (gradient to the input) on every device. Both are forward
computations without autograd; ``a2d_guard.compress.qlr_autograd`` wraps them for training.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - Triton is Linux-only; the torch ref still works
    triton = None

X_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)  # tl.dot has no portable fp64 path
REF_TILE_BYTES = 4 << 20  # working set of one dequantized tile of the torch reference


class PackedMatrix(NamedTuple):
    """A group-quantized [rows, cols] matrix as stored: packed codes and per-group grids."""

    qweight: torch.Tensor  # [rows, ceil(cols/8)·bits] uint8
    scales: torch.Tensor  # [rows, cols // group_size] float
    offsets: torch.Tensor  # [rows, cols // group_size] float
    bits: int
    group_size: int
    cols: int

    @property
    def rows(self) -> int:
        return self.qweight.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows, self.cols)


# --- checks shared by the kernel launcher and the ref --------------------------------------


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dim()}-D {t.dtype} tensor of shape {tuple(t.shape)} on {t.device}"
    return repr(type(t).__name__)


def _check_packed(name: str, p, device) -> None:
    if not isinstance(p, PackedMatrix):
        raise ValueError(f"{name} must be a PackedMatrix (qweight, scales, offsets, bits, group_size, cols), "
                         f"got {_describe(p)}")
    if p.bits not in (1, 2, 3, 4, 5, 6, 7, 8):
        raise ValueError(f"{name}.bits must be in 1..8, got {p.bits}")
    if p.group_size < 1 or p.cols % p.group_size:
        raise ValueError(f"{name}.group_size {p.group_size} must divide its {p.cols} columns")
    row_bytes = -(-p.cols // 8) * p.bits
    if p.qweight.dtype != torch.uint8 or p.qweight.dim() != 2 or p.qweight.shape[1] != row_bytes:
        raise ValueError(f"{name}.qweight must be uint8 [rows, {row_bytes}] ({p.cols} codes of {p.bits} bits "
                         f"per row), got {_describe(p.qweight)}")
    want = (p.qweight.shape[0], p.cols // p.group_size)
    for part in ("scales", "offsets"):
        t = getattr(p, part)
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != want or not t.is_floating_point():
            raise ValueError(f"{name}.{part} must be a float tensor of shape {want}, got {_describe(t)}")
    for part in ("qweight", "scales", "offsets"):
        if getattr(p, part).device != device:
            raise ValueError(f"{name}.{part} is on {getattr(p, part).device} but x is on {device}; "
                             "move the layer and its input to one device")


def _factor_shape(f) -> tuple[int, int]:
    return f.shape if isinstance(f, PackedMatrix) else tuple(f.shape)


def _check_args(x, q, left, right, bias) -> None:
    """Raise ValueError naming the bad argument (shapes, dtypes, devices)."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a 2-D [M, K] tensor (flatten leading dims first), got {_describe(x)}")
    if x.dtype not in X_DTYPES:
        raise ValueError(f"x dtype {x.dtype} is not supported; use one of {', '.join(map(str, X_DTYPES))}")
    _check_packed("q", q, x.device)
    n, k = q.shape
    if x.shape[1] != k:
        raise ValueError(f"x has {x.shape[1]} features but Q is {n}x{k}; pass inputs of width {k}")
    if (left is None) != (right is None):
        raise ValueError("pass both low-rank factors L [N, r] and R [r, K], or neither")
    if left is not None:
        for name, f in (("left", left), ("right", right)):
            if isinstance(f, PackedMatrix):
                _check_packed(name, f, x.device)
            elif not isinstance(f, torch.Tensor) or f.dim() != 2 or not f.is_floating_point():
                raise ValueError(f"{name} must be a 2-D float tensor or a PackedMatrix, got {_describe(f)}")
            elif f.device != x.device:
                raise ValueError(f"{name} is on {f.device} but x is on {x.device}; move them to one device")
        (ln, lr), (rr, rk) = _factor_shape(left), _factor_shape(right)
        if ln != n or rk != k or lr != rr:
            raise ValueError(f"low-rank factors L {ln}x{lr} and R {rr}x{rk} do not fit Q {n}x{k}: "
                             f"need L [{n}, r] and R [r, {k}]")
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (n,)
                             or bias.device != x.device):
        raise ValueError(f"bias must be a [{n}] tensor on {x.device}, got {_describe(bias)}")


# --- torch reference -----------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def tile_rows(cols: int, dtype: torch.dtype, tile_bytes: int = REF_TILE_BYTES) -> int:
    """Rows of Q dequantized at once by the reference, so a tile stays within ``tile_bytes``."""
    return max(1, tile_bytes // (max(cols, 1) * torch.finfo(_compute_dtype(dtype)).bits // 8))


def dequantize_rows(p: PackedMatrix, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
    """Rows start:stop of the packed matrix as floats.  [stop - start, cols]

    Bit i·b of the row stream holds code i's lowest bit (``packing.pack_codes``)."""
    packed = p.qweight[start:stop]  # [T, ceil(cols/8)·b] uint8
    t, nbytes = packed.shape
    k = nbytes // p.bits
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    stream = (packed.reshape(t, k, p.bits, 1) >> shifts) & 1  # [T, k, b, 8] one bit each
    stream = stream.reshape(t, k, 8, p.bits)
    weights = (1 << torch.arange(p.bits, device=packed.device)).to(torch.uint8)
    codes = (stream * weights).sum(-1, dtype=torch.uint8).reshape(t, k * 8)[:, : p.cols]  # [T, cols]
    groups = p.cols // p.group_size
    c = codes.to(dtype).reshape(t, groups, p.group_size)
    w = c * p.scales[start:stop].to(dtype).unsqueeze(-1) + p.offsets[start:stop].to(dtype).unsqueeze(-1)
    return w.reshape(t, p.cols)


def _tiled_linear(x: torch.Tensor, p: PackedMatrix, tile_bytes: int) -> torch.Tensor:
    """x @ deq(p)ᵀ over row tiles of p.  x [M, cols] -> [M, rows] in x's dtype."""
    cd = _compute_dtype(x.dtype)
    y = torch.empty(x.shape[0], p.rows, dtype=x.dtype, device=x.device)  # [M, N]
    step = tile_rows(p.cols, x.dtype, tile_bytes)
    for i in range(0, p.rows, step):
        j = min(i + step, p.rows)
        y[:, i:j] = x @ dequantize_rows(p, i, j, cd).to(x.dtype).T  # [M, K] @ [K, T]
    return y


def _tiled_linear_t(g: torch.Tensor, p: PackedMatrix, tile_bytes: int) -> torch.Tensor:
    """g @ deq(p) over row tiles of p (the input gradient).  g [M, rows] -> [M, cols]."""
    cd = _compute_dtype(g.dtype)
    out = torch.zeros(g.shape[0], p.cols, dtype=cd, device=g.device)  # [M, K] accumulated
    step = tile_rows(p.cols, g.dtype, tile_bytes)
    for i in range(0, p.rows, step):
        j = min(i + step, p.rows)
        out += g[:, i:j].to(cd) @ dequantize_rows(p, i, j, cd)  # [M, T] @ [T, K]
    return out.to(g.dtype)


def factor_linear(x: torch.Tensor, f, tile_bytes: int = REF_TILE_BYTES) -> torch.Tensor:
    """x @ fᵀ for a low-rank factor that is dense or packed.  [M, cols] -> [M, rows]"""
    if isinstance(f, PackedMatrix):
        return _tiled_linear(x, f, tile_bytes)
    return x @ f.to(x.dtype).T


def factor_linear_t(g: torch.Tensor, f, tile_bytes: int = REF_TILE_BYTES) -> torch.Tensor:
    """g @ f for a low-rank factor that is dense or packed.  [M, rows] -> [M, cols]"""
    if isinstance(f, PackedMatrix):
        return _tiled_linear_t(g, f, tile_bytes)
    return g @ f.to(g.dtype)


@torch.no_grad()
def qlr_matmul_ref(x: torch.Tensor, q: PackedMatrix, left=None, right=None, bias=None, *,
                   tile_bytes: int = REF_TILE_BYTES) -> torch.Tensor:
    """Torch reference of x (Q + L R)ᵀ + b, Q dequantized in row tiles.  x [M, K] -> [M, N]

    Dequantizes in float32 (float64 for float64 x) and multiplies in x's dtype, as the kernel
    does. Forward only (no autograd graph): ``compress.qlr_autograd`` provides the gradients.
    """
    _check_args(x, q, left, right, bias)
    y = _tiled_linear(x, q, tile_bytes)  # [M, N]
    if left is not None and _factor_shape(left)[1] > 0:
        y += factor_linear(factor_linear(x, right, tile_bytes), left, tile_bytes)  # (x Rᵀ) Lᵀ
    if bias is not None:
        y += bias.to(y.dtype)
    return y


@torch.no_grad()
def qlr_matmul_t_ref(g: torch.Tensor, q: PackedMatrix, left=None, right=None, *,
                     tile_bytes: int = REF_TILE_BYTES) -> torch.Tensor:
    """g (Q + L R): the gradient of x (Q + L R)ᵀ with respect to x.  g [M, N] -> [M, K]"""
    if not isinstance(g, torch.Tensor) or g.dim() != 2 or g.dtype not in X_DTYPES:
        raise ValueError(f"g must be a 2-D [M, N] float tensor, got {_describe(g)}")
    _check_packed("q", q, g.device)
    if g.shape[1] != q.rows:
        raise ValueError(f"g has {g.shape[1]} columns but Q has {q.rows} rows")
    out = _tiled_linear_t(g, q, tile_bytes)  # [M, K]
    if left is not None and _factor_shape(left)[1] > 0:
        out += factor_linear_t(factor_linear_t(g, left, tile_bytes), right, tile_bytes)  # (g L) R
    return out


# --- Triton kernel -------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _decode_tile(q_ptr, s_ptr, o_ptr, rows, cols, row_ok, col_ok, stride_q, stride_s, row_bytes,
                     BITS: tl.constexpr, GROUP: tl.constexpr):
        """Q[rows, cols] decoded from packed codes -> [len(rows), len(cols)] float32.

        rows, cols int64 vectors; code i of a row starts at stream bit i·BITS."""
        ok = row_ok[:, None] & col_ok[None, :]
        bit = cols * BITS  # [BK]
        byte = bit // 8
        shift = (bit % 8).to(tl.int32)
        ptr = q_ptr + rows[:, None] * stride_q + byte[None, :]
        word = tl.load(ptr, mask=ok, other=0).to(tl.int32)  # [BN, BK] low byte
        if (8 % BITS) != 0:  # codes may straddle two bytes (3 bits): add the next byte on top
            hi_ok = ok & ((byte + 1) < row_bytes)[None, :]
            word = word | (tl.load(ptr + 1, mask=hi_ok, other=0).to(tl.int32) << 8)
        code = (word >> shift[None, :]) & ((1 << BITS) - 1)
        grp = rows[:, None] * stride_s + (cols // GROUP)[None, :]
        scale = tl.load(s_ptr + grp, mask=ok, other=0.0).to(tl.float32)
        offset = tl.load(o_ptr + grp, mask=ok, other=0.0).to(tl.float32)
        return code.to(tl.float32) * scale + offset

    @triton.jit
    def _qlr_matmul_kernel(
        x_ptr, q_ptr, qs_ptr, qo_ptr, t_ptr, l_ptr, ls_ptr, lo_ptr, b_ptr, y_ptr,
        M, N, K, RANK,
        stride_xm, stride_q, stride_qs, q_row_bytes,
        stride_tm, stride_l, stride_ls, l_row_bytes, stride_ym,
        BITS: tl.constexpr, GROUP: tl.constexpr,
        HAS_LR: tl.constexpr, L_PACKED: tl.constexpr, L_BITS: tl.constexpr, L_GROUP: tl.constexpr,
        HAS_BIAS: tl.constexpr, FP32_DOT: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr,
    ):
        """Program (i, j): y[i·BM:(i+1)·BM, j·BN:(j+1)·BN] = x Qᵀ + t Lᵀ + b on that tile."""
        pid_m = tl.program_id(0).to(tl.int64)  # int64 before multiplying strides
        pid_n = tl.program_id(1).to(tl.int64)
        rows_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # [BM]
        rows_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
        m_ok = rows_m < M
        n_ok = rows_n < N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + tl.arange(0, BLOCK_K).to(tl.int64)  # [BK]
            k_ok = cols < K
            xt = tl.load(x_ptr + rows_m[:, None] * stride_xm + cols[None, :],
                         mask=m_ok[:, None] & k_ok[None, :], other=0.0)  # [BM, BK]
            w = _decode_tile(q_ptr, qs_ptr, qo_ptr, rows_n, cols, n_ok, k_ok, stride_q, stride_qs,
                             q_row_bytes, BITS, GROUP)  # [BN, BK] fp32
            if FP32_DOT:
                acc += tl.dot(xt.to(tl.float32), tl.trans(w), input_precision="ieee")
            else:
                acc += tl.dot(xt, tl.trans(w.to(xt.dtype)))
        if HAS_LR:  # epilogue: acc += t Lᵀ, t = x Rᵀ [M, r]
            for r0 in range(0, RANK, BLOCK_R):
                rc = r0 + tl.arange(0, BLOCK_R).to(tl.int64)  # [BR]
                r_ok = rc < RANK
                tt = tl.load(t_ptr + rows_m[:, None] * stride_tm + rc[None, :],
                             mask=m_ok[:, None] & r_ok[None, :], other=0.0)  # [BM, BR]
                if L_PACKED:
                    lt = _decode_tile(l_ptr, ls_ptr, lo_ptr, rows_n, rc, n_ok, r_ok, stride_l, stride_ls,
                                      l_row_bytes, L_BITS, L_GROUP)  # [BN, BR] fp32
                else:
                    lt = tl.load(l_ptr + rows_n[:, None] * stride_l + rc[None, :],
                                 mask=n_ok[:, None] & r_ok[None, :], other=0.0).to(tl.float32)
                if FP32_DOT:
                    acc += tl.dot(tt.to(tl.float32), tl.trans(lt), input_precision="ieee")
                else:
                    acc += tl.dot(tt, tl.trans(lt.to(tt.dtype)))
        if HAS_BIAS:
            acc += tl.load(b_ptr + rows_n, mask=n_ok, other=0.0).to(tl.float32)[None, :]
        out = y_ptr + rows_m[:, None] * stride_ym + rows_n[None, :]
        tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & n_ok[None, :])


def _interpreted() -> bool:
    return type(_qlr_matmul_kernel).__name__ == "InterpretedFunction"


def _fp32_dot(dtype: torch.dtype) -> bool:
    """fp32 inputs multiply in full fp32 (``input_precision="ieee"``, not TF32); fp16/bf16 use the
    tensor cores' half-precision MMA with an fp32 accumulator. Exception: Triton 3.9's interpreter
    computes a bf16 x bf16 ``tl.dot`` on the raw bit patterns (garbage), so there bf16 tiles are
    upcast to fp32 first: interpreter tests check the decoding, the bf16 MMA itself only on a GPU."""
    return dtype == torch.float32 or (dtype == torch.bfloat16 and _interpreted())


def _block_m(m: int) -> int:
    return 16 if m <= 16 else 32 if m <= 32 else 64


def qlr_matmul(x: torch.Tensor, q: PackedMatrix, left=None, right=None, bias=None, *,
               block_m: int | None = None, block_n: int = 64, block_k: int = 32) -> torch.Tensor:
    """Launch the fused kernel.  x [M, K] fp16/bf16/fp32 -> [M, N] in x's dtype.

    A packed R runs through this kernel first (t = x Rᵀ, no low-rank part); a dense R is one
    skinny torch matmul. Block sizes are powers of two >= 16 (tl.dot's minimum).
    """
    if triton is None:
        raise ValueError("qlr_matmul needs Triton; call qlr_matmul_ref instead")
    _check_args(x, q, left, right, bias)
    if x.dtype not in KERNEL_DTYPES:
        raise ValueError(f"the qlr_matmul kernel takes {', '.join(map(str, KERNEL_DTYPES))} inputs, got "
                         f"{x.dtype}; use qlr_matmul_ref for float64")
    if not x.is_cuda and not _interpreted():
        raise ValueError(f"the Triton kernel needs CUDA tensors, got {x.device}; use qlr_matmul_ref, "
                         "or set TRITON_INTERPRET=1 before a2d_guard.triton_kernels is imported")
    block_m = block_m or _block_m(x.shape[0])
    for name, b in (("block_m", block_m), ("block_n", block_n), ("block_k", block_k)):
        if b < 16 or b & (b - 1):
            raise ValueError(f"{name} must be a power of two >= 16, got {b}")
    m, k = x.shape
    n = q.rows
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)  # [M, N]
    if m == 0 or n == 0:
        return y
    x = x.contiguous()
    rank = _factor_shape(left)[1] if left is not None else 0
    has_lr = rank > 0
    if has_lr:
        if isinstance(right, PackedMatrix):
            t = qlr_matmul(x, right, block_n=max(16, min(64, triton.next_power_of_2(rank))))  # [M, r]
        else:
            t = x @ right.to(x.dtype).T  # [M, r]
        t = t.contiguous()
        if isinstance(left, PackedMatrix):
            l_ptr, ls, lo = left.qweight, left.scales, left.offsets
            l_args = (left.qweight.stride(0), left.scales.stride(0), left.qweight.shape[1])
            l_bits, l_group = left.bits, left.group_size
        else:
            l_ptr = left.contiguous()
            ls = lo = l_ptr
            l_args = (l_ptr.stride(0), 0, 0)
            l_bits, l_group = 8, 1
    else:
        t = l_ptr = ls = lo = x  # unused: HAS_LR is off
        l_args, l_bits, l_group = (0, 0, 0), 8, 1
    qw, qs, qo = q.qweight.contiguous(), q.scales.contiguous(), q.offsets.contiguous()
    b = bias.contiguous() if bias is not None else x
    block_r = max(16, min(64, triton.next_power_of_2(max(rank, 1))))
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    _qlr_matmul_kernel[grid](
        x, qw, qs, qo, t, l_ptr, ls, lo, b, y,
        m, n, k, rank,
        x.stride(0), qw.stride(0), qs.stride(0), qw.shape[1],
        t.stride(0), l_args[0], l_args[1], l_args[2], y.stride(0),
        BITS=q.bits, GROUP=q.group_size,
        HAS_LR=has_lr, L_PACKED=isinstance(left, PackedMatrix), L_BITS=l_bits, L_GROUP=l_group,
        HAS_BIAS=bias is not None, FP32_DOT=_fp32_dot(x.dtype),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_R=block_r, num_warps=4,
    )
    return y
