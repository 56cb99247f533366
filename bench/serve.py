"""Server benchmark: `a2d-guard serve` under C concurrent streaming clients vs offline
``LLM.generate`` on the same requests vs the same server at ``--batch 1``.

One run, one model, the same requests for every system (``bench/engine.py``'s workloads:
``uniform``, and ``reject25`` where every 4th request is forced to refuse through
``logit_bias`` on EOS, as the A2D monitor would on a harmful prompt):

* ``offline``: ``LLM.generate`` in this process, ``--batch`` running slots;
* ``server``: ``a2d-guard serve --batch B`` in its own process on 127.0.0.1, driven by C
  asyncio clients over HTTP (``/v1/completions`` with token-id prompts, ``stream=true``);
* ``server_batch1``: the same server at ``--batch 1`` (fewer requests: it is slow);
* with ``--replicas 1,2``: ``a2d-guard serve --replicas N`` on a local Ray cluster, each
  replica with one CPU (``--replica-cpus 1``) and one torch thread, behind Ray Serve's
  proxy; the ratio of N replicas to the first count is reported from the same run.

Reported per system: req/s, completion tokens/s, p50/p95/p99 end-to-end latency, p50/p95
time to the first visible token (streamed), lost requests (no final chunk, an error, a
connection failure) and duplicated ones (more than one final chunk), and for the servers
how many answers differ from the offline text of the same request. Ratios against offline
and against ``--batch 1`` come from the same run. Usage::

    python bench/serve.py --json                                  # tiny on CPU, both workloads
    python bench/serve.py --workloads uniform --requests 10000 --batch1-requests 0 --json  # soak
    python bench/serve.py --replicas 1,2 --workloads uniform --batch1-requests 0 --json    # Ray Serve scale-out
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import make_workload  # noqa: E402  (bench/engine.py: the same forced workloads)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q / 100 * (len(s) - 1))))]


def body_of(ids, p, index: int, stream: bool = True) -> dict:
    body = {"model": "bench", "prompt": ids, "max_tokens": p.gen_length, "steps": p.steps,
            "block_length": p.block_length, "eos_threshold": p.eos_threshold, "seed": p.seed,
            "logit_bias": {str(k): v for k, v in p.logit_bias.items()}, "stream": stream, "user": f"req-{index}"}
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


async def one_plain_request(client, url: str, body: dict) -> dict:
    """One non-streamed request (no time to first token: the answer arrives whole)."""
    t0 = time.perf_counter()
    try:
        r = await client.post(url + "/v1/completions", json=body)
        if r.status_code != 200:
            return {"error": f"HTTP {r.status_code}: {r.text[:200]!r}"}
        data = r.json()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    c = data["choices"][0]
    return {"latency": time.perf_counter() - t0, "ttft": None, "text": c["text"], "finals": [c["finish_reason"]],
            "tokens": data["usage"]["completion_tokens"], "error": None}


async def one_request(client, url: str, body: dict) -> dict:
    """Stream one request; returns latency, TTFT, text, finish chunks and token count."""
    if not body["stream"]:
        return await one_plain_request(client, url, body)
    t0 = time.perf_counter()
    ttft, text, finals, tokens, error = None, [], [], 0, None
    try:
        async with client.stream("POST", url + "/v1/completions", json=body) as r:
            if r.status_code != 200:
                return {"error": f"HTTP {r.status_code}: {(await r.aread())[:200]!r}"}
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    error = chunk["error"]["message"]
                    continue
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                for c in chunk.get("choices", []):
                    if c.get("text"):
                        text.append(c["text"])
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                    if c.get("finish_reason"):
                        finals.append(c["finish_reason"])
    except Exception as exc:  # a lost request, counted, never a crash of the benchmark
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"latency": time.perf_counter() - t0, "ttft": ttft, "text": "".join(text), "finals": finals,
            "tokens": tokens, "error": error}


async def drive(url: str, bodies: list[dict], concurrency: int) -> tuple[list[dict], float]:
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for i, b in enumerate(bodies):
        queue.put_nowait((i, b))
    results: list[dict | None] = [None] * len(bodies)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:

        async def worker():
            while not queue.empty():
                i, b = queue.get_nowait()
                results[i] = await one_request(client, url, b)

        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    drive.client_cpu_s = time.process_time() - cpu0  # the load generator's own share of the CPU
    return results, wall


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, batch: int, replicas: int | None = None) -> tuple[subprocess.Popen, str]:
    """``a2d-guard serve`` in its own process; ``replicas``: on Ray Serve (Ray's proxy needs a real port)."""
    port = free_port() if replicas else 0
    cmd = [sys.executable, "-m", "a2d_guard.cli.main", "serve", "--model", args.model, "--port", str(port),
           "--batch", str(batch), "--served-model-name", "bench", "--max-waiting", str(args.requests + 64),
           "--gen-length", str(args.gen), "--steps", str(args.steps), "--block-length", str(args.block)]
    if replicas:
        cmd += ["--replicas", str(replicas), "--replica-cpus", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.server_threads)}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:
        m = re.search(r"http://\S+:\d+", line) if "a2d-guard serving" in line else None
        if m:  # keep reading its stderr, or a full pipe would block the server
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, m.group(0)
    raise RuntimeError(f"the server did not start: {proc.wait()}")


def stop_server(proc: subprocess.Popen) -> int:
    proc.terminate()
    return proc.wait(120)


def summarize(results: list[dict], wall: float, reference: list[str] | None) -> dict:
    ok = [r for r in results if r and not r.get("error") and len(r["finals"]) == 1]
    lost = sum(1 for r in results if r is None or r.get("error") or not r.get("finals"))
    duplicated = sum(1 for r in results if r and len(r.get("finals", [])) > 1)
    lat = [r["latency"] for r in ok]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    out = {"requests": len(results), "wall_s": round(wall, 3), "req_per_s": round(len(ok) / wall, 2),
           "tokens_per_s": round(sum(r["tokens"] for r in ok) / wall, 1),
           "latency_s": {q: _r(percentile(lat, float(q[1:]))) for q in ("p50", "p95", "p99")},
           "ttft_visible_s": {q: _r(percentile(ttft, float(q[1:]))) for q in ("p50", "p95", "p99")},
           "lost": lost, "duplicated": duplicated,
           "finish_reasons": {k: sum(1 for r in ok if r["finals"][0] == k) for k in
                              sorted({r["finals"][0] for r in ok})}}
    if reference is not None:
        out["differs_from_offline"] = sum(1 for r, t in zip(results, reference, strict=True)
                                          if r and not r.get("error") and r["text"] != t)
    return out


def _r(x):
    return None if x is None else round(x, 4)


def run_offline(args, reqs) -> tuple[dict, list[str]]:
    from a2d_guard.engine.llm import LLM

    llm = LLM(args.model, max_num_seqs=args.batch)
    llm.generate([reqs[0][0]], [reqs[0][1]])  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate([ids for ids, _ in reqs], [p for _, p in reqs])
    wall = time.perf_counter() - t0
    # content_filter answers the refusal text (default ""), as the server does
    texts = ["" if o.outputs[0].rejected else o.outputs[0].text for o in outs]
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return {"requests": len(reqs), "wall_s": round(wall, 3), "req_per_s": round(len(reqs) / wall, 2),
            "tokens_per_s": round(tokens / wall, 1), "lost": 0, "duplicated": 0}, texts


def run_server(args, reqs, batch: int, n: int, reference, replicas: int | None = None) -> dict:
    bodies = [body_of(ids, p, i, stream=not args.no_stream) for i, (ids, p) in enumerate(reqs[:n])]
    proc, url = start_server(args, batch, replicas)
    try:
        asyncio.run(drive(url, bodies[: min(len(bodies), args.concurrency)], args.concurrency))  # warm-up
        results, wall = asyncio.run(drive(url, bodies, args.concurrency))
    finally:
        code = stop_server(proc)
    out = summarize(results, wall, reference[:n] if reference is not None else None)
    out["client_cpu_s"] = round(drive.client_cpu_s, 2)
    out["exit_code"] = code
    return out


def add_replicas(args, reqs, texts, res: dict) -> None:
    """``res["replicas"][N]`` for each count, and each count's req/s and p99 against the first's."""
    counts = [int(c) for c in args.replicas.split(",")]
    res["replicas"] = {str(c): run_server(args, reqs, args.batch, len(reqs), texts, replicas=c) for c in counts}
    base = res["replicas"][str(counts[0])]
    res["replicas_vs_first"] = {str(c): {"req_per_s": round(r["req_per_s"] / base["req_per_s"], 3),
                                         "p99_latency": round(r["latency_s"]["p99"] / base["latency_s"]["p99"], 3)}
                                for c, r in res["replicas"].items()}
    res["replicas_vs_server_req_per_s"] = {c: round(r["req_per_s"] / res["server"]["req_per_s"], 3)
                                           for c, r in res["replicas"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--workloads", default="uniform,reject25")
    ap.add_argument("--requests", type=int, default=1024)
    ap.add_argument("--batch1-requests", type=int, default=128, help="requests for the --batch 1 server (0 = skip)")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--block", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of offline LLM.generate")
    ap.add_argument("--server-threads", type=int, default=1,
                    help="torch threads of the server's engine; on a small CPU the load generator and the HTTP "
                         "thread need a core, and busy-waiting intra-op threads would fight them for it")
    ap.add_argument("--no-stream", action="store_true", help="plain requests (no TTFT; less client work)")
    ap.add_argument("--replicas", default=None, help="also serve on Ray Serve with these replica counts, e.g. 1,2")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--out", default=None, help="results file (default bench/results/serve_<model>_<device>.json)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from a2d_guard.models import load_model

    _, _, spec = load_model(args.model, device="cpu")
    report = {"benchmark": "serve", "model": args.model, "device": "cuda" if torch.cuda.is_available() else "cpu",
              "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "torch_threads_offline": args.threads, "torch_threads_server": args.server_threads,
                       "torch": torch.__version__},
              "settings": {k: getattr(args, k) for k in ("requests", "batch1_requests", "concurrency", "batch",
                                                         "prompt_len", "gen", "steps", "block", "no_stream",
                                                         "replicas")},
              "workloads": {}}
    for name in args.workloads.split(","):
        reqs = make_workload(name, spec, args.requests, args.prompt_len, args.gen, args.block, args.steps)
        offline, texts = run_offline(args, reqs)
        res = {"offline": offline, "server": run_server(args, reqs, args.batch, len(reqs), texts)}
        if args.batch1_requests:
            res["server_batch1"] = run_server(args, reqs, 1, args.batch1_requests, texts)
        res["server_vs_offline_req_per_s"] = round(res["server"]["req_per_s"] / offline["req_per_s"], 3)
        if "server_batch1" in res:
            res["server_vs_batch1_req_per_s"] = round(res["server"]["req_per_s"] / res["server_batch1"]["req_per_s"],
                                                      2)
        if args.replicas:
            add_replicas(args, reqs, texts, res)
        report["workloads"][name] = res
        if not args.json:
            print(name, json.dumps(res, indent=1))
    kind = "serve_replicas" if args.replicas else "serve"
    out = Path(args.out or Path(__file__).parent / "results" / f"{kind}_{args.model}_{report['device']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
