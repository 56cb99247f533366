"""One offline system of ``bench/peers.py``, in a process (and for a peer, a venv) of its own.

Why a separate script: each peer pins its own transformers (LLaDA's README asks for 4.38.2,
Fast-dLLM for 4.49.0, ours runs on 5.x), so a peer runs under its venv's Python, where
``a2d_guard`` is not installed. This file therefore imports nothing of ours at module level;
only the ``ours-*`` systems import ``a2d_guard`` (they run under the project's Python).

Every system gets the same checkpoint folder, the same prompt token ids (``prompts.json``:
equal lengths, so no system needs padding) and the same gen length, steps, block length and
threshold, and reports the same things: wall time of the timed pass (after one untimed
warm-up request), the decoded tokens of every request (the prompt's mask positions, then the
answer), token positions run through the model, and peak memory. Usage (``bench/peers.py``
builds these command lines)::

    python bench/peers_runner.py --system llada --checkpoint CKPT --prompts prompts.json \
        --peers-dir PEERS --batch 8 --gen-length 64 --steps 64 --block-length 32 --out r.json
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

SYSTEMS = ("ours-exact", "ours-dual+threshold", "llada", "fast-dllm")


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def count_token_forwards(model) -> list[int]:
    """A one-element counter of token positions through ``model`` (rows x length of each call)."""
    box = [0]

    def hook(_module, args, kwargs):
        x = args[0] if args else kwargs.get("input_ids")
        box[0] += int(x.numel())

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return box


def decoded(canvas: torch.Tensor, prompt: list[int], mask_id: int) -> list[int]:
    """The tokens a system decoded: the prompt's mask positions, then the answer."""
    row = canvas.tolist()
    return [row[i] for i, t in enumerate(prompt) if t == mask_id] + row[len(prompt):]


def load_peer_model(system: str, args):
    """The checkpoint through the peer's own modeling code (Fast-dLLM's ``llada/model``)."""
    sys.path.insert(0, str(Path(args.peers_dir) / "Fast-dLLM" / "llada"))
    from model.modeling_llada import LLaDAModelLM

    dtype = getattr(torch, args.dtype)
    model = LLaDAModelLM.from_pretrained(args.checkpoint, torch_dtype=dtype).to(args.device).eval()
    sys.path.pop(0)
    return model


def import_generate(path: Path):
    """``path``'s module (the peer's ``generate.py``) under a name of its own."""
    import importlib.util

    sys.path.insert(0, str(path.parent))  # Fast-dLLM's generate.py imports ``model.modeling_llada``
    spec = importlib.util.spec_from_file_location(f"peer_generate_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_peer(system: str, args, prompts: list[list[int]], mask_id: int) -> dict:
    model = load_peer_model(system, args)
    counter = count_token_forwards(model)
    root = Path(args.peers_dir)
    batch = args.batch
    if system == "llada":
        gen = import_generate(root / "LLaDA" / "generate.py").generate

        def decode(rows):
            x = torch.tensor(rows, device=args.device)
            return gen(model, x, steps=args.steps, gen_length=args.gen_length, block_length=args.block_length,
                       temperature=0.0, remasking="low_confidence", mask_id=mask_id)
    else:  # fast-dllm: dual cache + threshold; its generate builds a batch of one (x = full((1, ...)))
        gen = import_generate(root / "Fast-dLLM" / "llada" / "generate.py").generate_with_dual_cache
        batch = 1

        def decode(rows):
            x = torch.tensor(rows, device=args.device)
            return gen(model, x, steps=args.steps, gen_length=args.gen_length, block_length=args.block_length,
                       temperature=0.0, remasking="low_confidence", mask_id=mask_id,
                       threshold=args.threshold)[0]

    with torch.no_grad():
        decode(prompts[:1])  # warm-up, untimed
        counter[0] = 0
        load_rss = peak_rss_mb()
        outputs = []
        t0 = time.perf_counter()
        for i in range(0, len(prompts), batch):
            rows = prompts[i:i + batch]
            canvas = decode(rows)
            outputs += [decoded(canvas[j], rows[j], mask_id) for j in range(len(rows))]
        wall = time.perf_counter() - t0
    import transformers

    return {"wall_s": wall, "outputs": outputs, "token_forwards": counter[0], "batch_run": batch,
            "peak_rss_mb": peak_rss_mb(), "rss_after_warmup_mb": load_rss,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def run_ours(system: str, args, prompts: list[list[int]], mask_id: int) -> dict:
    from a2d_guard.config import SamplingParams
    from a2d_guard.engine.llm import LLM
    from a2d_guard.models import load_model

    if system == "ours-exact":  # LLaDA generate.py's schedule (protocol "llada"), monitor off
        cache, params = "none", SamplingParams(gen_length=args.gen_length, steps=args.steps,
                                               block_length=args.block_length, eos_threshold=1.0, protocol="llada")
    else:  # Fast-dLLM's dual cache + threshold decoding, monitor off
        cache, params = "dual", SamplingParams(gen_length=args.gen_length, steps=args.steps,
                                               block_length=args.block_length, eos_threshold=1.0,
                                               parallel_threshold=args.threshold)
    loaded = load_model(args.checkpoint, dtype=args.dtype, device=args.device)
    llm = LLM.from_loaded(*loaded, max_num_seqs=args.batch, cache=cache)
    llm.generate(prompts[:1], params)  # warm-up, untimed
    before = llm.engine.token_forwards
    load_rss = peak_rss_mb()
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params)
    wall = time.perf_counter() - t0
    outputs = [o.outputs[0].infill_token_ids + o.outputs[0].token_ids for o in outs]
    import transformers

    return {"wall_s": wall, "outputs": outputs, "token_forwards": llm.engine.token_forwards - before,
            "batch_run": args.batch, "peak_rss_mb": peak_rss_mb(), "rss_after_warmup_mb": load_rss,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--system", choices=SYSTEMS, required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--prompts", required=True, help="prompts.json written by bench/peers.py")
    ap.add_argument("--peers-dir", default="")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--gen-length", type=int, default=64)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--block-length", type=int, default=32)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = json.loads(Path(args.prompts).read_text())
    torch.manual_seed(0)
    run = run_ours if args.system.startswith("ours") else run_peer
    result = run(args.system, args, data["prompts"], data["mask_id"])
    if args.device.startswith("cuda"):
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
