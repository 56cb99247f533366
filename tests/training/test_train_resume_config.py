"""``--resume`` with a config that differs from the checkpoint's: run-changing keys are refused
(named with old and new values) unless explicitly allowed, and then recorded in the config
history; free keys pass; structural keys never do."""

import json

import pytest
import yaml
from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.errors import A2DGuardError
from a2d_guard.training import TrainConfig, load_config, train
from a2d_guard.training.checkpoint import latest_checkpoint


def _quiet(*_):
    pass


def _cfg(data, out, **kw):
    base = dict(data=data, output=str(out), max_length=32, batch_size=4, lr=1e-3, progress=False, save_every=0,
                keep_checkpoints=0, lora_r=4, lora_alpha=8, max_steps=2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture
def run(data_file, tmp_path):
    """A finished 2-step run (its last checkpoint is step 2)."""
    out = tmp_path / "run"
    train(_cfg(data_file, out), log=_quiet)
    return out


def _state(out):
    return json.loads((latest_checkpoint(out) / "trainer_state.json").read_text())


def test_a_changed_lr_is_refused_naming_old_and_new(data_file, run):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(A2DGuardError, match=r"differs from its checkpoint .* in lr 0\.001 -> 0\.002.*"
                                            r"--allow-config-change"):
        train(_cfg(data_file, run, lr=2e-3, max_steps=4), resume=True, log=_quiet)
    with pytest.raises(A2DGuardError, match=r"in weight_decay 0\.1 -> 0\.0, warmup_steps 0 -> 5;"):
        train(_cfg(data_file, run, warmup_steps=5, weight_decay=0.0, max_steps=4), resume=True, log=_quiet)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # nothing written


def test_allowed_change_is_recorded_in_the_config_history(data_file, run):
    result = train(_cfg(data_file, run, lr=2e-3, max_steps=4), resume=True, allow_config_change=True, log=_quiet)
    assert [m["lr"] for m in result.metrics] == [2e-3, 2e-3]  # steps 3 and 4 ran with the new value
    expected = [{"step": 2, "changed": {"lr": {"from": 1e-3, "to": 2e-3}, "max_steps": {"from": 2, "to": 4}}}]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["lr"] == 2e-3 and saved["config_history"] == expected
    assert _state(run)["step"] == 4 and _state(run)["config_history"] == expected
    assert load_config(run / "config.yaml").lr == 2e-3  # the history does not break --config
    # A later resume compares with the latest values and keeps the history.
    train(_cfg(data_file, run, lr=2e-3, max_steps=6), resume=True, log=_quiet)
    assert _state(run)["config_history"] == expected + [{"step": 4, "changed": {"max_steps": {"from": 4, "to": 6}}}]


def test_free_keys_and_run_length_pass_without_the_flag(data_file, run, tmp_path):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    train(_cfg(data_file, moved, max_steps=3, log_every=2, keep_checkpoints=1, save_every=5,
               gradient_checkpointing=True), resume=True, log=_quiet)
    assert _state(moved)["step"] == 3
    assert _state(moved)["config_history"] == [{"step": 2, "changed": {"max_steps": {"from": 2, "to": 3}}}]


def test_run_length_under_a_linear_schedule_changes_the_run(data_file, tmp_path):
    out = tmp_path / "linear"
    train(_cfg(data_file, out, lr_schedule="linear"), log=_quiet)
    with pytest.raises(A2DGuardError, match=r"max_steps 2 -> 4 \(under lr_schedule linear"):
        train(_cfg(data_file, out, lr_schedule="linear", max_steps=4), resume=True, log=_quiet)


def test_structural_keys_are_refused_even_with_the_flag(data_file, run):
    with pytest.raises(A2DGuardError, match=r"lora_r was 4 .* but is 8 now; the checkpoint's weights"):
        train(_cfg(data_file, run, lora_r=8, max_steps=4), resume=True, allow_config_change=True, log=_quiet)


def test_cli(data_file, run):
    runner = CliRunner()
    args = ["train", "--model", "tiny", "--data", data_file, "--output", str(run), "--max-length", "32",
            "--batch-size", "4", "--no-progress", "--max-steps", "3", "--resume"]
    refused = runner.invoke(app, args + ["--lr", "0.002"])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "lr 0.001 -> 0.002" in lines[0] and "--allow-config-change" in lines[0], lines
    allowed = runner.invoke(app, args + ["--lr", "0.002", "--allow-config-change"])
    assert allowed.exit_code == 0, allowed.output
    assert yaml.safe_load((run / "config.yaml").read_text())["config_history"][0]["changed"]["lr"] == {
        "from": 0.001, "to": 0.002}
    no_resume = runner.invoke(app, args[:-1] + ["--allow-config-change"])
    assert no_resume.exit_code == 1 and "only applies with --resume" in no_resume.stderr


@pytest.mark.parametrize("name", ["trainable.safetensors", "optimizer.safetensors"])
def test_resume_from_a_truncated_checkpoint_file_names_it(data_file, run, name):
    path = latest_checkpoint(run) / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(A2DGuardError, match=rf"{name} is truncated or damaged .*delete this checkpoint folder"):
        train(_cfg(data_file, run), resume=True, log=_quiet)


def test_a_refused_resume_does_not_wait_for_data_or_model(data_file, run):
    logs = []
    with pytest.raises(A2DGuardError, match=r"lr 0\.001 -> 0\.002"):
        train(_cfg(data_file, run, lr=2e-3), resume=True, log=logs.append)
    assert logs == []  # no "data: ..." line: nothing was loaded
