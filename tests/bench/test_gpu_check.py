"""bench/gpu_check.py: the one-command GPU check, exercised through its CPU ``--smoke`` run.

No GPU is lent to CI; ``--smoke`` runs the same plumbing (each part in its own process with a
timeout, results read back, one JSON file written whole) on toy shapes, so what the GPU run
will write is checked here before anyone spends device time on it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"


def load_check():
    spec = importlib.util.spec_from_file_location("bench_gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_smoke_run_writes_every_part(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=280)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [path] = list(tmp_path.iterdir())  # one file, no temp left behind
    assert path.name.startswith("gpu-cpu-smoke-") and path.suffix == ".json"
    report = json.loads(path.read_text())
    assert report["complete"] and report["smoke"] and report["elapsed_s"] <= report["budget_s"]
    assert report["environment"]["torch"] and "transformers" in report["environment"]
    parts = report["parts"]
    assert list(parts) == ["kernel_tests", "kernels_bf16", "kernels_fp32", "train", "engine"]  # no install in smoke
    assert {name: p["status"] for name, p in parts.items()} == dict.fromkeys(parts, "ok")

    tests = parts["kernel_tests"]["summary"]
    assert tests["passed"] > 0 and tests["failures"] == tests["errors"] == 0

    engine = parts["engine"]["summary"]["workloads"]["reject25"]
    for system in ("engine+dual+threshold@0.9", "static", "engine"):
        assert engine[system]["requests_per_s"] > 0, engine[system]
    # static: B x L per step over 16 steps, (8 + 16) positions per request
    assert parts["engine"]["result"]["workloads"]["reject25"]["static"]["token_forwards_per_request"] == 24 * 16
    assert {"engine+dual+threshold@0.9_vs_static", "engine+dual+threshold@0.9_vs_engine",
            "engine_vs_static"} <= set(engine["ratios"])

    for dtype in ("bf16", "fp32"):
        kernels = parts[f"kernels_{dtype}"]["summary"]
        assert {"gather_rows", "token_stats[greedy]", "token_stats[sample]"} <= set(kernels)
    train = parts["train"]["summary"]
    assert train["checkpointing_off"]["tokens_per_s"] > 0


@pytest.mark.slow
def test_a_part_past_its_timeout_is_killed_and_recorded(tmp_path):
    check = load_check()
    status, code, seconds = check.run_command([sys.executable, "-c", "import time; time.sleep(60)"], 1,
                                              tmp_path / "sleep.log")
    assert (status, code) == ("timeout", None) and seconds < 30


def test_a_part_the_budget_cannot_fit_is_skipped_not_started(tmp_path):
    check = load_check()
    path = check.run_check(smoke=True, out_dir=tmp_path, budget=40, requests=4, install=False, only={"train"},
                           log=lambda *_: None)
    report = json.loads(path.read_text())
    assert report["complete"]
    assert report["parts"]["train"]["status"] == "skipped" and "budget" in report["parts"]["train"]["why"]


@pytest.mark.slow
def test_without_the_install_the_package_still_imports_from_the_repo(tmp_path):
    """The fallback when ``pip install -e .`` fails on the device: cli/ and triton_kernels/ resolve
    inside a2d_guard, from links to the repo, even for ``python -m`` run in the repo root."""
    check = load_check()
    env = check.package_shadow(tmp_path)
    code = "import a2d_guard, a2d_guard.cli.errors, a2d_guard.triton_kernels.token_stats; print(a2d_guard.__file__)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **env}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().startswith(str(tmp_path))
