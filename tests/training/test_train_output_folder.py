"""``train``'s output folder: ``--overwrite`` replaces a previous run and never a file the run
did not write; every file is written with the user's usual mode."""

import os

from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.outputs import MANIFEST

runner = CliRunner()


def _train(data_file, out, *args):
    return runner.invoke(app, ["train", "--model", "tiny", "--max-length", "32", "--batch-size", "4", "--max-steps",
                               "1", "--no-progress", "--data", data_file, "--output", str(out), *args])


def test_overwrite_refuses_a_user_folder_and_names_its_files(data_file, tmp_path, user_project, snapshot):
    proj = user_project(tmp_path / "proj")
    before = snapshot(proj)
    result = _train(data_file, proj, "--overwrite")
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: refusing to --overwrite"), err
    assert "config.yaml, notes.txt, src/" in err and "pick a new or empty folder" in err
    assert "Traceback" not in result.output
    assert snapshot(proj) == before


def test_overwrite_replaces_only_what_the_run_wrote(data_file, tmp_path, snapshot):
    out = tmp_path / "run"
    assert _train(data_file, out).exit_code == 0
    assert (out / MANIFEST).is_file() and (out / "adapter" / "adapter_model.safetensors").is_file()
    stale = out / "checkpoints" / "step-00000001" / "stale.txt"  # inside a folder the run owns
    stale.write_text("old")
    result = _train(data_file, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert not stale.exists() and (out / "adapter" / "adapter_model.safetensors").is_file()

    (out / "notes.txt").write_text("mine\n")  # a user file next to the run: refuse, touch nothing
    before = snapshot(out)
    result = _train(data_file, out, "--overwrite")
    assert result.exit_code == 1 and "notes.txt" in result.stderr and "config.yaml" not in result.stderr
    assert snapshot(out) == before


def test_every_file_of_a_run_follows_the_umask(data_file, tmp_path):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        result = _train(data_file, out, "--save-every", "1", "--max-steps", "2")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    modes = {str(p.relative_to(out)): oct(p.stat().st_mode & 0o777) for p in out.rglob("*")}
    assert "adapter/adapter_model.safetensors" in modes
    assert {k: v for k, v in modes.items() if v != (oct(0o755) if (out / k).is_dir() else oct(0o644))} == {}
