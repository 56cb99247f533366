"""Guard benchmark: checks/s one by one (``Guard.check`` in a loop) vs batched (``check_batch``).

For each kind of check (``prompt``: probe C, one forward row; ``response``: probe B,
``stride`` rows) one pool of 64 items is checked one by one (64 ``check`` calls) and in
``check_batch`` calls of B items (B = 1, 16, 64); the figure is items checked per second
in the fastest of ``--repeats`` rounds after a warm-up. Items are deterministic word salads
of varied length (the tiny model's scores do not matter here, only the work). The issue's
goal: batched >= 4x one by one at B = 64. Batching saves per-call overhead, not compute: a
response check is already ``stride`` rows in one forward, and on a CPU the rows' compute
dominates, so expect the large gains on a GPU.
Usage::

    python bench/guard.py --json                   # CPU, tiny; writes bench/results/guard_tiny_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path

import torch

WORDS = ("the a water rice boil add wait then first get make how do i what is cook safe answer here and "
         "with it of to in for on you can this that some more time heat pot salt").split()


def make_items(n: int, kind: str, seed: int = 0) -> list:
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12)))
        if kind == "prompt":
            items.append((prompt, None))
        else:
            items.append((prompt, " ".join(rng.choice(WORDS) for _ in range(rng.randint(16, 48)))))
    return items


def best_rates(fns: dict, n_items: int, repeats: int) -> dict:
    """Items per second of each function's fastest round (as ``timeit``: on a shared machine
    the slower rounds measure the neighbours). Rounds are interleaved, so every function
    sees the same neighbours."""
    for fn in fns.values():
        fn()  # warm-up
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: n_items / t for name, t in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", default="1,16,64")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--probe-length", type=int, default=64)
    ap.add_argument("--stride", type=int, default=4)
    ap.add_argument("--out", default=None, help="JSON result path (default bench/results/guard_<model>_<device>.json)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()

    from a2d_guard import Guard

    guard = Guard(model=args.model, device=args.device, probe_length=args.probe_length, stride=args.stride,
                  max_num_seqs=64)
    results: dict = {}
    batches = [int(x) for x in args.batches.split(",")]
    for kind in ("prompt", "response"):
        items = make_items(max(batches), kind)  # one pool: every figure checks the same items
        fns = {"one": lambda items=items: [guard.check(p, r) for p, r in items]}
        for b in batches:
            chunks = [items[i : i + b] for i in range(0, len(items), b)]
            fns[str(b)] = lambda chunks=chunks: [guard.check_batch(c) for c in chunks]
        rates = best_rates(fns, len(items), args.repeats)
        one = rates.pop("one")
        row = results[kind] = {"items": len(items), "one_by_one_checks_per_s": one, "batched": {}}
        for b, batched in rates.items():
            row["batched"][b] = {"checks_per_s": batched, "speedup_vs_one_by_one": batched / one}
            print(f"{kind:8} one by one {one:7.1f}/s  batch {b:>3}: {batched:7.1f}/s  x{batched / one:.2f}", flush=True)

    report = {"device": f"{args.device} ({platform.machine()}, {torch.get_num_threads()} threads)",
              "model": args.model, "torch": torch.__version__,
              "config": {"probe_length": args.probe_length, "stride": args.stride, "window": guard.window,
                         "max_num_seqs": 64, "repeats": args.repeats},
              "results": results}
    out = Path(args.out or Path(__file__).parent / "results" / f"guard_{args.model}_{args.device}.json")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)  # never a half-written result
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
