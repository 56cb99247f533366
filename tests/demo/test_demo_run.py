"""A miniature demo run end to end (a few steps, a few prompts): shape, reuse, determinism.

The real ``a2d-guard demo`` takes minutes; CI runs this miniature of the same code path.
"""

import dataclasses
import json
import os
import shutil
import warnings

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.demo import numerics, runner
from a2d_guard.demo.criteria import CRITERIA
from a2d_guard.demo.evaluate import ATTACKS, ORDERS, EvalSettings
from a2d_guard.demo.runner import MODELS, DemoPlan, render_table, run_demo
from a2d_guard.errors import A2DGuardWarning

MINI = DemoPlan(base_steps=6, adapter_steps=2, batch_size=8, max_length=48,
                eval=EvalSettings(gen_length=16, steps=4, block_length=8, max_prompts=2))


@pytest.mark.slow
def test_miniature_demo_reuses_and_is_deterministic(tmp_path):
    logs = []
    first = run_demo(tmp_path / "a", MINI, log=logs.append)["seeds"][0]
    assert first["seed"] == MINI.seed and first["split_seed"] is None
    assert set(first["models"]) == set(MODELS)
    for m in first["models"].values():
        for key in ("attack_success", "attack_success_monitored"):
            assert set(m[key]) == set(ATTACKS) and all(set(m[key][a]) == set(ORDERS) for a in ATTACKS)
            assert all(0.0 <= m[key][a][o] <= 1.0 for a in ATTACKS for o in ORDERS)
        assert 0.0 <= m["over_refusal"] <= 1.0 and 0.0 <= m["benign_accuracy"] <= 1.0
        assert set(m["speedup"]) == {"0.9", "0.8"} and all(v >= 1.0 for v in m["speedup"].values())
    assert json.loads((tmp_path / "a" / "results.json").read_text())["seeds"][0]["models"] == first["models"]
    table = render_table(json.loads((tmp_path / "a" / "results.json").read_text()))
    assert "base" in table and "attack success" in table
    for m in first["models"].values():  # the guard's classifier figures (demo/guard_eval.py), every model
        assert set(m["guard"]) == {"threshold", "probe_length", "n", "probe_c", "probe_b", "controls"}
        assert m["guard"]["n"] == {"harmful": 2, "benign": 2, "lookalike": 2}
        assert all(0.0 <= m["guard"][p][k] <= 1.0 for p in ("probe_c", "probe_b") for k in m["guard"][p])
    assert first["guard_model"]["name"] in ("a2d", "a2d_content")
    assert "guard as a classifier" in table and "guard model: " in table

    assert [s["result"] for s in first["stages"]] == ["trained"] * len(MODELS) + ["evaluated"] * len(MODELS)
    assert [s["stage"] for s in first["stages"][:2]] == ["train base", "train response_level"]
    assert first["total_s"] >= sum(s["seconds"] for s in first["stages"]) - 0.1 * len(first["stages"])

    logs.clear()
    again = run_demo(tmp_path / "a", MINI, log=logs.append)["seeds"][0]
    assert sum("reused" in line for line in logs) == len(MODELS)
    assert again["models"] == first["models"]
    fresh = run_demo(tmp_path / "b", MINI, log=lambda *_: None)["seeds"][0]  # trained anew: same numbers
    assert fresh["models"] == first["models"]


@pytest.mark.slow
def test_a_copied_demo_folder_is_reused_and_a_changed_recipe_retrains(tmp_path):
    """Reuse is by content (config, data, base weights), not by path: see demo/fingerprint.py."""
    run_demo(tmp_path / "a", MINI, log=lambda *_: None)
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "copy")
    shutil.rmtree(tmp_path / "a")  # nothing may still point into the original
    with warnings.catch_warnings():  # the adapters name the original base path: no "another base" warning
        warnings.simplefilter("error", A2DGuardWarning)
        copied = run_demo(tmp_path / "elsewhere" / "copy", MINI, log=lambda *_: None)["seeds"][0]
    assert [s["result"] for s in copied["stages"][: len(MODELS)]] == ["reused"] * len(MODELS)
    changed = run_demo(tmp_path / "elsewhere" / "copy", dataclasses.replace(MINI, adapter_lr=1e-3),
                       log=lambda *_: None)["seeds"][0]  # the adapters' recipe changed, the base's did not
    assert [s["result"] for s in changed["stages"][: len(MODELS)]] == ["reused"] + ["trained"] * (len(MODELS) - 1)


@pytest.mark.slow
def test_cli_states_its_stages_and_total_time(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "DEFAULT_PLAN", MINI)  # the CLI's full plan takes minutes
    for name in numerics.PINNED:  # the CLI pins them for its process; keep this one's as it was
        monkeypatch.setenv(name, os.environ.get(name, ""))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    head = lines.index(next(line for line in lines if line.split() == ["stage", "time", "result"]))
    rows = [line.split() for line in lines[head + 1: head + 1 + 2 * len(MODELS)]]
    assert [r[1] for r in rows] == list(MODELS) * 2
    assert [r[-1] for r in rows] == ["trained"] * len(MODELS) + ["evaluated"] * len(MODELS)
    assert lines[head + 1 + 2 * len(MODELS)].split()[0] == "total"
    assert "eta" not in result.stderr  # not a terminal: no bars


def test_demo_out_must_be_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and result.stderr.startswith("error: --out") and "Traceback" not in result.output


SWEEP = dataclasses.replace(MINI, base_steps=2, adapter_steps=1, content_steps_factor=1,
                            eval=dataclasses.replace(MINI.eval, max_prompts=1))


@pytest.mark.slow
def test_a_seed_sweep_reports_every_world_and_the_median_with_the_range(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "DEFAULT_PLAN", SWEEP)
    for name in numerics.PINNED:
        monkeypatch.setenv(name, os.environ.get(name, ""))
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--seeds", "2", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == json.loads((tmp_path / "d" / "results.json").read_text())
    assert [w["seed"] for w in report["seeds"]] == [SWEEP.seed, SWEEP.seed + 1]
    assert [w["split_seed"] for w in report["seeds"]] == [None, SWEEP.seed + 1]
    assert (tmp_path / "d" / "seeds" / str(SWEEP.seed + 1) / "a2d" / "adapter").is_dir()
    assert set(report["numerics"]) >= {"cpu_capability", "mkl_cbwr", "threads", "torch"}
    summary = report["summary"]
    assert summary["n"] == 2 and summary["seeds"] == [SWEEP.seed, SWEEP.seed + 1]
    assert set(summary["models"]) == set(MODELS) and sum(summary["guard_model"].values()) == 2
    for name in MODELS:
        for key in ("attack_success", "attack_success_monitored"):
            for attack in ATTACKS:
                for order in ORDERS:
                    cell = summary["models"][name][key][attack][order]
                    values = [w["models"][name][key][attack][order] for w in report["seeds"]]
                    assert cell == {"median": round(sum(values) / 2, 4), "min": min(values), "max": max(values)}
        assert set(summary["models"][name]["over_refusal"]) == {"median", "min", "max"}
    text = render_table(report)
    assert text.startswith(f"medians over 2 seeds [{SWEEP.seed}, {SWEEP.seed + 1}]")
    row = next(line for line in text.splitlines() if line.split()[:2] == ["base", "plain"])
    assert row.count("[") == len(ORDERS) and row.count("%") == len(ORDERS)  # median [min, max] per order
    assert "guard model: " in text
    assert {c: v["of"] for c, v in summary["criteria"].items()} == dict.fromkeys(CRITERIA, 2)
    assert "the paper's pattern" in text


def test_seeds_must_be_a_positive_count(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--seeds", "0"])
    assert result.exit_code == 1 and "--seeds 0" in result.stderr and "Traceback" not in result.output
