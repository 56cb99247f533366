"""``a2d-guard demo``: the built-in reproduction (offline, CPU, a few minutes, deterministic).

Trains the tiny dLLM into an unaligned base, then response-level and A2D adapters on it,
and attacks all of them (plain, DIJA, prefill) under four decoding orders.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from a2d_guard.cli.errors import user_errors_exit_1
from a2d_guard.cli.options import JsonOpt


@user_errors_exit_1
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the data, trained models and results.json "
                                                    "(models found there are reused).")] = Path("a2d-demo"),
    num_seeds: Annotated[int, typer.Option("--seeds", help="Independent worlds to train and evaluate (seeds 42, "
                                                           "43, ...); figures become median [min, max]. "
                                                           "Each takes 5-13 minutes on 2 cores.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Reproduce, small-scale, that response-level alignment fails under DIJA while A2D holds.

    On a terminal each stage draws a progress bar with an ETA on stderr; piped, it prints a
    line per finished stage instead; with --json, only the JSON. The text output ends with
    the stages (time, trained or reused) and the total time.
    """
    from a2d_guard.demo import numerics

    numerics.pin()  # before torch runs its first op: the portable floating-point path
    from a2d_guard.demo import runner
    from a2d_guard.demo.stages import render_stages
    from a2d_guard.errors import A2DGuardError

    if out.exists() and not out.is_dir():
        raise A2DGuardError(f"--out {str(out)!r} is a file; pass a folder")
    bars = not as_json and sys.stderr.isatty()
    log = typer.echo if not (as_json or bars) else (lambda *_: None)
    result = runner.run_demo(out, runner.DEFAULT_PLAN, log=log, progress=bars, num_seeds=num_seeds)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(runner.render_table(result))
        for world in result["seeds"]:
            typer.echo(("\n" if len(result["seeds"]) == 1 else f"\nseed {world['seed']}:\n") + render_stages(world))
        if len(result["seeds"]) > 1:
            typer.echo(f"\nall seeds: {result['total_s']:.1f}s")
        typer.echo(f"\nresults: {out / 'results.json'}")
