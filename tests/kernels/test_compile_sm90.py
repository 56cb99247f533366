"""The kernels compile for a real GPU target (sm_90, Hopper) even on a machine without one.

The interpreter runs kernels as numpy and forgives what the compiler rejects (a loop-carried
value changing type, an int64/uint32 mix, a constexpr misuse), so without a GPU this is the
check that the kernels also build: Triton lowers them to PTX and assembles a cubin with its
bundled ptxas. A subprocess keeps TRITON_INTERPRET out (the interpreter replaces ``jit``).
Register use and speed are not checked here: that is owed to a GPU run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from a2d_guard.triton_kernels import gather_rows as gr, qlr_matmul as qm, rng, token_stats as ts

target = GPUTarget("cuda", 90, 32)
ALIGNED = [["tt.divisibility", 16]]  # what the JIT assumes of 16-byte aligned pointers/ints


def build(fn, sig, constexprs, num_warps, aligned=()):
    attrs = {(i,): ALIGNED for i in aligned}
    src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs)
    k = triton.compile(src, target=target, options={"num_warps": num_warps})
    return {"ptx_local_refs": k.asm["ptx"].count(".local"), "cubin_bytes": len(k.asm["cubin"])}


if sys.argv[1] == "probe":  # is there a CUDA backend with its ptxas at all?
    import triton.backends.nvidia.compiler  # noqa: F401
    from triton import knobs
    print(knobs.nvidia.ptxas.path)
    sys.exit(0)
out = {}
sig = {"seed_ptr": "*i64", "step_ptr": "*i64", "pos_ptr": "*i64", "index_ptr": "*i64",
       "out_ptr": "*fp64", "n": "i32", "BLOCK": "constexpr"}
out["counter_uniform"] = build(rng._counter_uniform_kernel, sig, {"BLOCK": 128}, 4)
names = ["logits_ptr", "temp_ptr", "seed_ptr", "step_ptr", "pos_ptr", "ban_ptr", "x0_ptr", "px0_ptr",
         "margin_ptr", "negent_ptr", "peos_ptr", "rand_ptr"]
ptrs = ["*fp64", "*i64", "*i64", "*i64", "*i8", "*i64", "*fp64", "*fp64", "*fp64", "*fp64", "*fp64"]
# contiguous rows (stride_v == 1 is specialised to a constant, as the JIT does at run
# time: the vectorised path) for every dtype, plus a strided float32 variant
for dt, acc, contiguous in (("bf16", tl.float32, True), ("fp16", tl.float32, True),
                            ("fp32", tl.float32, True), ("fp32", tl.float32, False),
                            ("fp64", tl.float64, True)):
    sig = dict(zip(names, ["*" + dt] + ptrs))
    sig.update(V="i32", eos_id="i32", eos_off="i32", stride_m="i32",
               stride_v="constexpr" if contiguous else "i32",
               BLOCK_V="constexpr", ACC="constexpr")
    consts = {"BLOCK_V": 4096, "ACC": acc}
    if contiguous:
        consts["stride_v"] = 1
    key = "token_stats_" + dt + ("" if contiguous else "_strided")
    out[key] = build(ts._token_stats_kernel, sig, consts, 8, aligned=(0, 12, 15))
sig = {"hidden_ptr": "*bf16", "seq_ptr": "*i64", "pos_ptr": "*i64", "out_ptr": "*bf16",
       "D": "i32", "stride_b": "i32", "stride_l": "i32", "stride_d": "constexpr",
       "stride_om": "i32", "BLOCK_D": "constexpr"}
out["gather_rows_bf16"] = build(gr._gather_rows_kernel, sig, {"stride_d": 1, "BLOCK_D": 1024},
                                4, aligned=(0, 3, 4, 5, 6, 8))
# the fused Q + L R linear: every code width, dense and 4-bit-packed L, bf16 and fp32 inputs
qnames = ["x_ptr", "q_ptr", "qs_ptr", "qo_ptr", "t_ptr", "l_ptr", "ls_ptr", "lo_ptr", "b_ptr", "y_ptr"]
qints = ["M", "N", "K", "RANK", "stride_xm", "stride_q", "stride_qs", "q_row_bytes", "stride_tm",
         "stride_l", "stride_ls", "l_row_bytes", "stride_ym"]
for dt, bits, group, l_packed in (("bf16", 2, 128, False), ("bf16", 3, 128, False), ("bf16", 4, 64, False),
                                  ("bf16", 3, 128, True), ("fp32", 3, 32, False)):
    ptrs = ["*" + dt, "*u8", "*" + dt, "*" + dt, "*" + dt,
            "*u8" if l_packed else "*" + dt, "*" + dt, "*" + dt, "*" + dt, "*" + dt]
    sig = dict(zip(qnames, ptrs))
    sig.update({name: "i32" for name in qints})
    consts = {"BITS": bits, "GROUP": group, "HAS_LR": True, "L_PACKED": l_packed, "L_BITS": 4, "L_GROUP": 16,
              "HAS_BIAS": False, "FP32_DOT": dt == "fp32", "BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 32,
              "BLOCK_R": 16}
    sig.update({name: "constexpr" for name in consts})
    key = f"qlr_matmul_{dt}_{bits}bit" + ("_lr4" if l_packed else "")
    out[key] = build(qm._qlr_matmul_kernel, sig, consts, 4, aligned=(0, 1, 2, 3, 4, 5, 9))
print(json.dumps(out))
"""


def _run(script, mode: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns when it is unset
    return subprocess.run([sys.executable, str(script), mode], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_kernels_compile_for_sm90(tmp_path):
    pytest.importorskip("triton")
    script = tmp_path / "build_sm90.py"  # @triton.jit needs its source in a file
    script.write_text(SCRIPT)
    probe = _run(script, "probe")
    if probe.returncode != 0:  # no NVIDIA backend or ptxas here: nothing to learn
        pytest.skip("Triton cannot build for sm_90 here: " + probe.stderr.strip()[-300:])
    res = _run(script, "kernels")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(report) == {"token_stats_bf16", "token_stats_fp16", "token_stats_fp32",
                           "token_stats_fp32_strided", "token_stats_fp64", "gather_rows_bf16",
                           "counter_uniform", "qlr_matmul_bf16_2bit", "qlr_matmul_bf16_3bit",
                           "qlr_matmul_bf16_4bit", "qlr_matmul_bf16_3bit_lr4", "qlr_matmul_fp32_3bit"}
    print(report)
