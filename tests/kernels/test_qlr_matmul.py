"""Fused x (Q + L R)ᵀ + b: kernel == row-tiled torch reference == the dense product, for every code width."""

import pytest
import torch
from _dispatch import DISPATCH_CASES, spy_dispatch
from a2d_guard.triton_kernels import qlr_matmul as qm

from a2d_guard import ops
from a2d_guard.compress.apply import AUTO_GROUP_SIZES, auto_group_size
from a2d_guard.compress.packing import pack_codes
from a2d_guard.compress.quantizer import quantize_rtn


def _packed(rows, cols, bits, group, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = quantize_rtn(torch.randn(rows, cols, generator=g), bits, group)
    packed = qm.PackedMatrix(pack_codes(q.codes, bits), q.scales.to(dtype), q.offsets.to(dtype), bits, group, cols)
    return packed, q.dequantize(torch.float64)


def _case(n, k, bits, group, rank, seed=0, dtype=torch.float32, bias=True):
    q, dense_q = _packed(n, k, bits, group, seed, dtype)
    g = torch.Generator().manual_seed(seed + 1)
    left = torch.randn(n, rank, generator=g).to(dtype)
    right = torch.randn(rank, k, generator=g).to(dtype) / k**0.5
    b = torch.randn(n, generator=g).to(dtype) if bias else None
    dense = dense_q + left.double() @ right.double()  # [n, k] the weight the layer stands for
    return q, left, right, b, dense


# (n, k, group): every group size compress writes (128..8, and a whole row when none divides k)
SHAPES = [(40, 72, 8), (24, 48, 16), (17, 96, 32), (33, 64, 64), (70, 128, 128), (29, 36, 36)]


def test_shapes_cover_every_group_size_compress_writes():
    groups = {g for _, _, g in SHAPES}
    assert set(AUTO_GROUP_SIZES) <= groups
    assert auto_group_size(36) == 36  # no listed size divides 36: the whole row is one group


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("n,k,group", SHAPES)
def test_ref_equals_the_dense_product_in_float64(bits, n, k, group):
    q, left, right, b, dense = _case(n, k, bits, group, rank=5, dtype=torch.float64)
    x = torch.randn(7, k, dtype=torch.float64)
    y = qm.qlr_matmul_ref(x, q, left, right, b, tile_bytes=8 * k * 3)  # 3 rows per tile: many tiles
    assert torch.allclose(y, x @ dense.T + b, atol=1e-10)


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("n,k,group", SHAPES)
@pytest.mark.parametrize("m", [1, 37])
def test_kernel_equals_ref_fp32(device, bits, n, k, group, m):
    q, left, right, b, _ = _case(n, k, bits, group, rank=5)
    q = qm.PackedMatrix(q.qweight.to(device), q.scales.to(device), q.offsets.to(device), *q[3:])
    x = torch.randn(m, k).to(device)
    args = (x, q, left.to(device), right.to(device), b.to(device))
    got, want = qm.qlr_matmul(*args), qm.qlr_matmul_ref(*args)
    assert got.shape == (m, n) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_kernel_equals_ref_half(device, bits, dtype):
    q, left, right, b, _ = _case(70, 96, bits, 32, rank=16, dtype=dtype)
    q = qm.PackedMatrix(q.qweight.to(device), q.scales.to(device), q.offsets.to(device), *q[3:])
    x = torch.randn(50, 96).to(device, dtype)
    args = (x, q, left.to(device), right.to(device), b.to(device))
    got, want = qm.qlr_matmul(*args), qm.qlr_matmul_ref(*args)
    assert got.dtype == dtype
    # both round to the half dtype at different points (kernel: fp32 accumulator, one rounding at
    # the store; ref: bf16 tiles and matmul); allow a few half-precision ulps of the output scale
    scale = float(want.float().abs().max())
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=1e-2 * scale)


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_packed_4bit_factors(device, bits):
    """--lr-bits 4: L and R packed too; R runs through the same kernel, L is decoded in the epilogue."""
    q, dense_q = _packed(40, 64, bits, 16, seed=3)
    left, dense_l = _packed(40, 16, 4, 16, seed=4)
    right, dense_r = _packed(16, 64, 4, 32, seed=5)
    x = torch.randn(21, 64)
    want = x.double() @ (dense_q + dense_l @ dense_r).T
    ref = qm.qlr_matmul_ref(x, q, left, right)
    torch.testing.assert_close(ref.double(), want, rtol=1e-5, atol=1e-4)
    to = lambda p: qm.PackedMatrix(p.qweight.to(device), p.scales.to(device), p.offsets.to(device), *p[3:])  # noqa: E731
    got = qm.qlr_matmul(x.to(device), to(q), to(left), to(right))
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("rank,bias", [(0, False), (0, True), (3, False), (70, True)])
def test_rank_and_bias_variants(device, rank, bias):
    """rank 0 (plain quantization) and a rank wider than one BLOCK_R tile (70 > 64)."""
    q, left, right, b, dense = _case(80, 96, 3, 32, rank=rank, bias=bias)
    x = torch.randn(5, 96)
    low = (left, right) if rank else (None, None)
    ref = qm.qlr_matmul_ref(x, q, *low, b)
    want = x.double() @ dense.T + (b.double() if bias else 0)
    torch.testing.assert_close(ref.double(), want, rtol=1e-5, atol=1e-4)
    dev = lambda t: None if t is None else t.to(device)  # noqa: E731
    qd = qm.PackedMatrix(q.qweight.to(device), q.scales.to(device), q.offsets.to(device), *q[3:])
    got = qm.qlr_matmul(x.to(device), qd, dev(low[0]), dev(low[1]), dev(b))
    torch.testing.assert_close(got.cpu(), ref, rtol=1e-5, atol=1e-4)


def test_ref_never_dequantizes_more_than_a_tile(monkeypatch):
    """The CPU path holds at most ``tile_rows`` dequantized rows of Q at a time, never [N, K]."""
    seen = []
    real = qm.dequantize_rows
    monkeypatch.setattr(qm, "dequantize_rows", lambda p, i, j, dt: seen.append(j - i) or real(p, i, j, dt))
    q, left, right, b, dense = _case(64, 128, 2, 64, rank=4)
    x = torch.randn(9, 128)
    tile_bytes = 4 * 128 * 10  # ten fp32 rows
    y = qm.qlr_matmul_ref(x, q, left, right, b, tile_bytes=tile_bytes)
    assert max(seen) == qm.tile_rows(128, torch.float32, tile_bytes) == 10 and sum(seen) == 64
    torch.testing.assert_close(y.double(), x.double() @ dense.T + b.double(), rtol=1e-5, atol=1e-4)
    assert qm.tile_rows(12288, torch.bfloat16) * 12288 * 4 <= qm.REF_TILE_BYTES  # LLaDA-8B's down_proj


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_transposed_ref_is_the_input_gradient(bits):
    q, left, right, _, dense = _case(33, 72, bits, 8, rank=6, dtype=torch.float64)
    g = torch.randn(4, 33, dtype=torch.float64)
    got = qm.qlr_matmul_t_ref(g, q, left, right, tile_bytes=8 * 72 * 4)
    assert torch.allclose(got, g @ dense, atol=1e-10)


def test_no_rows(device):
    q, left, right, b, _ = _case(16, 32, 2, 16, rank=2)
    qd = qm.PackedMatrix(q.qweight.to(device), q.scales.to(device), q.offsets.to(device), *q[3:])
    out = qm.qlr_matmul(torch.empty(0, 32).to(device), qd, left.to(device), right.to(device), b.to(device))
    assert out.shape == (0, 16)


def _bad_cases():
    q, left, right, b, _ = _case(16, 32, 3, 16, rank=2)
    x = torch.randn(3, 32)
    return [
        ((torch.randn(2, 3, 32), q), "2-D"),
        ((x.int(), q), "dtype"),
        ((torch.randn(3, 31), q), "width 32"),
        ((x, q, left, None), "both low-rank"),
        ((x, q, left, right[:, :16]), "do not fit"),
        ((x, q._replace(group_size=5)), "group_size 5"),
        ((x, q._replace(qweight=q.qweight[:, :-1])), "uint8"),
        ((x, q._replace(scales=q.scales[:, :1])), "scales"),
        ((x, q, None, None, b[:3]), "bias"),
        ((x, "not packed"), "PackedMatrix"),
    ]


@pytest.mark.parametrize("args,match", _bad_cases())
@pytest.mark.parametrize("fn", [qm.qlr_matmul_ref, qm.qlr_matmul])
def test_bad_input_raises_value_error(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


def test_kernel_refuses_float64_and_bad_blocks():
    q, *_ = _case(16, 32, 2, 16, rank=0)
    with pytest.raises(ValueError, match="qlr_matmul_ref for float64"):
        qm.qlr_matmul(torch.randn(2, 32, dtype=torch.float64), q._replace(scales=q.scales.double(),
                                                                             offsets=q.offsets.double()))
    with pytest.raises(ValueError, match="power of two"):
        qm.qlr_matmul(torch.randn(2, 32), q, block_k=24)


@pytest.mark.parametrize("env,expect_kernel", DISPATCH_CASES)
def test_ops_dispatch(fresh_dispatch, device, env, expect_kernel):
    calls = spy_dispatch(fresh_dispatch, qm, "qlr_matmul", env)
    q, left, right, b, dense = _case(24, 48, 4, 16, rank=3)
    qd = qm.PackedMatrix(q.qweight.to(device), q.scales.to(device), q.offsets.to(device), *q[3:])
    x = torch.randn(2, 5, 48)  # leading dims are flattened and restored by ops
    y = ops.qlr_matmul(x.to(device), qd, left.to(device), right.to(device), b.to(device))
    assert calls == ["kernel" if expect_kernel else "ref"]
    assert y.shape == (2, 5, 24)
    torch.testing.assert_close(y.cpu().double(), x.double() @ dense.T + b.double(), rtol=1e-5, atol=1e-4)


def test_ops_sends_float64_to_the_ref_even_when_forced(fresh_dispatch):
    calls = spy_dispatch(fresh_dispatch, qm, "qlr_matmul", {"A2D_GUARD_FORCE_TRITON": "1"})
    q, left, right, b, dense = _case(24, 48, 2, 16, rank=3, dtype=torch.float64)
    x = torch.randn(3, 48, dtype=torch.float64)
    assert torch.allclose(ops.qlr_matmul(x, q, left, right, b), x @ dense.T + b, atol=1e-10)
    assert calls == ["ref"]
