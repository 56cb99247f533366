"""``token_stats``: the reference against an independent float64 computation and against
the reference sampler's own formulas, then the Triton kernel against the reference over
shapes (one row, V not a power of two, tiles smaller than V), dtypes, greedy and sampled
rows, edge rows (-inf, ties, NaN), the Gumbel noise near u = 1, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from _dispatch import DISPATCH_CASES, spy_dispatch
from a2d_guard.triton_kernels import token_stats as ts
from a2d_guard.triton_kernels.rng import RANDOM_CONFIDENCE_INDEX, counter_uniform_ref

from a2d_guard import ops
from a2d_guard.diffusion import confidence as conf

needs_triton = pytest.mark.skipif(ts.triton is None, reason="Triton is not installed")

FIELDS = ("p_x0", "margin", "neg_entropy", "p_eos", "rand_conf")


def _rows(m: int, v: int, dtype=torch.float32, seed: int = 0, scale: float = 3.0):
    """Logits [M, V] and per-row counters; temperatures alternate greedy and sampled."""
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(m, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    temps = torch.tensor([0.0, 0.7, 1.0, 0.0, 2.5][:m] * (m // 5 + 1), dtype=torch.float64)[:m]
    seeds = torch.arange(m, dtype=torch.int64) * 7919 - 5
    steps = torch.arange(m, dtype=torch.int64) % 3
    positions = torch.arange(m, dtype=torch.int64) + 11
    return logits, temps, seeds, steps, positions


def _to(device, *tensors):
    return [t.to(device) for t in tensors]


# --- the reference -----------------------------------------------------------------------------


def _straightforward(logits, eos_id, temps, seeds, steps, positions):
    """Row by row with Python floats and math.fsum: shares no code with the ref."""
    out = {k: [] for k in ("x0",) + FIELDS}
    for r, row in enumerate(logits.to(torch.float64).tolist()):
        mx = max(row)
        z = math.fsum(math.exp(x - mx) for x in row)
        p = [math.exp(x - mx) / z for x in row]
        t = float(temps[r])
        if t > 0:
            score = []
            for i, x in enumerate(row):
                u = float(counter_uniform_ref(int(seeds[r]), int(steps[r]), int(positions[r]), i))
                score.append(x + t * -math.log(-math.log(u)))
        else:
            score = row
        x0 = max(range(len(row)), key=lambda i: (score[i], -i))  # lowest index on ties
        top = sorted(p, reverse=True) + [0.0]
        out["x0"].append(x0)
        out["p_x0"].append(p[x0])
        out["margin"].append(top[0] - top[1])
        out["neg_entropy"].append(math.fsum(q * math.log(q) for q in p if q > 0))
        out["p_eos"].append(p[eos_id])
        out["rand_conf"].append(float(counter_uniform_ref(
            int(seeds[r]), int(steps[r]), int(positions[r]), RANDOM_CONFIDENCE_INDEX)))
    return out


@pytest.mark.parametrize("m, v, eos_id", [(5, 37, 0), (3, 300, 299), (2, 1, 0)])
def test_ref_matches_straightforward_float64(m, v, eos_id):
    args = _rows(m, v)
    got = ts.token_stats_ref(args[0], eos_id, *args[1:])
    want = _straightforward(args[0], eos_id, *args[1:])
    assert got.x0.tolist() == want["x0"]
    assert got.x0.dtype == torch.int64
    for name in FIELDS:
        value = getattr(got, name)
        assert value.dtype == torch.float64 and value.shape == (m,)
        torch.testing.assert_close(value, torch.tensor(want[name], dtype=torch.float64),
                                   rtol=1e-12, atol=1e-14)


def test_ref_equals_reference_sampler_bit_for_bit():
    """The engine's CPU path must reproduce ``diffusion/reference.py`` token for token, so
    the ref uses its exact float64 operations (``diffusion/confidence.py``)."""
    logits, temps, seeds, steps, positions = _rows(5, 37, dtype=torch.float64)
    got = ts.token_stats_ref(logits, 3, temps, seeds, steps, positions)
    probs = torch.softmax(logits, dim=-1)  # [M, V]
    for r in range(5):
        pos = positions[r:r + 1]
        x0 = conf.choose_x0(logits[r:r + 1], float(temps[r]), int(seeds[r]), int(steps[r]), pos)
        assert int(got.x0[r]) == int(x0[0])
        for mode, name in (("low_confidence", "p_x0"), ("margin", "margin"),
                           ("entropy", "neg_entropy"), ("random", "rand_conf")):
            want = conf.confidence(mode, probs[r:r + 1], x0, pos, int(seeds[r]), int(steps[r]))
            assert torch.equal(getattr(got, name)[r:r + 1], want), (mode, r)
        assert torch.equal(got.p_eos[r], probs[r, 3])


# --- kernel vs reference ---------------------------------------------------------------------

TOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 2e-6, torch.float16: 2e-6}


def _assert_matches_ref(got, want, logits, temps, seeds, steps, positions):
    """Stats equal the ref to the kernel's accumulation precision; x0 equals it exactly on
    greedy rows, and on sampled rows unless the two scores tie to rounding."""
    tol = TOL[logits.dtype]
    for name in FIELDS:
        torch.testing.assert_close(getattr(got, name).cpu(), getattr(want, name).cpu(),
                                   rtol=tol, atol=tol, equal_nan=True, msg=name)
    assert torch.equal(got.rand_conf.cpu(), want.rand_conf.cpu())  # the same bits
    broken = want.p_x0.cpu().isnan()  # NaN logits: x0 is unspecified, the stats say NaN
    greedy = (temps == 0).cpu() & ~broken
    assert torch.equal(got.x0.cpu()[greedy], want.x0.cpu()[greedy])
    for r in ((temps != 0).cpu() & ~broken).nonzero().squeeze(-1).tolist():
        a, b = int(got.x0[r]), int(want.x0[r])
        if a != b:  # allowed only on a near-tie of the float64 scores
            u = counter_uniform_ref(int(seeds[r]), int(steps[r]), int(positions[r]),
                                    torch.tensor([a, b]))
            x = logits[r, [a, b]].cpu().double()
            score = x + float(temps[r]) * -torch.log(-torch.log(u))
            assert abs(float(score[0] - score[1])) < 1e-4, (r, a, b, score)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("m, v, block_v, eos_id", [
    (7, 37, 16, 0),  # 3 tiles, tail of 11; EOS in the first column
    (5, 300, 64, 299),  # 5 tiles, tail of 44; EOS in the last column
    (1, 300, None, 150),  # one row, one tile of 512
    (3, 1, 16, 0),  # a one-token vocab: margin = 1, entropy = 0
])
def test_kernel_matches_ref(device, dtype, m, v, block_v, eos_id):
    args = _to(device, *_rows(m, v, dtype, seed=v + m))
    got = ts.token_stats(args[0], eos_id, *args[1:], block_v=block_v)
    want = ts.token_stats_ref(args[0], eos_id, *args[1:])
    assert got.x0.dtype == torch.int64 and all(getattr(got, f).dtype == torch.float64
                                              for f in FIELDS)
    _assert_matches_ref(got, want, *args)


@pytest.mark.slow
@needs_triton
def test_kernel_sample_is_a_function_of_the_counters_only(device):
    """Same counters -> same x0, whatever the batch order, tile size or repeat."""
    logits, temps, seeds, steps, positions = _to(device, *_rows(6, 300, seed=9, scale=0.5))
    temps = torch.full_like(temps, 1.5)
    base = ts.token_stats(logits, 0, temps, seeds, steps, positions, block_v=64).x0
    perm = torch.tensor([5, 2, 0, 4, 1, 3], device=device)
    shuffled = ts.token_stats(logits[perm], 0, temps[perm], seeds[perm], steps[perm],
                              positions[perm], block_v=16).x0
    assert torch.equal(shuffled, base[perm])
    assert torch.equal(ts.token_stats(logits, 0, temps, seeds, steps, positions).x0, base)
    assert torch.equal(base.cpu(), ts.token_stats_ref(logits, 0, temps, seeds, steps,
                                                      positions).x0.cpu())
    other = ts.token_stats(logits, 0, temps, seeds + 1, steps, positions, block_v=64).x0
    assert not torch.equal(other, base)  # a new seed draws new tokens


@needs_triton
def test_kernel_flat_logits_sample_argmax_of_noise(device):
    """Flat logits at T = 1: x0 is the argmax of u, so the kernel's in-tile hash of every
    token index is checked against the torch hash."""
    m, v = 8, 300
    logits = torch.zeros(m, v, device=device)
    temps = torch.ones(m, dtype=torch.float64, device=device)
    seeds = torch.arange(m, device=device) * 31 + 2**40
    steps = torch.full((m,), 3, device=device)
    positions = torch.arange(m, device=device)
    got = ts.token_stats(logits, 0, temps, seeds, steps, positions, block_v=128)
    u = counter_uniform_ref(seeds.cpu()[:, None], steps.cpu()[:, None],
                            positions.cpu()[:, None], torch.arange(v)[None])  # [M, V]
    assert torch.equal(got.x0.cpu(), u.argmax(-1))
    assert len(set(got.x0.tolist())) > 1


@needs_triton
def test_kernel_edge_rows(device):
    """-inf tokens, a first tile entirely -inf, the max in the last tile, exact ties, NaN."""
    v = 40
    logits = torch.randn(6, v, generator=torch.Generator().manual_seed(5))
    logits[0, :16] = float("-inf")  # first tile (block 16) all -inf: m stays -inf a tile
    logits[1, ::3] = float("-inf")  # banned tokens everywhere
    logits[2, 39] = 9.0  # the max in the tail of the last tile: rescale path
    logits[3, [4, 20, 33]] = 7.0  # exact three-way tie: x0 = 4, margin = 0
    logits[4, :] = 0.0  # uniform: entropy = -log V, margin = 0
    logits[5, 7] = float("nan")  # a broken row: its probabilities are NaN in both paths
    temps = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    counters = [torch.arange(6) + k for k in (100, 0, 50)]
    args = _to(device, logits, temps, *counters)
    got = ts.token_stats(args[0], 39, *args[1:], block_v=16)
    want = ts.token_stats_ref(args[0], 39, *args[1:])
    _assert_matches_ref(got, want, *args)
    assert int(got.x0[3]) == 4 and float(got.margin[3]) == 0.0
    assert int(got.x0[2]) == 39
    assert math.isclose(float(got.neg_entropy[4]), -math.log(v), rel_tol=1e-6)
    for name in ("p_x0", "margin", "neg_entropy", "p_eos"):  # how the engine spots the row
        assert getattr(got, name)[5].isnan() and getattr(want, name)[5].isnan(), name


@needs_triton
def test_kernel_strided_logits_and_float32_temperature(device):
    base = torch.randn(300, 4, generator=torch.Generator().manual_seed(2)).to(device)
    logits = base.t()  # [4, 300] with stride_v = 4
    _, temps, seeds, steps, positions = _to(device, *_rows(4, 300))
    temps = temps.float()
    got = ts.token_stats(logits, 5, temps, seeds, steps, positions, block_v=64)
    want = ts.token_stats_ref(logits, 5, temps, seeds, steps, positions)
    _assert_matches_ref(got, want, logits, temps, seeds, steps, positions)


def test_kernel_no_rows(device):
    empty_i = torch.zeros(0, dtype=torch.int64, device=device)
    empty_f = torch.zeros(0, dtype=torch.float64, device=device)
    for fn in (ts.token_stats, ts.token_stats_ref):
        out = fn(torch.zeros(0, 9, device=device), 0, empty_f, empty_i, empty_i, empty_i)
        assert all(t.shape == (0,) for t in out) and out.x0.dtype == torch.int64


# --- EOS banned from x0 (protocol a2d) ---------------------------------------------------------


def _eos_favoured(m: int, v: int, eos_id: int, dtype=torch.float32, seed: int = 3):
    """Rows whose argmax is EOS (so a ban changes x0), greedy and sampled, every other row banned."""
    logits, temps, seeds, steps, positions = _rows(m, v, dtype, seed=seed)
    logits[:, eos_id] = logits.max(dim=1).values + 4.0  # EOS wins every greedy row, most sampled ones
    ban = torch.arange(m) % 2 == 0  # [M]
    return logits, temps, seeds, steps, positions, ban


def test_ref_ban_eos_equals_the_a2d_decoders_choice():
    """Banned rows choose x0 as ``reference.reference_generate`` does (EOS's logit at -inf, then
    ``choose_x0``); every statistic, p_x0 included, stays the unbanned softmax's."""
    logits, temps, seeds, steps, positions, ban = _eos_favoured(6, 37, 5, torch.float64)
    got = ts.token_stats_ref(logits, 5, temps, seeds, steps, positions, ban_eos=ban)
    free = ts.token_stats_ref(logits, 5, temps, seeds, steps, positions)
    probs = torch.softmax(logits, dim=-1)  # [M, V] unbanned
    for r in range(6):
        row = logits[r:r + 1].clone()
        if ban[r]:
            row[:, 5] = float("-inf")
        x0 = conf.choose_x0(row, float(temps[r]), int(seeds[r]), int(steps[r]), positions[r:r + 1])
        assert int(got.x0[r]) == int(x0[0]), r
        assert (int(got.x0[r]) != 5) if ban[r] else (int(got.x0[r]) == int(free.x0[r])), r
        assert torch.equal(got.p_x0[r], probs[r, int(x0[0])])
    assert int(free.x0[0]) == 5  # the ban is what changed the greedy row's choice
    for name in ("margin", "neg_entropy", "p_eos", "rand_conf"):
        assert torch.equal(getattr(got, name), getattr(free, name)), name


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m, v, block_v, eos_id", [(6, 37, 16, 0), (5, 300, 64, 299), (4, 40, 16, 20)])
def test_kernel_ban_eos_matches_ref(device, dtype, m, v, block_v, eos_id):
    args = _to(device, *_eos_favoured(m, v, eos_id, dtype))
    got = ts.token_stats(args[0], eos_id, *args[1:5], ban_eos=args[5], block_v=block_v)
    want = ts.token_stats_ref(args[0], eos_id, *args[1:5], ban_eos=args[5])
    _assert_matches_ref(got, want, *args[:5])
    banned = args[5].cpu()
    assert not bool((got.x0.cpu()[banned] == eos_id).any())
    assert bool((got.x0.cpu()[~banned & (args[1].cpu() == 0)] == eos_id).all())


@pytest.mark.parametrize("fn", [pytest.param(ts.token_stats, marks=needs_triton), ts.token_stats_ref])
@pytest.mark.parametrize("ban, match", [(torch.ones(3, dtype=torch.bool), "ban_eos must be None or a 1-D"),
                                        (torch.ones(2, dtype=torch.int64), "ban_eos must be None or a 1-D")])
def test_bad_ban_eos_raises_value_error(fn, ban, match):
    logits, temps, seeds, steps, positions = _rows(2, 10)
    with pytest.raises(ValueError, match=match):
        fn(logits, 0, temps, seeds, steps, positions, ban_eos=ban)


# --- the Gumbel noise ------------------------------------------------------------------------

if ts.triton is not None:
    import triton
    import triton.language as tl

    @triton.jit
    def _gumbel_probe(h_ptr, out_ptr, n, BLOCK: tl.constexpr, ACC: tl.constexpr):
        offs = tl.arange(0, BLOCK)
        mask = offs < n
        h = tl.load(h_ptr + offs, mask=mask, other=0).to(tl.uint32)
        tl.store(out_ptr + offs, ts._gumbel_tl(h, ACC).to(tl.float64), mask=mask)


@needs_triton
@pytest.mark.parametrize("acc, tol", [("float32", 3e-6), ("float64", 1e-13)])
def test_gumbel_noise_is_accurate_near_u_equal_1(device, acc, tol):
    """float32 cannot hold u near 1 (it would give g = +inf, a token that always wins);
    the kernel's g must match float64 -log(-log u) over the whole range of k = h >> 8."""
    k = torch.tensor([0, 1, 2, 1000, 2**23 - 1, 2**23, 2**23 + 1, 14680063, 14680064,
                      14680065, 2**24 - 1000, 2**24 - 2, 2**24 - 1], dtype=torch.int64)
    k = torch.cat([k, torch.randint(0, 2**24, (51,), generator=torch.Generator().manual_seed(0))])
    h = (k << 8) | 0x5A  # low bits are ignored
    out = torch.empty(k.numel(), dtype=torch.float64, device=device)
    _gumbel_probe[(1,)](h.to(device), out, k.numel(), BLOCK=64,
                        ACC=tl.float32 if acc == "float32" else tl.float64)
    u = (k.double() + 0.5) / 2**24
    want = -torch.log(-torch.log(u))
    assert bool(out.isfinite().all())
    torch.testing.assert_close(out.cpu(), want, rtol=tol, atol=tol)


# --- bad input and dispatch -------------------------------------------------------------------

_L, _T, _S, _P, _Q = _rows(2, 10)


@pytest.mark.parametrize("fn", [pytest.param(ts.token_stats, marks=needs_triton),
                                ts.token_stats_ref])
@pytest.mark.parametrize("args, match", [
    ((_L[0], 0, _T, _S, _P, _Q), "logits must be a 2-D"),
    ((_L.long(), 0, _T, _S, _P, _Q), "logits dtype"),
    ((_L[:, :0], 0, _T, _S, _P, _Q), "empty vocab"),
    ((_L, 10, _T, _S, _P, _Q), r"eos_id must be an int in \[0, 10\)"),
    ((_L, -1, _T, _S, _P, _Q), "eos_id"),
    ((_L, True, _T, _S, _P, _Q), "eos_id"),
    ((_L, 0, _T[:1], _S, _P, _Q), "temperature must be a 1-D"),
    ((_L, 0, _S, _S, _P, _Q), "temperature must be a float"),
    ((_L, 0, _T, _S.int(), _P, _Q), "seeds must be a int64"),
    ((_L, 0, _T, _S, _P[None], _Q), "steps must be a 1-D"),
    ((_L, 0, _T, _S, _P, _Q.to("meta")), "positions is on meta"),
    ((_L, 0, -_T - 1, _S, _P, _Q), "temperature must be finite and >= 0"),
    ((_L, 0, _T * float("nan"), _S, _P, _Q), "temperature must be finite"),
])
def test_bad_input_raises_value_error(fn, args, match):
    with pytest.raises(ValueError, match=match):
        fn(*args)


@needs_triton
@pytest.mark.parametrize("block_v", [8, 48])
def test_bad_block_v(device, block_v):
    args = _to(device, _L, _T, _S, _P, _Q)
    with pytest.raises(ValueError, match="block_v"):
        ts.token_stats(args[0], 0, *args[1:], block_v=block_v)


@needs_triton
@pytest.mark.parametrize("env, expect_kernel", DISPATCH_CASES)
def test_ops_dispatch(fresh_dispatch, device, env, expect_kernel):
    real_ref = ts.token_stats_ref
    calls = spy_dispatch(fresh_dispatch, ts, "token_stats", env)
    args = _to(device, *_rows(3, 37))
    got = ops.token_stats(args[0], 36, *args[1:])
    assert calls == ["kernel" if expect_kernel else "ref"]
    assert isinstance(got, ts.TokenStats)
    _assert_matches_ref(got, real_ref(args[0], 36, *args[1:]), *args)


def test_the_cpu_reference_in_row_chunks_changes_no_bit(monkeypatch):
    """ops.token_stats runs the torch reference over slices of rows (bounded float64 [rows, V]
    temporaries at LLaDA's vocabulary); every statistic is per row, so the result is identical."""
    m, v = 37, 300
    logits, temp, seeds, steps, pos = _rows(m, v, dtype=torch.float64, seed=5)
    temp = torch.where(torch.arange(m) % 3 == 0, 0.0, 0.7).to(torch.float64)  # greedy and sampling rows
    ban = torch.arange(m) % 4 == 1
    whole = ts.token_stats_ref(logits, 7, temp, seeds, steps, pos, ban_eos=ban)
    monkeypatch.setattr(ops, "REF_CHUNK_BYTES", 8 * v * 5)  # 5 rows per chunk: 8 chunks, the last short
    calls = []
    real = ts.token_stats_ref
    monkeypatch.setattr(ts, "token_stats_ref", lambda x, *a, **k: calls.append(x.shape[0]) or real(x, *a, **k))
    chunked = ops.token_stats(logits, 7, temp, seeds, steps, pos, ban_eos=ban)
    assert calls == [5] * 7 + [2]
    for got, want in zip(chunked, whole, strict=True):
        assert torch.equal(got, want)
