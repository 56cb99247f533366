"""Engine benchmark: reference sampler vs a static-batch baseline vs the continuous-batching engine.

One run, one model, the same requests for all three systems:

* ``reference``: the golden one-sequence sampler, one request at a time;
* ``static``: LLaDA ``generate.py``-style static batching: the LM head and a float64 softmax
  over every position of every sequence, the batch waits for its slowest member (no early
  exit, no eviction; the A2D monitor still freezes rejected rows, they just keep their slot);
* ``engine``: ``a2d_guard.engine`` (gathered candidate rows, fused token stats, eviction and
  slot refill at every step);
* ``engine+threshold``: the engine with Fast-dLLM threshold decoding
  (``SamplingParams.parallel_threshold``, one system per value of ``--parallel-threshold``,
  named ``engine+threshold@T``). On random weights p(x0) is flat (about 1/V), so a threshold
  such as 0.9 never fires and gains nothing; a tiny one (0.001 on ``tiny``) commits whole
  blocks and shows the mechanics, not the quality.

Every system also reports ``mean_steps``: the forward passes a request took part in
(static: its batch's step count), the figure threshold decoding lowers.

Workloads: ``uniform`` (same prompt and gen lengths), ``mixed_lengths`` (varied prompts and
gen lengths), ``reject25`` (every 4th request forced to refuse through ``logit_bias`` on EOS).
Each (workload, system) runs in a fresh process so its peak memory is its own (CPU: peak RSS
above the loaded model; CUDA: ``max_memory_allocated``). An out-of-memory error is recorded as
a result, not a crash. Usage::

    python bench/engine.py --model tiny --json                # CPU, tiny model
    python bench/engine.py --model tiny --systems engine,engine+threshold --parallel-threshold 0.9,0.001
    python bench/engine.py --model llada8b-random --json      # GPU: LLaDA-8B shape, random bf16
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time

import torch

LLADA_8B_SHAPE = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                      intermediate_size=12288, vocab_size=126464, max_position_embeddings=4096)


def load(model_name: str, device: str):
    """(model, tokenizer, spec); ``llada8b-random`` is the LLaDA-8B shape with random bf16 weights."""
    from a2d_guard.models import load_model

    if model_name != "llada8b-random":
        return load_model(model_name, device=device)
    from a2d_guard.models.llada import build_bidirectional_llama, llama_config
    from a2d_guard.models.spec import ModelSpec

    with torch.device(device):
        torch.set_default_dtype(torch.bfloat16)
        model = build_bidirectional_llama(llama_config(**LLADA_8B_SHAPE, rms_norm_eps=1e-5, rope_theta=500000.0))
        torch.set_default_dtype(torch.float32)
    spec = ModelSpec(family="llada", mask_id=126336, eos_id=126081, eot_id=126348, pad_id=126081,
                     vocab_size=126464, max_positions=4096)
    return model, None, spec


def make_workload(name: str, spec, n: int, prompt_len: int, gen: int, block: int, steps: int, seed: int = 0,
                  **_unused):  # batch, threads: used by the caller
    """[(prompt_ids, SamplingParams)]: prompts of random non-special ids (deterministic)."""
    from a2d_guard.config import SamplingParams

    g = torch.Generator().manual_seed(seed)
    low = 16  # keep clear of special ids in the tiny vocabulary
    high = min(spec.vocab_size, 120000)
    reqs = []
    for i in range(n):
        plen, glen, st = prompt_len, gen, steps
        if name == "mixed_lengths":
            plen = int(torch.randint(max(4, prompt_len // 4), prompt_len * 2, (1,), generator=g))
            glen = block * int(torch.randint(1, gen // block + 1, (1,), generator=g))
            st = steps * glen // gen
        ids = [1] + torch.randint(low, high, (plen - 1,), generator=g).tolist()
        bias = {spec.eos_id: -100.0}  # no natural stops: every system decodes the same lengths
        if name == "reject25" and i % 4 == 0:
            bias = {spec.eos_id: 100.0}  # this request refuses at once
        reqs.append((ids, SamplingParams(gen_length=glen, steps=st, block_length=block, eos_threshold=0.9,
                                         logit_bias=bias)))
    return reqs


@torch.no_grad()
def static_generate(model, spec, batch):
    """LLaDA generate.py semantics for one static batch (shared gen/steps/block = the batch max)."""
    from a2d_guard.diffusion.monitor import leftmost_masked, should_reject
    from a2d_guard.diffusion.schedule import num_transfer_tokens
    from a2d_guard.models.forward import model_logits

    dev = next(model.parameters()).device
    gen = max(p.gen_length for _, p in batch)
    block = batch[0][1].block_length
    steps = max(p.steps for _, p in batch) * gen // max(p.gen_length for _, p in batch)
    plen = max(len(ids) for ids, _ in batch)
    b = len(batch)
    x = torch.full((b, plen + gen), spec.mask_id, device=dev)
    attn = torch.zeros((b, plen + gen), dtype=torch.long, device=dev)
    for i, (ids, _) in enumerate(batch):  # left padding, as LLaDA's batched generate
        x[i, plen - len(ids):plen] = torch.tensor(ids, device=dev)
        x[i, : plen - len(ids)] = spec.pad_id
        attn[i, plen - len(ids):] = 1
    generated = x == spec.mask_id
    bias = torch.zeros(b, spec.vocab_size, dtype=torch.float64, device=dev)
    for i, (_, p) in enumerate(batch):
        for tok, val in p.logit_bias.items():
            bias[i, tok] = val
    thresholds = torch.tensor([p.eos_threshold for _, p in batch], dtype=torch.float64, device=dev)
    frozen = torch.zeros(b, dtype=torch.bool, device=dev)
    nb = gen // block
    for blk in range(nb):
        end = plen + (blk + 1) * block
        n_mask = (x[:, :end] == spec.mask_id).sum(1)
        schedule = [num_transfer_tokens(int(n), steps // nb) for n in n_mask.tolist()]
        for s in range(steps // nb):
            logits = model_logits(model, spec, x, attention_mask=attn).to(torch.float64) + bias[:, None]  # [B, L, V]
            probs = torch.softmax(logits, dim=-1)  # the full [B, L, V] float64 softmax
            x0 = logits.argmax(-1)
            conf = probs.gather(-1, x0[..., None]).squeeze(-1)
            left = leftmost_masked(x, spec.mask_id)
            p_eos = probs[torch.arange(b, device=dev), left.clamp_min(0), spec.eos_id]
            frozen |= should_reject(x, generated, left, p_eos, spec.mask_id, spec.end_ids, thresholds)
            cand = (x == spec.mask_id)
            cand[:, end:] = False
            conf = torch.where(cand, conf, torch.tensor(-float("inf"), dtype=conf.dtype, device=dev))
            for i in range(b):
                k = schedule[i][s]
                if k and not frozen[i]:
                    idx = torch.sort(conf[i], descending=True, stable=True).indices[:k]
                    x[i, idx] = x0[i, idx]
    out = []
    for i, (_, p) in enumerate(batch):
        resp = x[i, plen: plen + p.gen_length].tolist()
        out.append(0 if frozen[i] else sum(1 for t in resp if t not in spec.end_ids))
    return out


def run_system(system: str, model_name: str, device: str, workload: str, cfg: dict, queue) -> None:
    """Child process: load, warm up, run one system on one workload, report throughput and memory."""
    try:
        if cfg.get("threads"):
            torch.set_num_threads(cfg["threads"])
        model, tok, spec = load(model_name, device)
        reqs = make_workload(workload, spec, **cfg)
        if system.startswith("engine+threshold@"):
            threshold = float(system.split("@", 1)[1])
            reqs = [(ids, p.replace(parallel_threshold=threshold)) for ids, p in reqs]
        run = _runner(system, model, tok, spec, cfg["batch"])
        run(reqs[: min(2, len(reqs))])  # warm-up (allocator, kernels, lazy imports)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        base_rss = _rss_mb()
        t0 = time.perf_counter()
        tokens, steps = run(reqs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        peak = ((torch.cuda.max_memory_allocated() - base) / 2**20 if device.startswith("cuda")
                else max(0.0, _peak_rss_mb() - base_rss))
        queue.put({"requests_per_s": len(reqs) / wall, "tokens_per_s": tokens / wall, "peak_mem_mb": peak,
                   "wall_s": wall, "requests": len(reqs), "mean_steps": steps / len(reqs)})
    except torch.OutOfMemoryError as exc:
        queue.put({"error": f"OOM: {str(exc).splitlines()[0]}"})
    except Exception as exc:  # recorded, not a crash: the other systems still report
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def _runner(system, model, tok, spec, batch):
    if system == "reference":
        from a2d_guard.diffusion.reference import reference_generate

        def reference(reqs):
            results = [reference_generate(model, spec, ids, p) for ids, p in reqs]
            return sum(len(r.token_ids) for r in results), sum(r.steps for r in results)

        return reference
    if system == "static":
        def static(reqs):
            batches = [reqs[i:i + batch] for i in range(0, len(reqs), batch)]
            tokens = sum(sum(static_generate(model, spec, b)) for b in batches)
            return tokens, sum(len(b) * max(p.steps for _, p in b) for b in batches)  # no early exit

        return static
    from a2d_guard.engine import LLM

    def engine(reqs):
        llm = LLM.from_loaded(model, tok, spec, max_num_seqs=batch)
        outs = llm.generate([ids for ids, _ in reqs], [p for _, p in reqs])
        return sum(len(o.outputs[0].token_ids) for o in outs), sum(o.outputs[0].steps for o in outs)

    return engine


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(system, args, workload, cfg) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=run_system, args=(system, args.model, args.device, workload, cfg, queue))
    proc.start()
    proc.join()
    return queue.get() if not queue.empty() else {"error": f"process exited with code {proc.exitcode}"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny", help="tiny, a model folder, or llada8b-random (GPU)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workloads", default="uniform,mixed_lengths,reject25")
    ap.add_argument("--systems", default="reference,static,engine,engine+threshold")
    ap.add_argument("--parallel-threshold", default="0.9",
                    help="comma-separated thresholds for engine+threshold (one system per value)")
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--prompt-len", type=int, default=None)
    ap.add_argument("--gen-length", type=int, default=None)
    ap.add_argument("--block-length", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads per system (1 avoids OpenMP stalls on a shared, busy machine)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", help="also write the JSON object to this file")
    args = ap.parse_args(argv)
    big = args.model == "llada8b-random"
    defaults = (dict(n=128, batch=64, prompt_len=128, gen=256, block=32, steps=256) if big
                else dict(n=160, batch=16, prompt_len=24, gen=64, block=16, steps=64))
    cfg = {**defaults, **{k: v for k, v in dict(n=args.requests, batch=args.batch, prompt_len=args.prompt_len,
                                                gen=args.gen_length, block=args.block_length,
                                                steps=args.steps, threads=args.threads).items() if v is not None}}
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else (
        f"cpu ({platform.processor() or platform.machine()}, {args.threads or torch.get_num_threads()} threads)")
    systems = _expand_systems(args.systems, args.parallel_threshold)
    result = {"device": device_name, "model": args.model, "config": cfg, "workloads": {}}
    for workload in args.workloads.split(","):
        row = {s: measure(s, args, workload, cfg) for s in systems}
        for other in ("static", "reference"):
            if "requests_per_s" in row.get("engine", {}) and "requests_per_s" in row.get(other, {}):
                row[f"engine_vs_{other}"] = row["engine"]["requests_per_s"] / row[other]["requests_per_s"]
        for system in systems:
            if system.startswith("engine+threshold@") and "requests_per_s" in row[system] \
                    and "requests_per_s" in row.get("engine", {}):
                row[f"{system}_vs_engine"] = row[system]["requests_per_s"] / row["engine"]["requests_per_s"]
        result["workloads"][workload] = row
        if not args.json:
            _print_row(workload, row)
    if args.out:  # whole or not at all: a temp name, then a rename
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, args.out)
    if args.json:
        print(json.dumps(result))
    return 0


def _expand_systems(systems: str, thresholds: str) -> list[str]:
    """``engine+threshold`` -> ``engine+threshold@T`` for each T of ``--parallel-threshold``."""
    out = []
    for system in systems.split(","):
        if system == "engine+threshold":
            out += [f"engine+threshold@{float(t)}" for t in thresholds.split(",")]
        else:
            out.append(system)
    return out


def _print_row(workload, row) -> None:
    print(f"\n{workload}")
    for system, r in row.items():
        if not isinstance(r, dict):
            continue
        if "error" in r:
            print(f"  {system:>22}: {r['error']}")
        else:
            print(f"  {system:>22}: {r['requests_per_s']:8.2f} req/s {r['tokens_per_s']:10.1f} tok/s "
                  f"{r['mean_steps']:7.1f} steps/request  peak {r['peak_mem_mb']:9.1f} MB")
    for key, ratio in row.items():
        if key.endswith(("_vs_static", "_vs_reference", "_vs_engine")):
            system, other = key.rsplit("_vs_", 1)
            print(f"  {system} / {other}: {ratio:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
