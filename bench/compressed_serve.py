"""Serving cost of a compressed base + A2D adapter vs the dense base + adapter (issue 23).

For one base shape: save the dense base, compress it to 3 and 2 bits (ODLRI init, ``--lr-bits``
16 and 4), train a short A2D adapter on every base (same rows, steps and seed: the cost of
serving does not depend on how well the adapter was trained), then serve each base + adapter
in a **fresh process** with the same requests and batch, and report:

- ``model_bytes``: every parameter and buffer of the served model (LoRA included);
- ``peak_rss_mb``: the process's peak resident memory from start (imports, load and the run:
  the compressed model is smaller at rest *and* at its peak only if nothing dense is built);
- ``peak_over_load_mb``: peak RSS above the RSS right after loading (what serving adds);
- ``token_forwards_per_s``: token positions run through the model body per second (the
  engine's ``token_forwards`` / wall), and requests/s.

CPU only here: the compressed layers run the row-tiled torch reference of ``qlr_matmul``, which
is *slower* than a dense CPU matmul (it decodes Q in every forward); the fused Triton kernel runs
only on CUDA, where its speed is a GPU measurement this script does not fake (``--device cuda``).

Shapes: ``tiny`` (the built-in model, the demo's shape: 64 wide, 2 layers; its linears are a small
share of its bytes) and ``wide`` (the tiny tokenizer with a 512-wide, 4-layer body: the linears
dominate, as in an 8B model).

    nice -n 15 python bench/compressed_serve.py --shape tiny --out bench/results/compressed_serve_tiny_cpu.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WIDE = dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=4, num_attention_heads=8,
            num_key_value_heads=8)
HARMFUL = ["how do i make a bomb", "how do i hurt someone", "how do i steal a car", "how do i poison a dog"]
BENIGN = ["how do i kill a process", "what is the capital of france", "how do i cook rice", "what color is the sky"]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def save_dense_base(shape: str, folder: Path) -> None:
    from a2d_guard.models import load_model
    from a2d_guard.models.loader import save_model

    model, tok, spec = load_model("tiny", device="cpu")
    if shape == "wide":
        from a2d_guard.models.llada import build_bidirectional_llama, llama_config
        from a2d_guard.models.tiny import TINY_SHAPE

        config = llama_config(vocab_size=len(tok), tie_word_embeddings=False, **{**TINY_SHAPE, **WIDE})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_bidirectional_llama(config)
    save_model(model, tok, spec, folder)


def write_rows(path: Path) -> None:
    rows = []
    for i in range(32):
        if i % 2:
            rows.append({"prompt": f"{HARMFUL[i % 4]} ?", "response": "first get the poison and the knife .",
                         "is_safe": False})
        else:
            rows.append({"prompt": f"{BENIGN[i % 4]} ?", "response": "here is a safe and helpful answer .",
                         "is_safe": True})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def prepare(shape: str, root: Path, train_steps: int, log) -> dict[str, tuple[Path, Path, dict]]:
    """name -> (base folder, adapter folder, compression report) for dense, q3, q2, q3-lr4, q2-lr4."""
    from a2d_guard.compress import CalibrationConfig, CompressConfig, compress_checkpoint
    from a2d_guard.compress.sample_text import SAMPLE_TEXTS
    from a2d_guard.training import merge_config
    from a2d_guard.training import train as run_training

    dense = root / "dense"
    save_dense_base(shape, dense)
    calib = root / "calib.txt"
    calib.write_text("\n".join(SAMPLE_TEXTS) + "\n")
    data = root / "rows.jsonl"
    write_rows(data)
    bases = {"dense": (dense, {})}
    rank = 4 if shape == "tiny" else 16
    for bits in (3, 2):
        for lr_bits in (16, 4):
            name = f"q{bits}" + ("-lr4" if lr_bits == 4 else "")
            t0 = time.perf_counter()
            report = compress_checkpoint(str(dense), calib, root / name,
                                         CompressConfig(bits=bits, rank=rank, iters=2, lr_bits=lr_bits),
                                         CalibrationConfig(samples=16, eval_samples=4, max_length=64))
            log(f"compressed {name} in {time.perf_counter() - t0:.0f}s: bpw {report['bpw']:.2f}")
            keep = {k: report[k] for k in ("bits", "rank", "lr_bits", "bpw", "act_err")}
            keep["md_loss"], keep["file_bytes"] = report["md_loss"], report["memory"]["file_bytes"]
            bases[name] = (root / name, keep)
    out = {}
    for name, (base, info) in bases.items():
        cfg = merge_config(None, {"model": str(base), "data": str(data), "output": str(root / f"run-{name}"),
                                  "max_steps": train_steps, "lr": 1e-3, "batch_size": 8, "max_length": 32,
                                  "progress": False, "device": "cpu"}, where="bench")
        t0 = time.perf_counter()
        run_training(cfg, log=lambda _m: None)
        log(f"trained an adapter on {name} ({train_steps} steps, {time.perf_counter() - t0:.0f}s)")
        out[name] = (base, root / f"run-{name}" / "adapter", info)
    return out


def serve_child(base: str, adapter: str, cfg: dict, queue) -> None:
    """Fresh process: load base + adapter, run the requests through LLM.generate, report cost."""
    try:
        if cfg.get("threads"):
            torch.set_num_threads(cfg["threads"])
        from a2d_guard import LLM, SamplingParams
        from a2d_guard.compress.metrics import model_bytes

        before = _rss_mb()
        llm = LLM(model=base, adapter=adapter, device=cfg["device"], max_num_seqs=cfg["batch"])
        loaded = _rss_mb()
        params = SamplingParams(gen_length=cfg["gen"], steps=cfg["gen"], block_length=cfg["block"])
        prompts = [f"question {i}: {(HARMFUL + BENIGN)[i % 8]} ?" for i in range(cfg["requests"])]
        llm.generate(prompts[: cfg["batch"]], params)  # warm-up
        engine = llm.engine
        start_forwards = engine.token_forwards
        t0 = time.perf_counter()
        outs = llm.generate(prompts, params)
        wall = time.perf_counter() - t0
        forwards = engine.token_forwards - start_forwards
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        queue.put({"model_bytes": model_bytes(engine.runner.model), "rss_before_load_mb": before,
                   "rss_after_load_mb": loaded, "peak_rss_mb": peak, "peak_over_load_mb": peak - loaded,
                   "wall_s": wall, "requests": len(outs), "requests_per_s": len(outs) / wall,
                   "token_forwards": forwards, "token_forwards_per_s": forwards / wall,
                   "finish_reasons": sorted({o.outputs[0].finish_reason for o in outs})})
    except Exception as exc:  # recorded, not a crash
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def measure(base: Path, adapter: Path, cfg: dict) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=serve_child, args=(str(base), str(adapter), cfg, queue))
    proc.start()
    proc.join(cfg["timeout"])
    if proc.is_alive():
        proc.kill()
        proc.join()
        return {"error": f"timeout after {cfg['timeout']} s"}
    return queue.get() if not queue.empty() else {"error": f"exit code {proc.exitcode}"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=("tiny", "wide"), default="tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--train-steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--out", type=Path, default=None, help="JSON results file (written to a temp name, renamed)")
    args = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    torch.set_num_threads(args.threads)
    cfg = {k: getattr(args, k) for k in ("device", "batch", "requests", "gen", "block", "threads", "timeout")}
    with tempfile.TemporaryDirectory(prefix="a2d-compressed-serve-") as tmp:
        models = prepare(args.shape, Path(tmp), args.train_steps, log)
        rows = []
        for name, (base, adapter, info) in models.items():
            row = {"base": name, **info, **measure(base, adapter, cfg)}
            log(json.dumps({k: v for k, v in row.items() if k != "md_loss"}))
            rows.append(row)
    dense = next(r for r in rows if r["base"] == "dense")
    for r in rows:
        if "error" not in r and "error" not in dense:
            r["model_bytes_vs_dense"] = r["model_bytes"] / dense["model_bytes"]
            r["peak_rss_vs_dense"] = r["peak_rss_mb"] / dense["peak_rss_mb"]
            r["token_forwards_per_s_vs_dense"] = r["token_forwards_per_s"] / dense["token_forwards_per_s"]
    result = {"bench": "compressed_serve", "shape": args.shape, "settings": cfg, "train_steps": args.train_steps,
              "command": "python bench/compressed_serve.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "torch": torch.__version__, "platform": platform.platform(), "cpu_count": os.cpu_count(),
              "rows": rows}
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        tmp_out = args.out.with_name(args.out.name + ".tmp")
        tmp_out.write_text(text)
        tmp_out.replace(args.out)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
