"""Engine benchmark: reference sampler vs a static-batch baseline vs the continuous-batching engine.

One run, one model, the same requests for every system:

* ``reference``: the golden one-sequence sampler, one request at a time;
* ``static``: LLaDA ``generate.py``-style static batching: the LM head and a float64 softmax
  over every position of every sequence, the batch waits for its slowest member (no early
  exit, no eviction; the A2D monitor still freezes rejected rows, they just keep their slot);
* ``engine``: ``a2d_guard.engine`` in exact mode (gathered candidate rows, fused token stats,
  eviction and slot refill at every step);
* ``engine+prefix`` / ``engine+dual``: the engine with Fast-dLLM's block K/V cache
  (``LLMEngine(cache="prefix" | "dual")``, DESIGN §12): later steps of a block run only the
  block and what follows it (prefix) or only the block (dual);
* ``engine+threshold`` / ``engine+dual+threshold``: threshold decoding
  (``SamplingParams.parallel_threshold``), without and with the dual cache, one system per value
  of ``--parallel-threshold`` (``engine+dual+threshold@0.9``). On random weights p(x0) is flat
  (about 1/V), so 0.9 never fires and gains nothing; a tiny threshold (0.001 on ``tiny``)
  commits whole blocks and shows the mechanics, not the quality.

Every system reports req/s, tokens/s, peak memory, ``mean_steps`` (forward passes a request
took part in; static: its batch's step count) and ``token_forwards_per_token``: token positions
run through the model body (rows x window length of every forward, padding included) per
generated token, the hardware-independent cost (engine: ``LLMEngine.token_forwards``; static:
B x L per step; reference: L per step). ``X_vs_static`` / ``X_vs_engine`` are req/s ratios,
``X_peak_mem_vs_static`` the peak memory ratio. ``goals`` says, for the presets the issue set
goals on, whether each goal was met (``null`` when the run's settings are not the goal's).

Models: ``tiny`` or a model folder (e.g. the demo's trained base), and three presets with random
weights and no tokenizer (prompts are token ids): ``tiny-4layer`` (the tiny model with 4 layers),
``tiny-llada-vocab`` (the tiny body with LLaDA's vocabulary of 126,464 and its ids: on CPU it
shows what dominates memory on a GPU, the [B, L, V] tensors) and ``llada8b-random`` (the
LLaDA-8B shape in bf16, for a GPU).

Workloads: ``uniform`` (same prompt and gen lengths), ``mixed_lengths`` (varied prompts and
gen lengths), ``reject25`` (every 4th request forced to refuse through ``logit_bias`` on EOS):
random-id prompts with EOS banned, so every system decodes every position; ``chat`` (models with
a tokenizer): the demo corpus's held-out questions, chat-templated, natural stops allowed.
Each (workload, system) runs in a fresh process so its peak memory is its own (CPU: peak RSS
above the loaded model; CUDA: ``max_memory_allocated``). An out-of-memory error and a system cut
by ``--system-timeout`` / ``--budget`` are recorded as results, not crashes. Usage::

    python bench/engine.py --model tiny --json                # CPU, tiny model
    python bench/engine.py --model tiny-4layer --systems engine,engine+dual \
        --gen-length 256 --block-length 32 --steps 256
    python bench/engine.py --model tiny-llada-vocab --systems static,engine --workloads uniform --requests 16
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
                      intermediate_size=12288, vocab_size=126464, max_position_embeddings=4096,
                      rms_norm_eps=1e-5, rope_theta=500000.0)
LLADA_IDS = dict(mask_id=126336, eos_id=126081, eot_id=126348, pad_id=126081)  # LLaDA-8B's tokenizer
LLADA_VOCAB = 126464


def tiny_body(**changes) -> dict:
    """The built-in tiny model's shape (``a2d_guard.models.tiny.TINY_SHAPE``) with some fields changed."""
    from a2d_guard.models.tiny import TINY_SHAPE

    return {**TINY_SHAPE, **changes}


def load(model_name: str, device: str):
    """(model, tokenizer, spec) for a preset (random weights, seed 0) or anything ``load_model`` takes.

    Why the presets live here and not in ``a2d_guard.models``: ``tiny-llada-vocab`` and
    ``llada8b-random`` have no tokenizer (LLaDA's ids, 126,464 rows, nothing that could write
    text for them), so they are benchmark fixtures fed token ids, not models a user could
    chat with.
    """
    from a2d_guard.models import load_model

    if model_name == "llada8b-random":
        return _random_llada(LLADA_8B_SHAPE, torch.bfloat16, device)
    if model_name == "tiny-llada-vocab":
        shape = tiny_body(vocab_size=LLADA_VOCAB, max_position_embeddings=4096)
        return _random_llada(shape, torch.float32, device)
    if model_name == "tiny-4layer":
        from a2d_guard.models.llada import build_bidirectional_llama, llama_config
        from a2d_guard.models.loader import make_spec
        from a2d_guard.models.tiny import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()
        config = llama_config(vocab_size=len(tokenizer), tie_word_embeddings=False, **tiny_body(num_hidden_layers=4))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = build_bidirectional_llama(config).to(device)
        return model, tokenizer, make_spec("tiny", {}, tokenizer, model)
    return load_model(model_name, device=device)


def _random_llada(shape: dict, dtype, device: str):
    """A bidirectional Llama of ``shape`` with random weights and LLaDA's token ids."""
    from a2d_guard.models.llada import build_bidirectional_llama, llama_config
    from a2d_guard.models.spec import ModelSpec

    default = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(0)
        torch.set_default_dtype(dtype)
        try:
            model = build_bidirectional_llama(llama_config(tie_word_embeddings=False, **shape))
        finally:
            torch.set_default_dtype(default)
    spec = ModelSpec(family="llada", vocab_size=shape["vocab_size"], max_positions=shape["max_position_embeddings"],
                     **LLADA_IDS)
    return model, None, spec


def make_workload(name: str, spec, n: int, prompt_len: int, gen: int, block: int, steps: int, seed: int = 0,
                  tokenizer=None, **_unused):  # batch, threads: used by the caller
    """[(prompt_ids, SamplingParams)]: prompts of random non-special ids (deterministic), or for
    ``chat`` the demo corpus's held-out questions through the chat template, natural stops allowed."""
    from a2d_guard.config import SamplingParams

    if name == "chat":
        return chat_workload(spec, tokenizer, n, gen, block, steps)
    g = torch.Generator().manual_seed(seed)
    low = 16  # keep clear of special ids in the tiny vocabulary
    high = min(spec.vocab_size, 120000)  # and of LLaDA's (126,081 and up)
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


def chat_workload(spec, tokenizer, n: int, gen: int, block: int, steps: int):
    """What a trained model meets: real questions (the demo's held-out ones, cycled to ``n``) and
    no ban on EOS, so a request stops when it has answered (static batching still decodes every
    position: it has no early exit). Random-id prompts with EOS banned give a trained model flat,
    unnatural confidences, which is not what threshold decoding is for."""
    from a2d_guard.config import SamplingParams
    from a2d_guard.demo.corpus import build_corpus
    from a2d_guard.diffusion.prompts import encode_prompt

    if tokenizer is None:
        raise SystemExit("error: the chat workload needs a model with a tokenizer (tiny, tiny-4layer or a folder)")
    questions = [it.question for it in build_corpus().select("heldout")]
    return [(encode_prompt(tokenizer, spec, questions[i % len(questions)]),
             SamplingParams(gen_length=gen, steps=steps, block_length=block, eos_threshold=0.9)) for i in range(n)]


def warmup_requests(reqs):
    """The first two requests cut to two blocks: warms the allocator, kernels and lazy imports
    (and a block change) without paying a whole decode at gen 256."""
    out = []
    for ids, p in reqs[:2]:
        gen = min(p.gen_length, 2 * p.block_length)
        out.append((ids, p.replace(gen_length=gen, steps=p.steps * gen // p.gen_length)))
    return out


# --- the static baseline ----------------------------------------------------------------------


@torch.no_grad()
def static_step(model, spec, x, attn, bias):
    """One forward of the static baseline: x0, p(x0) and p(EOS) at the leftmost mask.  # [B, L] x2, [B]

    The [B, L, V] float64 logits and probabilities exist only inside this call, so the next
    step's forward never runs while this step's are still held: at most one float64 logits and
    one probabilities tensor at a time, LLaDA ``generate.py``'s own peak (it used to hold two
    steps' worth, 4x one float64 [B, L, V], an OOM at batch 64 on an 80 GB GPU that was the
    benchmark's fault). The bias is added in place for the same reason.
    """
    from a2d_guard.diffusion.monitor import leftmost_masked
    from a2d_guard.models.forward import model_logits

    logits = model_logits(model, spec, x, attention_mask=attn).to(torch.float64)  # [B, L, V]
    logits += bias[:, None]
    probs = torch.softmax(logits, dim=-1)  # [B, L, V]: the full float64 softmax
    x0 = logits.argmax(-1)  # [B, L]
    conf = probs.gather(-1, x0[..., None]).squeeze(-1)  # [B, L]
    left = leftmost_masked(x, spec.mask_id)  # [B]
    p_eos = probs[torch.arange(x.shape[0], device=x.device), left.clamp_min(0), spec.eos_id]  # [B] (a copy)
    return x0, conf, p_eos


@torch.no_grad()
def static_generate(model, spec, batch):
    """LLaDA generate.py semantics for one static batch (shared gen/steps/block = the batch max).

    Returns (generated tokens per request, token forwards: B x L per step).
    """
    from a2d_guard.diffusion.monitor import leftmost_masked, should_reject
    from a2d_guard.diffusion.schedule import num_transfer_tokens

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
    forwards = 0
    for blk in range(nb):
        end = plen + (blk + 1) * block
        n_mask = (x[:, :end] == spec.mask_id).sum(1)
        schedule = [num_transfer_tokens(int(n), steps // nb) for n in n_mask.tolist()]
        for s in range(steps // nb):
            x0, conf, p_eos = static_step(model, spec, x, attn, bias)
            forwards += x.numel()  # B x L token positions through the body
            left = leftmost_masked(x, spec.mask_id)
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
    return out, forwards


# --- systems ------------------------------------------------------------------------------------


def parse_system(system: str) -> tuple[str, str, float | None]:
    """``engine+dual+threshold@0.9`` -> ("engine", "dual", 0.9); ``static`` -> ("static", "none", None)."""
    name, _, value = system.partition("@")
    kind, *mods = name.split("+")
    cache = next((m for m in mods if m in ("prefix", "dual")), "none")
    unknown = [m for m in mods if m not in ("prefix", "dual", "threshold")]
    if kind not in ("reference", "static", "engine") or unknown or (kind != "engine" and mods):
        raise SystemExit(f"error: unknown system {system!r}; use reference, static, engine, engine+prefix, "
                         "engine+dual, engine+threshold or engine+dual+threshold")
    return kind, cache, (float(value) if "threshold" in mods else None)


def expand_systems(systems: str, thresholds: str) -> list[str]:
    """``...+threshold`` -> ``...+threshold@T`` for each T of ``--parallel-threshold``."""
    out = []
    for system in systems.split(","):
        if system.endswith("+threshold"):
            out += [f"{system}@{float(t)}" for t in thresholds.split(",")]
        else:
            out.append(system)
    for system in out:
        parse_system(system)
    return out


def _runner(system, model, tok, spec, batch):
    """A function reqs -> (generated tokens, steps summed over requests, token forwards)."""
    kind, cache, _ = parse_system(system)
    if kind == "reference":
        from a2d_guard.diffusion.reference import reference_generate

        def reference(reqs):
            results = [reference_generate(model, spec, ids, p) for ids, p in reqs]
            forwards = sum(r.steps * (len(ids) + p.gen_length) for r, (ids, p) in zip(results, reqs, strict=True))
            return sum(len(r.token_ids) for r in results), sum(r.steps for r in results), forwards

        return reference
    if kind == "static":
        def static(reqs):
            batches = [reqs[i:i + batch] for i in range(0, len(reqs), batch)]
            runs = [static_generate(model, spec, b) for b in batches]
            steps = sum(len(b) * max(p.steps for _, p in b) for b in batches)  # no early exit
            return sum(sum(t) for t, _ in runs), steps, sum(f for _, f in runs)

        return static

    def engine(reqs):
        from a2d_guard.engine.llm_engine import LLMEngine

        eng = LLMEngine(model, tok, spec, max_num_seqs=batch, cache=cache)
        for ids, p in reqs:
            eng.add_request(None, ids, p)
        outs = []
        while eng.has_unfinished_requests():
            outs.extend(eng.step())
        return (sum(len(o.outputs[0].token_ids) for o in outs), sum(o.outputs[0].steps for o in outs),
                eng.token_forwards)

    return engine


def run_system(system: str, model_name: str, device: str, workload: str, cfg: dict, queue) -> None:
    """Child process: load, warm up, run one system on one workload, report throughput and memory."""
    try:
        if cfg.get("threads"):
            torch.set_num_threads(cfg["threads"])
        model, tok, spec = load(model_name, device)
        reqs = make_workload(workload, spec, tokenizer=tok, **cfg)
        threshold = parse_system(system)[2]
        if threshold is not None:
            reqs = [(ids, p.replace(parallel_threshold=threshold)) for ids, p in reqs]
        run = _runner(system, model, tok, spec, cfg["batch"])
        run(warmup_requests(reqs))  # warm-up (allocator, kernels, lazy imports)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        base_rss = _rss_mb()
        t0 = time.perf_counter()
        tokens, steps, forwards = run(reqs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        peak = ((torch.cuda.max_memory_allocated() - base) / 2**20 if device.startswith("cuda")
                else max(0.0, _peak_rss_mb() - base_rss))
        queue.put({"requests_per_s": len(reqs) / wall, "tokens_per_s": tokens / wall, "peak_mem_mb": peak,
                   "wall_s": wall, "requests": len(reqs), "tokens": tokens, "mean_steps": steps / len(reqs),
                   "token_forwards": forwards,
                   "token_forwards_per_token": forwards / tokens if forwards is not None and tokens else None,
                   "token_forwards_per_request": forwards / len(reqs) if forwards is not None else None})
    except torch.OutOfMemoryError as exc:
        queue.put({"error": f"OOM: {str(exc).splitlines()[0]}"})
    except Exception as exc:  # recorded, not a crash: the other systems still report
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(system, args, workload, cfg, timeout: float | None = None) -> dict:
    """Run one system in a fresh process; a run past ``timeout`` seconds is killed and recorded."""
    if timeout is not None and timeout <= 0:
        return {"error": "skipped: --budget spent"}
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=run_system, args=(system, args.model, args.device, workload, cfg, queue))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return {"error": f"timeout: cut after {timeout:.0f} s"}
    return queue.get() if not queue.empty() else {"error": f"process exited with code {proc.exitcode}"}


# --- ratios and goals ---------------------------------------------------------------------------


def add_ratios(row: dict, systems: list[str]) -> None:
    """``X_vs_static`` / ``X_vs_engine`` / ``engine_vs_reference`` (req/s) and ``X_peak_mem_vs_static``."""
    def ok(s):
        return "requests_per_s" in row.get(s, {})

    for s in systems:
        if not ok(s):
            continue
        others = (["static"] if s not in ("static", "reference") else []) + (
            ["engine"] if s.startswith("engine+") else []) + (["reference"] if s == "engine" else [])
        for other in others:
            if ok(other):
                row[f"{s}_vs_{other}"] = row[s]["requests_per_s"] / row[other]["requests_per_s"]
        if s != "static" and ok("static") and row["static"]["peak_mem_mb"] > 0:
            row[f"{s}_peak_mem_vs_static"] = row[s]["peak_mem_mb"] / row["static"]["peak_mem_mb"]


# Issue 13's goals, per model preset: (goal, system, baseline, measure, target, settings it holds for).
SPEED = "requests_per_s"
GOALS = {
    "tiny-4layer": [("dual cache alone >= 3x exact-mode req/s (random 4-layer model, CPU)",
                     "engine+dual", "engine", SPEED, 3.0, dict(device="cpu", gen=256, block=32))],
    "demo-base": [("dual + threshold 0.9 >= 5x exact-mode req/s (demo's trained base, CPU)",
                   "engine+dual+threshold@0.9", "engine", SPEED, 5.0, dict(device="cpu", gen=256, block=32)),
                  ("dual + threshold 0.9 >= 8x static req/s (demo's trained base, CPU)",
                   "engine+dual+threshold@0.9", "static", SPEED, 8.0, dict(device="cpu", gen=256, block=32))],
    "llada8b-random": [("dual + threshold 0.9 >= 10x static req/s (GPU, LLaDA-8B shape, batch 64)",
                        "engine+dual+threshold@0.9", "static", SPEED, 10.0,
                        dict(device="cuda", batch=64, gen=256, block=32))],
    "tiny-llada-vocab": [("engine peak memory <= 0.5x static at LLaDA's vocabulary, batch 16",
                          "engine", "static", "peak_mem_mb", 0.5, dict(batch=16))],
}


def check_goals(goal_set: str | None, device: str, cfg: dict, workloads: dict) -> list[dict]:
    """One entry per (goal, workload): the measured ratio, the target and whether it was met.

    ``met`` is null when the run's settings are not the goal's or a system has no figure:
    the goal stays as the issue set it, the run just does not speak to it.
    """
    out = []
    for text, system, baseline, key, target, settings in GOALS.get(goal_set or "", []):
        here = dict(device=device.split(":")[0], **cfg)
        differs = {k: v for k, v in settings.items() if here.get(k) != v}
        for workload, row in workloads.items():
            entry = dict(goal=text, workload=workload, system=system, baseline=baseline, measure=key,
                         target=target, value=None, met=None)
            num, den = row.get(system, {}).get(key), row.get(baseline, {}).get(key)
            if differs:
                entry["why_not_evaluated"] = f"the goal holds for {settings}, this run has " + ", ".join(
                    f"{k}={here.get(k)}" for k in differs)
            elif num is None or not den:
                entry["why_not_evaluated"] = f"no {key} for {system if num is None else baseline}"
            else:
                entry["value"] = num / den
                entry["met"] = entry["value"] >= target if key == SPEED else entry["value"] <= target
            out.append(entry)
    return out


# --- main ---------------------------------------------------------------------------------------


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny",
                    help="tiny, a model folder, or a preset: tiny-4layer, tiny-llada-vocab, llada8b-random (GPU)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workloads", default="uniform,mixed_lengths,reject25")
    ap.add_argument("--systems", default="reference,static,engine,engine+threshold,engine+prefix,engine+dual,"
                                         "engine+dual+threshold")
    ap.add_argument("--parallel-threshold", default="0.9",
                    help="comma-separated thresholds for the +threshold systems (one system per value)")
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--prompt-len", type=int, default=None)
    ap.add_argument("--gen-length", type=int, default=None)
    ap.add_argument("--block-length", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads per system (1 avoids OpenMP stalls on a shared, busy machine)")
    ap.add_argument("--goals", default="auto",
                    help="which of issue 13's goals to check: auto (by --model preset), demo-base (pass with "
                         "the demo's trained base folder), none, or a preset name")
    ap.add_argument("--system-timeout", type=float, default=None, help="seconds one system may run (then cut)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for the whole run: each system gets at most what is left")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", help="also write the JSON object to this file")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    big = args.model == "llada8b-random"
    defaults = (dict(n=128, batch=64, prompt_len=128, gen=256, block=32, steps=256) if big
                else dict(n=160, batch=16, prompt_len=24, gen=64, block=16, steps=64))
    cfg = {**defaults, **{k: v for k, v in dict(n=args.requests, batch=args.batch, prompt_len=args.prompt_len,
                                                gen=args.gen_length, block=args.block_length,
                                                steps=args.steps, threads=args.threads).items() if v is not None}}
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else (
        f"cpu ({platform.processor() or platform.machine()}, {args.threads or torch.get_num_threads()} threads)")
    systems = expand_systems(args.systems, args.parallel_threshold)
    goal_set = (args.model if args.goals == "auto" else args.goals) if args.goals != "none" else None
    result = {"command": " ".join(["python", "bench/engine.py", *(sys.argv[1:] if argv is None else argv)]),
              "device": device_name, "model": args.model, "config": cfg,
              "load_average_1m": round(os.getloadavg()[0], 2), "workloads": {}}
    for workload in args.workloads.split(","):
        row = {}
        for s in systems:
            left = None if args.budget is None else args.budget - (time.perf_counter() - started)
            timeout = min(t for t in (args.system_timeout, left, float("inf")) if t is not None)
            row[s] = measure(s, args, workload, cfg, None if timeout == float("inf") else timeout)
        add_ratios(row, systems)
        result["workloads"][workload] = row
        if not args.json:
            _print_row(workload, row)
    result["goals"] = check_goals(goal_set, args.device, cfg, result["workloads"])
    result["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    if not args.json:
        _print_goals(result["goals"])
    if args.out:  # whole or not at all: a temp name, then a rename
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
        os.replace(tmp, args.out)
    if args.json:
        print(json.dumps(result))
    return 0


def _print_row(workload, row) -> None:
    print(f"\n{workload}")
    for system, r in row.items():
        if not isinstance(r, dict):
            continue
        if "error" in r:
            print(f"  {system:>26}: {r['error']}")
        else:
            tf = r.get("token_forwards_per_token")
            print(f"  {system:>26}: {r['requests_per_s']:8.2f} req/s {r['tokens_per_s']:10.1f} tok/s "
                  f"{r['mean_steps']:7.1f} steps/request {'-' if tf is None else f'{tf:9.1f}'} token-forwards/token"
                  f"  peak {r['peak_mem_mb']:9.1f} MB")
    for key, ratio in row.items():
        if "_vs_" in key:
            system, other = key.rsplit("_vs_", 1)
            what = "peak memory" if system.endswith("_peak_mem") else "req/s"
            print(f"  {system.removesuffix('_peak_mem')} / {other} ({what}): {ratio:.2f}x")


def _print_goals(goals) -> None:
    for g in goals:
        verdict = {True: "met", False: "NOT met", None: "not evaluated"}[g["met"]]
        value = "" if g["value"] is None else f"{g['value']:.2f}x, "
        print(f"goal [{g['workload']}] {g['goal']}: {value}{verdict}"
              + (f" ({g['why_not_evaluated']})" if "why_not_evaluated" in g else ""))


if __name__ == "__main__":
    sys.exit(main())
