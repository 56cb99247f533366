"""Plots of a hand-made eval.json: one ASR-vs-τ PNG per harmful run, and speedup vs over-refusal."""

import pytest

from a2d_guard.evaluation.plots import write_plots

pytest.importorskip("matplotlib")


def row(order, tau, asr=None, over=None, speedup=1.0):
    return {"order": order, "threshold": tau, "attack_success": asr, "over_refusal": over, "speedup": speedup}


REPORT = {"settings": {"orders": ["random", "left_to_right"]}, "runs": [
    {"attack": "dija", "data": "d/dija.json", "results": [
        row("random", 1.0, 0.8), row("random", 0.9, 0.2, speedup=3.0), row("left_to_right", 1.0, 0.5),
        row("left_to_right", 0.9, 0.1, speedup=2.5)]},
    {"attack": "plain", "data": "x/xstest.csv", "results": [
        row("random", 1.0, over=0.0), row("random", 0.9, over=0.1)]},
]}


def test_plots_are_pngs(tmp_path):
    made = write_plots(REPORT, tmp_path)
    assert [p.name for p in made] == ["asr_1_dija.png", "speedup_vs_over_refusal.png"]
    for p in made:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 1000


def test_no_tradeoff_plot_without_an_xstest_run(tmp_path):
    made = write_plots({**REPORT, "runs": REPORT["runs"][:1]}, tmp_path)
    assert [p.name for p in made] == ["asr_1_dija.png"]
