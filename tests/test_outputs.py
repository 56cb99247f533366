"""``a2d_guard.outputs``: what a command may replace in an output folder (only what it claimed)."""

import json

import pytest

from a2d_guard.errors import A2DGuardError
from a2d_guard.outputs import (
    MANIFEST,
    check_replaceable,
    claim,
    foreign_entries,
    remove_written,
    write_folder,
)


def test_claimed_names_and_their_leftovers_are_ours_the_rest_is_not(tmp_path):
    claim(tmp_path, "train", ["adapter", "metrics.jsonl"])
    claim(tmp_path, "train", ["checkpoints"])  # a resumed run adds to the claim
    for name in ("adapter", "checkpoints", ".tmp-adapter-123", ".old-adapter-9"):
        (tmp_path / name).mkdir()
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".tmp-notes.txt-1").write_text("mine too")
    assert json.loads((tmp_path / MANIFEST).read_text())["written"] == ["adapter", "checkpoints", "metrics.jsonl"]
    assert foreign_entries(tmp_path) == [".tmp-notes.txt-1", "notes.txt"]
    with pytest.raises(A2DGuardError, match=r"refusing to --overwrite .*did not write \.tmp-notes\.txt-1, notes\.txt"):
        remove_written(tmp_path, "--overwrite")
    assert (tmp_path / "adapter").is_dir()  # refused: nothing removed

    (tmp_path / "notes.txt").unlink()
    (tmp_path / ".tmp-notes.txt-1").unlink()
    remove_written(tmp_path, "--overwrite")
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []


def test_a_folder_without_manifest_is_replaceable_only_when_empty(tmp_path):
    check_replaceable(tmp_path / "missing", "--overwrite")
    check_replaceable(tmp_path, "--overwrite")
    (tmp_path / "adapter").mkdir()  # our usual name, but nothing says we wrote it
    with pytest.raises(A2DGuardError, match=f"did not write adapter/ there \\(it has no {MANIFEST}\\)"):
        check_replaceable(tmp_path, "--overwrite")
    (tmp_path / MANIFEST).write_text("not json")  # unreadable manifest: not ours either
    with pytest.raises(A2DGuardError, match="did not write adapter/"):
        check_replaceable(tmp_path, "--overwrite")


def test_another_commands_output_is_refused(tmp_path):
    claim(tmp_path, "demo", ["results.json"])
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(A2DGuardError, match="output of `a2d-guard demo`, not of `a2d-guard compress`"):
        check_replaceable(tmp_path, "--overwrite", command="compress")
    check_replaceable(tmp_path, "--overwrite", command="demo")


def test_write_folder_replaces_its_own_output_and_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    write_folder(out, lambda tmp: (tmp / "a.txt").write_text("1"), "--overwrite", "merge")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "a.txt"]
    write_folder(out, lambda tmp: (tmp / "b.txt").write_text("2"), "--overwrite", "merge")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "b.txt"]

    def broken(tmp):
        (tmp / "c.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_folder(out, broken, "--overwrite", "merge")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folder left
    assert (out / "b.txt").read_text() == "2"

    (out / "mine.txt").write_text("user")
    with pytest.raises(A2DGuardError, match="did not write mine.txt"):
        write_folder(out, lambda tmp: (tmp / "d.txt").write_text("3"), "--overwrite", "merge")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "b.txt", "mine.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
