"""The demo's stage bars (stderr, on request) and its closing stage summary."""

import io

from rich.console import Console

from a2d_guard.demo.stages import Stages, render_stages


def _stages(show: bool):
    buf = io.StringIO()
    return Stages(show_progress=show, console=Console(file=buf, force_terminal=True, width=120)), buf


def test_a_bar_per_stage_with_its_count_eta_and_result():
    stages, buf = _stages(True)
    with stages:
        with stages.stage("train base", result="trained") as stage:
            stage.update(0, 3)
            for done in (1, 2, 3):
                stage.update(done, 3)
        with stages.stage("train a2d", result="trained") as stage:
            stage.result = "reused"
        with stages.stage("evaluate base", result="evaluated", total=5) as stage:
            for _ in range(5):
                stage.advance()
    out = buf.getvalue()
    for text in ("train base", "3/3", "eta", "train a2d", "1/1", "reused", "evaluate base", "5/5", "evaluated"):
        assert text in out, text
    assert [(r.stage, r.result) for r in stages.records] == [
        ("train base", "trained"), ("train a2d", "reused"), ("evaluate base", "evaluated")]


def test_no_bar_unless_asked():
    stages, buf = _stages(False)
    with stages, stages.stage("train base", result="trained") as stage:
        stage.update(1, 2)
    assert buf.getvalue() == "" and len(stages.records) == 1


def test_summary_table_lists_stages_and_total():
    text = render_stages({"stages": [{"stage": "train base", "seconds": 151.25, "result": "trained"},
                                     {"stage": "evaluate base", "seconds": 20.0, "result": "evaluated"}],
                          "total_s": 171.3})
    lines = text.splitlines()
    assert lines[0].split() == ["stage", "time", "result"]
    assert lines[1].split() == ["train", "base", "151.2s", "trained"]
    assert lines[-1].split() == ["total", "171.3s"]
