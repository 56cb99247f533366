"""The demo over several seeds: the figures README quotes, as median [min, max], and the criteria.

Runs ``a2d-guard demo --seeds N`` (trained worlds under ``--out`` are reused) or reads the
``results.json`` of one already run (``--results``), and writes what README needs: the
command, the machine, the floating-point path, the summary, issue 22's criteria per world
and every world's figures.

Usage::

    python bench/demo_seeds.py --seeds 5 --json              # trains/reuses ./a2d-demo, writes the file
    python bench/demo_seeds.py --results a2d-demo/results.json --json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

RESULT = Path(__file__).parent / "results" / "demo_seeds_cpu.json"


def machine() -> dict:
    """CPU model, core count, OS: what a reader needs to reproduce the figures."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "system": platform.platform(), "python": platform.python_version()}


def report(results: dict, command: str) -> dict:
    from a2d_guard.demo.criteria import check_sweep

    return {"command": command, "machine": machine(), "numerics": results.get("numerics"),
            "total_s": results.get("total_s"), "criteria": check_sweep(results["seeds"]),
            "summary": results["summary"], "seeds": results["seeds"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="worlds to train and evaluate (default 5)")
    ap.add_argument("--out", type=Path, default=Path("a2d-demo"), help="the demo folder (worlds there are reused)")
    ap.add_argument("--results", type=Path, help="read this demo results.json instead of running the demo")
    ap.add_argument("--command", help="the command that made --results (recorded in the file)")
    ap.add_argument("--json", action="store_true", help="write bench/results/demo_seeds_cpu.json")
    args = ap.parse_args(argv)
    if args.results is not None:
        results = json.loads(args.results.read_text())
        command = args.command or f"a2d-guard demo --seeds {len(results['seeds'])}"
    else:
        from a2d_guard.demo import numerics

        numerics.pin()  # before torch's first op, as the CLI does
        from a2d_guard.demo import runner

        results = runner.run_demo(args.out, runner.DEFAULT_PLAN, log=lambda *a: print(*a, file=sys.stderr),
                                  num_seeds=args.seeds)
        command = f"python bench/demo_seeds.py --seeds {args.seeds}"
    out = report(results, command)
    if args.json:
        from a2d_guard.outputs import write_text_atomically

        write_text_atomically(RESULT, json.dumps(out, indent=2) + "\n")
    from a2d_guard.demo.runner import render_table

    print(render_table(results))
    print(json.dumps(out["criteria"]))
    return out


if __name__ == "__main__":
    main()
