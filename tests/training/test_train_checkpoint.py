"""Checkpoints on disk: written whole or not at all, only complete ones resumable, pruning exact.

A crash is simulated twice over: at the moment the step-4 checkpoint is half written we copy the
output folder (what a killed process leaves behind, no cleanup ran), then the write fails with an
OSError (a full disk: cleanup runs). Both folders must resume from step 2.
"""

import json
import shutil

import pytest

from a2d_guard.training import TrainConfig, checkpoint, train
from a2d_guard.training import trainer as trainer_module
from a2d_guard.training.checkpoint import checkpoint_dir, latest_checkpoint, list_checkpoints, prune_checkpoints


def _cfg(data, out, **kw):
    base = dict(data=data, output=str(out), max_length=32, batch_size=4, lr=1e-3, progress=False, save_every=2,
                keep_checkpoints=0, lora_r=4, lora_alpha=8, max_steps=6)
    base.update(kw)
    return TrainConfig(**base)


def _fake_checkpoint(output, step, complete=True):
    folder = checkpoint_dir(output, step)
    folder.mkdir(parents=True)
    (folder / checkpoint.TRAINABLE_FILE).write_bytes(b"weights")
    if complete:
        (folder / checkpoint.STATE_FILE).write_text(json.dumps({"step": step}))
    return folder


def test_a_crash_mid_write_leaves_the_last_complete_checkpoint_and_resume_picks_it(data_file, tmp_path,
                                                                                      monkeypatch):
    out, killed = tmp_path / "run", tmp_path / "killed"
    real_export = trainer_module.export_adapter

    def crash_in_step_4(model, spec, folder, **kw):
        real_export(model, spec, folder, **kw)
        if checkpoint_dir(out, 4).name in str(folder):  # the last part of checkpoint 4, its state file written
            assert (folder.parent / checkpoint.STATE_FILE).is_file()
            shutil.copytree(out, killed)  # the disk as a killed process would leave it
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(trainer_module, "export_adapter", crash_in_step_4)
    with pytest.raises(OSError, match="No space left"):
        train(_cfg(data_file, out), log=lambda *_: None)
    monkeypatch.undo()

    # Failed write (cleanup ran): no trace of checkpoint 4, no temporary folder.
    assert sorted(p.name for p in (out / checkpoint.CHECKPOINTS).iterdir()) == ["step-00000002"]
    # Killed mid-write (no cleanup): the half-written checkpoint exists only under its temporary name.
    left = sorted(p.name for p in (killed / checkpoint.CHECKPOINTS).iterdir())
    assert left[-1] == "step-00000002" and len(left) == 2 and left[0].startswith(".tmp-step-00000004-")
    assert [step for step, _ in list_checkpoints(killed)] == [2]

    for folder in (out, killed):
        said = []
        result = train(_cfg(data_file, folder), resume=True, log=said.append)
        assert f"resuming from {checkpoint_dir(folder, 2)} at step 2" in said
        assert result.steps == 6 and [s for s, _ in list_checkpoints(folder)] == [2, 4, 6]
        rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == list(range(1, 7))


def test_only_complete_checkpoints_are_listed(tmp_path):
    _fake_checkpoint(tmp_path, 2)
    _fake_checkpoint(tmp_path, 4, complete=False)  # what an in-place write or a cut copy leaves
    _fake_checkpoint(tmp_path, 10)
    _fake_checkpoint(tmp_path, 9)
    root = tmp_path / checkpoint.CHECKPOINTS
    for name in (".tmp-step-00000012-4242", ".old-step-00000014-4242", "step-00000016.bak"):
        shutil.copytree(checkpoint_dir(tmp_path, 2), root / name)  # complete-looking, but not a checkpoint name
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2, 9, 10]
    assert latest_checkpoint(tmp_path) == checkpoint_dir(tmp_path, 10)


def test_a_failed_write_keeps_the_old_folder_and_leaves_no_temporary(tmp_path):
    final = tmp_path / "adapter"
    checkpoint.write_atomically(final, lambda tmp: (tmp / "v").write_text("1"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]

    def fail_halfway(tmp):
        (tmp / "v").write_text("2")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        checkpoint.write_atomically(final, fail_halfway)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"] and (final / "v").read_text() == "1"
    checkpoint.write_atomically(final, lambda tmp: (tmp / "v").write_text("3"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"] and (final / "v").read_text() == "3"


@pytest.mark.parametrize("keep, left", [(0, [1, 2, 3, 4, 5]), (1, [5]), (2, [4, 5]), (3, [3, 4, 5]),
                                        (5, [1, 2, 3, 4, 5]), (9, [1, 2, 3, 4, 5])])
def test_pruning_keeps_exactly_the_newest(tmp_path, keep, left):
    for step in range(1, 6):
        _fake_checkpoint(tmp_path, step)
    prune_checkpoints(tmp_path, keep)
    assert [step for step, _ in list_checkpoints(tmp_path)] == left
    assert len(list((tmp_path / checkpoint.CHECKPOINTS).iterdir())) == len(left)


def test_training_prunes_to_keep_checkpoints(data_file, tmp_path):
    train(_cfg(data_file, tmp_path / "run", max_steps=4, save_every=1, keep_checkpoints=2), log=lambda *_: None)
    assert sorted(p.name for p in (tmp_path / "run" / checkpoint.CHECKPOINTS).iterdir()) == [
        "step-00000003", "step-00000004"]
