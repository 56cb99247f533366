"""How long can one request make everyone else wait? `a2d-guard serve --model tiny` in its own
process; a prober polls ``/health`` every 20 ms and a benign streaming request runs, while the
audit's poison requests (issue 17) are sent one after another. Reported per poison: its status
and time to answer, the worst ``/health`` latency and the worst gap between two chunks of the
benign stream while it was in flight, against the same measures with no poison in the same run
(``baseline``), as ratios. Usage::

    python bench/poison.py --json            # writes bench/results/poison_tiny_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


def poisons() -> dict[str, tuple[str, bytes]]:
    """name -> (route, raw body): the audit's rows, each sized to the server's defaults."""
    def raw(obj) -> bytes:
        return json.dumps(obj).encode()

    return {
        "seed_2**63": (COMPLETIONS, raw({"prompt": "hi", "max_tokens": 16, "seed": 2**63})),
        "seed_2**63-1_n2": (COMPLETIONS, raw({"prompt": "hi", "max_tokens": 16, "seed": 2**63 - 1, "n": 2})),
        "steps_1e12": (COMPLETIONS, raw({"prompt": "hi", "max_tokens": 16, "steps": 10**12, "block_length": 8})),
        "steps_1e8": (COMPLETIONS, raw({"prompt": "hi", "max_tokens": 16, "steps": 10**8, "block_length": 8})),
        "body_50MB": (COMPLETIONS, b'{"prompt": "' + b"a " * 25_000_000 + b'"}'),
        "prompt_5MB": (COMPLETIONS, b'{"prompt": "' + b"a " * 2_500_000 + b'"}'),
        "prompt_3.9MB_under_body_limit": (COMPLETIONS, b'{"prompt": "' + b"a " * 1_950_000 + b'"}'),
        "10k_prompts_of_1kB": (COMPLETIONS, raw({"prompt": ["word " * 200] * 10_000})),
        "3k_prompts_of_1kB_under_body_limit": (COMPLETIONS, raw({"prompt": ["word " * 200] * 3_000})),
        "1M_prompts_of_2_chars": (COMPLETIONS, raw({"prompt": ["ab"] * 1_000_000})),
        "600k_prompts_of_2_chars_under_body_limit": (COMPLETIONS, raw({"prompt": ["ab"] * 600_000})),
        "500k_token_ids": (COMPLETIONS, raw({"prompt": [5] * 500_000})),
        "chat_3.9MB_message": (CHAT, raw({"messages": [{"role": "user", "content": "a " * 1_950_000}]})),
        "lone_surrogate": (COMPLETIONS, raw({"prompt": "hi \ud800"})),
    }


class Prober(threading.Thread):
    """Polls /health; records (start time, latency) of each probe."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.samples, self.stop = url, [], threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                client.get(self.url + "/health")
                self.samples.append((t0, time.perf_counter() - t0))
                time.sleep(0.02)

    def worst(self, start: float, end: float) -> float:
        return max((lat for t, lat in self.samples if start <= t <= end), default=0.0)


def stream_gaps(url: str, out: list, stop: threading.Event) -> None:
    """Benign streams, one after another: the times their chunks arrive."""
    body = {"messages": [{"role": "user", "content": "tell me a story"}], "max_tokens": 256, "steps": 256,
            "block_length": 32, "eos_threshold": 1.0, "logit_bias": {"2": -100, "3": -100}, "stream": True}
    with httpx.Client(timeout=300) as client:
        while not stop.is_set():
            with client.stream("POST", url + CHAT, json=body) as r:
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        out.append(time.perf_counter())


def worst_gap(times: list[float], start: float, end: float) -> float:
    inside = [t for t in times if start <= t <= end + 1.0]
    return max((b - a for a, b in zip(inside, inside[1:], strict=False)), default=0.0)


def start_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "a2d_guard.cli.main", "serve", "--port", "0", "--batch", "8"],
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    while line and "serving" not in line:
        line = proc.stderr.readline()
    return proc, re.search(r"http://\S+:\d+", line).group(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="write bench/results/poison_tiny_cpu.json")
    ap.add_argument("--baseline-s", type=float, default=3.0, help="seconds measured with no poison")
    args = ap.parse_args()
    proc, url = start_server()
    prober, chunks, stop = Prober(url), [], threading.Event()
    streamer = threading.Thread(target=stream_gaps, args=(url, chunks, stop), daemon=True)
    try:
        prober.start()
        streamer.start()
        time.sleep(1.0)
        t0 = time.perf_counter()
        time.sleep(args.baseline_s)
        t1 = time.perf_counter()
        base = {"health_worst_s": prober.worst(t0, t1), "stream_gap_worst_s": worst_gap(chunks, t0, t1)}
        rows = {}
        with httpx.Client(timeout=300) as client:
            for name, (route, body) in poisons().items():
                start = time.perf_counter()
                try:
                    r = client.post(url + route, content=body, headers={"content-type": "application/json"})
                    status = r.status_code
                    param = r.json().get("error", {}).get("param") if status >= 400 else None
                except httpx.HTTPError as exc:
                    status, param = f"{type(exc).__name__}", None
                end = time.perf_counter()
                time.sleep(0.2)
                health = prober.worst(start, end + 0.2)
                gap = worst_gap(chunks, start, end)
                benign = client.post(url + CHAT, json={"messages": [{"role": "user", "content": "hi"}],
                                                       "max_tokens": 16, "steps": 16, "block_length": 8})
                rows[name] = {"bytes": len(body), "status": status, "param": param,
                              "answer_s": round(end - start, 4), "health_worst_s": round(health, 4),
                              "health_ratio_vs_baseline": round(health / max(base["health_worst_s"], 1e-6), 2),
                              "stream_gap_worst_s": round(gap, 4),
                              "stream_gap_ratio_vs_baseline": round(gap / max(base["stream_gap_worst_s"], 1e-6), 2),
                              "benign_after": benign.status_code}
                print(f"{name:44s} {status} {param or '':12s} answer {end - start:7.3f} s  health worst "
                      f"{health:6.3f} s  stream gap {gap:6.3f} s  benign {benign.status_code}", flush=True)
    finally:
        stop.set()
        prober.stop.set()
        proc.terminate()
        proc.wait(60)
    result = {"bench": "poison", "model": "tiny", "batch": 8, "device": "cpu", "cpus": os.cpu_count(),
              "platform": platform.platform(), "python": platform.python_version(),
              "baseline": {k: round(v, 4) for k, v in base.items()}, "poisons": rows,
              "command": "python bench/poison.py --json"}
    if args.json:
        out = Path(__file__).resolve().parent / "results" / "poison_tiny_cpu.json"
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        tmp.replace(out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
