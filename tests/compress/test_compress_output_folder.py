"""``compress``'s output folder: ``--overwrite`` replaces an earlier compressed folder, never a
folder with the user's files; files get the user's usual mode."""

import json
import os

from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.outputs import MANIFEST

runner = CliRunner()


def _compress(calib, out, *extra):
    return runner.invoke(app, ["compress", "--model", "tiny", "--calib", str(calib), "--output", str(out), "--bits",
                               "2", "--rank", "4", "--iters", "1", "--init", "zero", "--max-length", "32",
                               "--samples", "8", "--eval-samples", "2", "--json", *extra])


def _calib(tmp_path):
    path = tmp_path / "calib.txt"
    path.write_text("".join(f"calibration sentence number {i}: masked tokens in any order.\n" for i in range(12)))
    return path


def test_overwrite_refuses_a_user_folder_and_names_its_files(tmp_path, user_project, snapshot):
    proj = user_project(tmp_path / "proj")
    before = snapshot(proj)
    result = _compress(_calib(tmp_path), proj, "--overwrite")
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: refusing to --overwrite"), err
    assert "config.yaml, notes.txt, src/" in err and "Traceback" not in result.output
    assert snapshot(proj) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.txt", "proj"]  # no temporary folder left


def test_overwrite_replaces_an_earlier_compressed_folder(tmp_path, snapshot):
    calib, out = _calib(tmp_path), tmp_path / "q"
    old = os.umask(0o022)
    try:
        assert _compress(calib, out).exit_code == 0
    finally:
        os.umask(old)
    assert (out / MANIFEST).is_file()
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in [out, *out.iterdir()]} == {
        p.name: oct(0o755 if p.is_dir() else 0o644) for p in [out, *out.iterdir()]}
    result = _compress(calib, out, "--rank", "8")
    assert result.exit_code == 1 and "--overwrite" in result.stderr  # not without asking
    result = _compress(calib, out, "--rank", "8", "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["a2d_guard_compression"]["rank"] == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.txt", "q"]

    (out / "notes.txt").write_text("mine\n")
    before = snapshot(out)
    result = _compress(calib, out, "--overwrite")
    assert result.exit_code == 1 and "notes.txt" in result.stderr and "config.json" not in result.stderr
    assert snapshot(out) == before
