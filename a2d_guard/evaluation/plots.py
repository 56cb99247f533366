"""PNG plots of an ``eval.json`` (the ``eval`` extra: matplotlib).

- ``asr_<n>_<attack>.png`` per run with harmful rows: attack success vs τ, one line per
  decoding order (τ = 1.0 is the monitor off, so the left end is what the model writes);
- ``speedup_vs_over_refusal.png`` when the eval has both a harmful run and an XSTest run:
  one point per τ (first decoding order), x = XSTest over-refusal, y = early-rejection
  speedup averaged over the harmful runs: what each threshold buys and costs.

Uses matplotlib's object API with the Agg canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

import re
from pathlib import Path


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _by_order(run: dict, key: str) -> dict[str, list[tuple[float, float]]]:
    lines: dict[str, list[tuple[float, float]]] = {}
    for row in run["results"]:
        if row[key] is not None:
            lines.setdefault(row["order"], []).append((row["threshold"], row[key]))
    return {order: sorted(points) for order, points in lines.items()}


def asr_plot(run: dict, path: Path) -> Path | None:
    lines = _by_order(run, "attack_success")
    if not lines:
        return None
    fig, ax = _figure()
    for order, points in lines.items():
        ax.plot([t for t, _ in points], [a for _, a in points], marker="o", label=order)
    ax.set(xlabel="EOS threshold τ (1.0 = monitor off)", ylabel="attack success", ylim=(-0.05, 1.05),
           title=f"{run['attack']} on {Path(run['data']).name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return path


def tradeoff_plot(report: dict, path: Path) -> Path | None:
    runs = report["runs"]
    xstest = next((r for r in runs if any(row["over_refusal"] is not None for row in r["results"])), None)
    harmful = [r for r in runs if any(row["attack_success"] is not None for row in r["results"]) and r is not xstest]
    if xstest is None or not harmful:
        return None
    order = report["settings"]["orders"][0]
    over = {row["threshold"]: row["over_refusal"] for row in xstest["results"] if row["order"] == order}
    speed: dict[float, list[float]] = {}
    for run in harmful:
        for row in run["results"]:
            if row["order"] == order and row["speedup"] is not None:
                speed.setdefault(row["threshold"], []).append(row["speedup"])
    points = sorted((tau, over[tau], sum(s) / len(s)) for tau, s in speed.items() if over.get(tau) is not None)
    if not points:
        return None
    fig, ax = _figure()
    ax.plot([x for _, x, _ in points], [y for _, _, y in points], marker="o")
    for tau, x, y in points:
        ax.annotate(f"τ={tau}", (x, y), textcoords="offset points", xytext=(4, 4))
    ax.set(xlabel="XSTest over-refusal (safe prompts refused)", ylabel="early-rejection speedup",
           title=f"speedup vs over-refusal ({order})")
    fig.tight_layout()
    fig.savefig(path)
    return path


def write_plots(report: dict, folder: Path) -> list[Path]:
    """Every plot the report supports, into ``folder``; [] without matplotlib."""
    if not available():
        return []
    made = [asr_plot(run, folder / f"asr_{i}_{re.sub(r'[^a-z0-9]+', '_', run['attack'])}.png")
            for i, run in enumerate(report["runs"], 1)]
    made.append(tradeoff_plot(report, folder / "speedup_vs_over_refusal.png"))
    return [p for p in made if p is not None]
