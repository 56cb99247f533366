"""Training throughput of the A2D objective: tokens/s and peak memory per configuration.

One optimizer step = forward_mask + forward + A2D loss + backward + AdamW on the LoRA
weights, exactly what ``a2d-guard train`` runs (``training.objective.a2d_loss``), on
random token batches (half the rows harmful).

- CPU (default): the built-in tiny model, LoRA r=32, batch 16, length 128.
- CUDA (``--device cuda``): an LLaDA-8B-shaped bidirectional Llama with random bf16
  weights (hidden 4096, 32 layers, 32 heads, MLP 12288, vocab 126464), LoRA r=32 (fp32
  adapter weights), batch 16, length 128, bf16 autocast.

Each configuration (gradient checkpointing off / on) runs in a fresh subprocess so its
peak memory is its own (CPU: max RSS; CUDA: ``torch.cuda.max_memory_allocated``)::

    python bench/train_throughput.py                       # CPU table
    python bench/train_throughput.py --json --out bench/results/train_throughput_cpu.json
    python bench/train_throughput.py --device cuda --json --out bench/results/train_throughput_h100.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

LLADA_8B = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                intermediate_size=12288, vocab_size=126464, max_position_embeddings=4096)


def build(device: str):
    """(model, spec): tiny on CPU, LLaDA-8B-shaped random bf16 on CUDA."""
    from a2d_guard.models import load_model
    from a2d_guard.models.llada import build_bidirectional_llama, llama_config
    from a2d_guard.models.spec import ModelSpec

    if device == "cpu":
        model, _, spec = load_model("tiny", device="cpu")
        return model, spec
    config = llama_config(tie_word_embeddings=False, rms_norm_eps=1e-5, rope_theta=500000.0, **LLADA_8B)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = build_bidirectional_llama(config)
    finally:
        torch.set_default_dtype(default)
    spec = ModelSpec(family="llada", mask_id=126336, eos_id=126081, eot_id=126348, pad_id=126081,
                     vocab_size=LLADA_8B["vocab_size"], lora_targets=("q_proj", "k_proj", "v_proj", "o_proj",
                                                                       "gate_proj", "up_proj", "down_proj"))
    return model, spec


def random_batch(spec, batch: int, length: int, step: int):
    from a2d_guard.training.data import Batch

    g = torch.Generator().manual_seed(step)
    prompt = torch.randint(length // 8, length // 3, (batch,), generator=g)
    return Batch(input_ids=torch.randint(10, min(spec.vocab_size, 30000), (batch, length), generator=g),
                 prompt_lengths=prompt, content_spans=torch.stack([torch.ones_like(prompt), prompt - 1], 1),
                 is_harmful=torch.arange(batch) % 2 == 0, row_seeds=torch.arange(batch) + step * batch)


def one(device: str, batch: int, length: int, steps: int, warmup: int, checkpointing: bool, rank: int) -> dict:
    """Run one configuration in this process; returns its row."""
    from a2d_guard.training.lora import add_lora
    from a2d_guard.training.objective import a2d_loss

    model, spec = build(device)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(0)
    model = add_lora(model, spec, r=rank, alpha=2 * rank, dropout=0.05)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.1)
    on_gpu = device == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else torch.autocast("cpu", enabled=False)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for step in range(warmup + steps):
        b = random_batch(spec, batch, length, step)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast:
            terms = a2d_loss(model, spec, b, objective="a2d", device=device)
        terms.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return {"device": device, "model": "tiny" if device == "cpu" else "llada-8b-shape", "batch": batch,
            "length": length, "lora_r": rank, "gradient_checkpointing": checkpointing,
            "step_s": round(sec, 4), "tokens_per_s": round(batch * length / sec, 1),
            "peak_memory_gib": round(peak, 3), "peak_memory_kind": "cuda_allocated" if device == "cuda" else "max_rss",
            "trainable_params": sum(p.numel() for p in params)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--checkpointing", choices=["both", "off", "on"], default="both",
                    help="gradient checkpointing configurations to run (default: off, then on)")
    ap.add_argument("--one", choices=["off", "on"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one is not None:  # child: one configuration, one JSON line
        row = one(args.device, args.batch, args.length, args.steps, args.warmup, args.one == "on", args.rank)
        print(json.dumps(row))
        return
    rows = []
    for ckpt in (("off", "on") if args.checkpointing == "both" else (args.checkpointing,)):
        cmd = [sys.executable, __file__, "--one", ckpt] + [a for a in sys.argv[1:] if a not in ("--json",)]
        cmd = [c for i, c in enumerate(cmd) if not (cmd[i - 1] == "--out" or c == "--out")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        else:  # an OOM (or any failure) of one configuration is a result; the other still runs
            sys.stderr.write(proc.stderr)
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            rows.append({"gradient_checkpointing": ckpt == "on", "error": last[:500]})
    result = {"bench": "train_throughput", "torch": torch.__version__, "machine": platform.machine(),
              "threads": torch.get_num_threads() if args.device == "cpu" else None,
              "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
              "load_average_1m": round(os.getloadavg()[0], 2), "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'grad ckpt':>10}{'step s':>10}{'tokens/s':>12}{'peak GiB':>10}")
        for r in rows:
            if "error" in r:
                print(f"{str(r['gradient_checkpointing']):>10}  {r['error']}")
                continue
            print(f"{str(r['gradient_checkpointing']):>10}{r['step_s']:>10.4f}{r['tokens_per_s']:>12.1f}"
                  f"{r['peak_memory_gib']:>10.3f}")


if __name__ == "__main__":
    main()
