"""bench/demo_seeds.py: README's multi-seed file from a demo's results.json (command, machine, criteria)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from a2d_guard.demo.criteria import CRITERIA
from a2d_guard.demo.evaluate import EvalSettings
from a2d_guard.demo.runner import DemoPlan, run_demo

BENCH = Path(__file__).resolve().parents[2] / "bench" / "demo_seeds.py"
PLAN = DemoPlan(base_steps=2, adapter_steps=1, content_steps_factor=1, batch_size=8, max_length=48,
                eval=EvalSettings(gen_length=16, steps=4, block_length=8, max_prompts=1))


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_demo_seeds", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_file_carries_command_machine_criteria_and_every_world(tmp_path, capsys):
    results = run_demo(tmp_path / "d", dataclasses.replace(PLAN), log=lambda *_: None)
    bench = load_bench()
    bench.RESULT = tmp_path / "demo_seeds_cpu.json"
    out = bench.main(["--results", str(tmp_path / "d" / "results.json"), "--command", "demo --seeds 1", "--json"])
    assert json.loads(bench.RESULT.read_text()) == out
    assert out["command"] == "demo --seeds 1" and out["machine"]["cores"] >= 1
    assert set(out["criteria"]) == set(CRITERIA) and out["seeds"] == results["seeds"]
    assert out["numerics"]["threads"] == 1
    assert "attack success" in capsys.readouterr().out
