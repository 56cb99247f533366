"""A miniature demo run end to end (a few steps, a few prompts): shape, reuse, determinism.

The real ``a2d-guard demo`` takes minutes; CI runs this miniature of the same code path.
"""

import dataclasses
import json
import shutil
import warnings

from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.demo import runner
from a2d_guard.demo.corpus import build_corpus
from a2d_guard.demo.evaluate import ATTACKS, ORDERS, EvalSettings, Evaluator
from a2d_guard.demo.runner import MODELS, DemoPlan, render_table, run_demo
from a2d_guard.errors import A2DGuardWarning

MINI = DemoPlan(base_steps=6, adapter_steps=2, batch_size=8, max_length=48,
                eval=EvalSettings(gen_length=16, steps=4, block_length=8, max_prompts=2))


def test_miniature_demo_reuses_and_is_deterministic(tmp_path):
    logs = []
    first = run_demo(tmp_path / "a", MINI, log=logs.append)
    assert set(first["models"]) == set(MODELS)
    for m in first["models"].values():
        for key in ("attack_success", "attack_success_monitored"):
            assert set(m[key]) == set(ATTACKS) and all(set(m[key][a]) == set(ORDERS) for a in ATTACKS)
            assert all(0.0 <= m[key][a][o] <= 1.0 for a in ATTACKS for o in ORDERS)
        assert 0.0 <= m["over_refusal"] <= 1.0 and 0.0 <= m["benign_accuracy"] <= 1.0
        assert set(m["speedup"]) == {"0.9", "0.8"} and all(v >= 1.0 for v in m["speedup"].values())
    assert json.loads((tmp_path / "a" / "results.json").read_text())["models"] == first["models"]
    assert "base" in render_table(first) and "attack success" in render_table(first)
    for m in first["models"].values():  # the guard's classifier figures (demo/guard_eval.py), every model
        assert set(m["guard"]) == {"threshold", "probe_length", "n", "probe_c", "probe_b", "controls"}
        assert m["guard"]["n"] == {"harmful": 2, "benign": 2, "lookalike": 2}
        assert all(0.0 <= m["guard"][p][k] <= 1.0 for p in ("probe_c", "probe_b") for k in m["guard"][p])
    assert first["guard_model"]["name"] in ("a2d", "a2d_content")
    assert "guard as a classifier" in render_table(first) and "guard model: " in render_table(first)

    assert [s["result"] for s in first["stages"]] == ["trained"] * len(MODELS) + ["evaluated"] * len(MODELS)
    assert [s["stage"] for s in first["stages"][:2]] == ["train base", "train response_level"]
    assert first["total_s"] >= sum(s["seconds"] for s in first["stages"]) - 0.1 * len(first["stages"])

    logs.clear()
    again = run_demo(tmp_path / "a", MINI, log=logs.append)
    assert sum("reused" in line for line in logs) == len(MODELS)
    assert again["models"] == first["models"]
    fresh = run_demo(tmp_path / "b", MINI, log=lambda *_: None)  # trained anew: same numbers
    assert fresh["models"] == first["models"]


def test_a_copied_demo_folder_is_reused_and_a_changed_recipe_retrains(tmp_path):
    """Reuse is by content (config, data, base weights), not by path: see demo/fingerprint.py."""
    run_demo(tmp_path / "a", MINI, log=lambda *_: None)
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "copy")
    shutil.rmtree(tmp_path / "a")  # nothing may still point into the original
    with warnings.catch_warnings():  # the adapters name the original base path: no "another base" warning
        warnings.simplefilter("error", A2DGuardWarning)
        copied = run_demo(tmp_path / "elsewhere" / "copy", MINI, log=lambda *_: None)
    assert [s["result"] for s in copied["stages"][: len(MODELS)]] == ["reused"] * len(MODELS)
    changed = run_demo(tmp_path / "elsewhere" / "copy", dataclasses.replace(MINI, adapter_lr=1e-3),
                       log=lambda *_: None)  # the adapters' recipe changed, the base's did not
    assert [s["result"] for s in changed["stages"][: len(MODELS)]] == ["reused"] + ["trained"] * (len(MODELS) - 1)


def test_cli_states_its_stages_and_total_time(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "DEFAULT_PLAN", MINI)  # the CLI's full plan takes minutes
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    head = lines.index(next(line for line in lines if line.split() == ["stage", "time", "result"]))
    rows = [line.split() for line in lines[head + 1: head + 1 + 2 * len(MODELS)]]
    assert [r[1] for r in rows] == list(MODELS) * 2
    assert [r[-1] for r in rows] == ["trained"] * len(MODELS) + ["evaluated"] * len(MODELS)
    assert lines[head + 1 + 2 * len(MODELS)].split()[0] == "total"
    assert "eta" not in result.stderr  # not a terminal: no bars


def test_evaluator_plans_exactly_the_requests_it_makes(tiny32):
    calls = []
    evaluator = Evaluator(*tiny32, build_corpus(), MINI.eval, on_request=lambda: calls.append(1))
    evaluator.run()
    assert len(calls) == evaluator.planned_requests() > 0


def test_demo_out_must_be_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and result.stderr.startswith("error: --out") and "Traceback" not in result.output
