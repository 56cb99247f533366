"""eval --resume reuses an earlier comparable eval's records; the folder is checkpointed after each run."""

import json

from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.engine import LLM
from a2d_guard.evaluation.run import EvalSettings, EvalTask, run_eval

runner = CliRunner()
BASE = ["eval", "--model", "tiny", "--steps", "8", "--block-length", "8", "--orders", "random", "--attack", "plain"]


def records(out):
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def test_resume_decodes_only_what_is_missing(tmp_path, fixture_files):
    out, data = tmp_path / "out", str(fixture_files["advbench"])
    first = runner.invoke(app, [*BASE, "--gen-length", "8", "--data", data, "--limit", "1", "--thresholds", "1.0",
                                "--out", str(out)])
    assert first.exit_code == 0, first.output
    (before,) = records(out)
    again = runner.invoke(app, [*BASE, "--gen-length", "8", "--data", data, "--thresholds", "1.0,0.001",
                                "--out", str(out), "--resume"])
    assert again.exit_code == 0, again.output
    assert "2 prompts evaluated, 0 skipped (too long), 1 records reused" in again.output
    after = records(out)
    assert len(after) == 4 and after[0] == before  # row 0 at τ 1.0 is the earlier record, as written
    assert json.loads((out / "eval.json").read_text())["runs"][0]["num_reused"] == 1


def test_resume_refuses_an_incomparable_eval(tmp_path, fixture_files):
    out, data = tmp_path / "out", str(fixture_files["advbench"])
    args = [*BASE, "--data", data, "--limit", "1", "--thresholds", "1.0", "--out", str(out)]
    assert runner.invoke(app, [*args, "--gen-length", "8"]).exit_code == 0
    result = runner.invoke(app, [*args, "--gen-length", "16", "--resume"])
    assert result.exit_code == 1 and "was run differently (gen_length: 8 -> 16)" in result.output
    assert len(records(out)) == 1  # untouched


def test_each_finished_run_is_handed_over_as_a_checkpoint(tiny32, fixture_files):
    seen = []
    settings = EvalSettings(orders=("random",), thresholds=(1.0,), gen_length=8, steps=8, block_length=8, limit=1)
    tasks = [EvalTask("plain", fixture_files["advbench"]), EvalTask("dija", fixture_files["refined"])]
    run_eval(LLM.from_loaded(*tiny32), tasks, settings,
             on_task=lambda report, recs: seen.append((len(report["runs"]), len(recs))))
    assert seen == [(1, 1), (2, 2)]
