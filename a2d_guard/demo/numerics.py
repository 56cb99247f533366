"""Pin the demo's floating-point code path, so two machines train the same models.

Why: the demo trains for thousands of float32 steps, and training is chaotic: one
different last bit in one step gives a different model and different figures. Measured
(issue 22, 40 base steps on an AVX-512 CPU, torch 2.13 CPU wheel): the weights' hash
changes with ATen's CPU kernel set (``ATEN_CPU_CAPABILITY`` avx512 vs avx2 vs default:
three different hashes; it picks the widest the CPU has, so an AVX2-only machine runs
other reductions) and with MKL's code path (``MKL_CBWR=COMPATIBLE`` vs unset), and under
``MKL_CBWR=COMPATIBLE`` also with the thread count (1 vs 2). ``torch.backends.mkldnn``
and ``MKL_CBWR=AVX2`` did not change it. So the demo asks for the narrowest paths any x86
CPU has: ATen's ``default`` (scalar) kernels, MKL's ``COMPATIBLE`` branch, one thread.

What cannot be pinned: another torch/MKL build (the fingerprint records the versions),
another architecture (an ARM wheel has other kernels), libm differences between systems,
and a process that ran a torch op before ``pin()`` (ATen fixes its kernel set at the first
op; ``describe()`` then reports the set actually in use, and the results carry it).
Both variables are set only where the user has not set them.
"""

from __future__ import annotations

import os
import platform

PINNED = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}


def pin() -> None:
    """Ask for the portable code paths (call before torch runs its first op)."""
    for name, value in PINNED.items():
        os.environ.setdefault(name, value)


def describe() -> dict:
    """The code path this process runs: what results.json records next to the figures."""
    import torch

    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl_cbwr": os.environ.get("MKL_CBWR"), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "machine": platform.machine()}
