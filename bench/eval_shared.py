"""Shared-data smoke for ``a2d-guard eval``: every public eval file through the parsers, then a short eval.

Outside CI (the data is not part of the project; tests write their own fixtures). It proves
that every row of the DIJA/FITS JSON (520 + 400 + 400), AdvBench (520), HarmBench (400) and
XSTest (450) files loads, counts per attack the rows whose canvas does not fit the model
with ``--gen-length`` answer masks (skipped by eval, never a crash), then runs a short eval
(``--limit`` rows per file, one order, τ 1.0 and 0.9) of ``--model``/``--adapter``: by
default the A2D model ``a2d-guard demo`` trained in ./a2d-demo when it exists, else ``tiny``.
Usage::

    python bench/eval_shared.py                       # ../shared/data, tiny or the demo's A2D model
    python bench/eval_shared.py --data-dir DIR --model M --adapter A --limit 20 --out FILE
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from a2d_guard.engine import LLM
from a2d_guard.evaluation.attacks import prepare
from a2d_guard.evaluation.data import load_prompts
from a2d_guard.evaluation.run import EvalSettings, EvalTask, run_eval

ROOT = Path(__file__).resolve().parent.parent
# file under the data folder -> the attacks that apply to it
FILES = {
    "dija/dija_advbench.json": ("dija", "plain"),
    "dija/dija_harmbench.json": ("dija", "plain"),
    "dija/fits_harmbench.json": ("fits",),
    "advbench/harmful_behaviors.csv": ("plain", "prefill"),
    "harmbench/harmbench_behaviors_text_all.csv": ("plain", "prefill"),
    "xstest/xstest_prompts.csv": ("plain",),
}


def default_model() -> tuple[str, str | None]:
    base, adapter = ROOT / "a2d-demo" / "base" / "model", ROOT / "a2d-demo" / "a2d" / "adapter"
    return (str(base), str(adapter)) if base.is_dir() and adapter.is_dir() else ("tiny", None)


def parse_all(data_dir: Path, llm: LLM, gen_length: int) -> list[dict]:
    rows = []
    for name, attacks in FILES.items():
        data = load_prompts(data_dir / name)
        for attack in attacks:
            kept, skipped = prepare(llm.tokenizer, llm.spec, attack, data, gen_length)
            rows.append({"file": name, "format": data.format, "rows": data.num_rows, "attack": attack,
                         "fits": len(kept), "too_long": len(skipped)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--model", default=None)
    parser.add_argument("--adapter", default=None)
    parser.add_argument("--gen-length", type=int, default=128)
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model, adapter = (args.model, args.adapter) if args.model else default_model()
    start = time.perf_counter()
    llm = LLM(model=model, adapter=adapter, max_num_seqs=16)
    parsed = parse_all(args.data_dir, llm, args.gen_length)
    parse_s = time.perf_counter() - start
    settings = EvalSettings(orders=("low_confidence",), thresholds=(1.0, 0.9), gen_length=32, steps=32,
                            block_length=8, limit=args.limit)
    tasks = [EvalTask(attacks[0], args.data_dir / name) for name, attacks in FILES.items()]
    report, _ = run_eval(llm, tasks, settings, model=model, adapter=adapter)
    result = {
        "model": model, "adapter": adapter, "gen_length": args.gen_length, "parse": parsed,
        "rows_loaded": {r["file"]: r["rows"] for r in parsed},
        "eval": [{"attack": r["attack"], "file": Path(r["data"]).name, "evaluated": r["num_evaluated"],
                  "results": [{k: row[k] for k in ("threshold", "attack_success", "content_filter", "over_refusal")}
                              for row in r["results"]]} for r in report["runs"]],
        "seconds": {"load_and_parse": round(parse_s, 1), "total": round(time.perf_counter() - start, 1)},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "device": str(next(llm.model.parameters()).device)},
    }
    text = json.dumps(result, indent=2)
    out = args.out or ROOT / "bench" / "results" / f"eval_shared_{Path(model).name}.json"
    out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
