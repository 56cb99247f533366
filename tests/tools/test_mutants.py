"""``tools/mutants.py`` on a throw-away project: a mutant its test notices is caught, one it does not
survives, the source is restored byte for byte (also when the run is interrupted), and the report
says so. The real mutation run is not part of the suite (minutes); ``--check`` validates the list."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "tools" / "mutants.py"
_spec = importlib.util.spec_from_file_location("a2d_guard_tools_mutants", _PATH)
mutants = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mutants  # dataclasses look their module up
_spec.loader.exec_module(mutants)

SOURCE = "def is_refused(p, tau):\n    return p > tau\n\n\ndef double(x):\n    return 2 * x\n"
TEST = "from mod import is_refused\n\n\ndef test_strict():\n    assert not is_refused(0.9, 0.9)\n"


@pytest.fixture
def project(tmp_path):
    (tmp_path / "mod.py").write_text(SOURCE)
    (tmp_path / "test_mod.py").write_text(TEST)
    return tmp_path


def _mutant(mid, original, replacement):
    return mutants.Mutant(mid, "a rule", "mod.py", original, replacement, ("test_mod.py",))


@pytest.mark.slow
def test_caught_survived_restored_and_reported(project):
    listed = (_mutant("strict", "return p > tau", "return p >= tau"),
              _mutant("double", "return 2 * x", "return 3 * x"))  # no test looks at double()
    out = project / "report.json"
    assert mutants.main(["--out", str(out)], mutants=listed, root=project) == 1  # one survived
    assert (project / "mod.py").read_text() == SOURCE
    report = json.loads(out.read_text())
    assert report["baseline"]["returncode"] == 0
    assert [(m["id"], m["status"], m["line"]) for m in report["mutants"]] == [("strict", "caught", 2),
                                                                             ("double", "survived", 6)]
    assert report["mutants"][0]["failed"] == ["test_mod.py::test_strict"]
    assert report["summary"]["caught"] == 1 and report["summary"]["survived"] == ["double"]
    assert not list(project.glob(".*mutants-tmp"))


def test_a_mutant_that_does_not_apply_is_refused_before_anything_runs(project):
    stale = (_mutant("gone", "return p >> tau", "return p >= tau"),)
    assert mutants.main(["--check"], mutants=stale, root=project) == 2
    assert mutants.main([], mutants=stale, root=project) == 2
    two_lines = (_mutant("two", "def is_refused(p, tau):\n    return p > tau", "def f(p, tau):\n    return 1"),)
    assert "exactly one line" in mutants.check_mutant(two_lines[0], project)


def test_the_source_is_restored_when_the_run_is_interrupted(project, monkeypatch):
    def interrupted(*args, **kwargs):
        assert "p >= tau" in (project / "mod.py").read_text()  # the mutant is in place while tests run
        raise KeyboardInterrupt

    monkeypatch.setattr(mutants, "run_tests", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mutants.run_mutant(_mutant("strict", "return p > tau", "return p >= tau"), project, 60)
    assert (project / "mod.py").read_text() == SOURCE
