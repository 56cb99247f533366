"""Side by side with the peers (issue 24): the same checkpoint, prompts and settings through
LLaDA's own ``generate.py``, Fast-dLLM's dual cache + threshold decoding, dlmserve's server and
ours, in one run, reporting speed ratios and token agreement.

What runs (each offline system in a fresh process, so its peak memory is its own):

* ``ours-exact``: ``a2d_guard`` in exact mode under LLaDA's schedule (``protocol="llada"``),
  continuous batching with ``--batch`` slots; the algorithm of LLaDA's ``generate.py``;
* ``ours-dual+threshold``: fast mode, dual cache + threshold decoding (Fast-dLLM's algorithm);
* ``llada``: ML-GSAI/LLaDA ``generate.py`` (static batches of ``--batch`` prompts);
* ``fast-dllm``: NVlabs/Fast-dLLM ``llada/generate.py`` ``generate_with_dual_cache`` with the
  threshold; its function builds a batch of one, so it runs requests one at a time at every
  batch size (``batch_run: 1`` in the results);
* servers: ``a2d-guard serve --batch 16`` and ``dlmserve`` (PyPI), both bf16 (dlmserve serves
  bf16 or int4 only), under 8 and 16 concurrent clients sending the same chat requests.

The checkpoint is one random LLaDA-shaped model saved in LLaDA's original format (its
``config.json`` keys and ``model.transformer.blocks.N`` weight names, as our exporter writes),
with a tokenizer that has LLaDA's special-token ids (mask 126336, EOS 126081, ...) because
dlmserve insists on them, and LLaDA's modeling code copied in from ``--peers-dir`` at run time
(Fast-dLLM's ``llada/model/``; never committed). Prompts: plain chat prompts and DIJA-style
prompts with masks inside the user turn, all of the same token length so no system pads.

Peer sources are fetched by the user into ``--peers-dir`` (``LLaDA/generate.py``,
``Fast-dLLM/llada/{generate.py,model/}``); each peer runs in a venv this script creates under
``--venv-dir`` (torch first, from the wheel on disk, then the peer's pins). A peer whose source
or dependencies are missing is reported as skipped with the reason, never faked.

Reported per system and batch size: requests/s, generated tokens/s (answer positions decoded),
token forwards per generated token, peak memory, token agreement with ``ours-exact`` and with
the peer's own output for the same algorithm; ``goals`` checks the issue's ratios. Usage::

    python bench/peers.py --peers-dir ~/peers --json      # writes bench/results/peers_cpu.json
    python bench/peers.py --peers-dir ~/peers --shape llada8b --device cuda --dtype bfloat16 --json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "peers_runner.py"
RESULTS = HERE / "results"

# LLaDA-8B-Instruct's special-token ids (its tokenizer; dlmserve checks the mask id).
LLADA_SPECIAL_IDS = {"<|startoftext|>": 126080, "<|endoftext|>": 126081, "<|mdm_mask|>": 126336,
                     "<|start_header_id|>": 126346, "<|end_header_id|>": 126347, "<|eot_id|>": 126348}
LLADA_VOCAB = 126464
SHAPES = {  # the model body; the vocabulary is always LLaDA's
    "small": dict(hidden_size=128, intermediate_size=352, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=4, max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=500000.0),
    "llada8b": dict(hidden_size=4096, intermediate_size=12288, num_hidden_layers=32, num_attention_heads=32,
                    num_key_value_heads=32, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=500000.0),
}

PEERS = {
    # name -> (source files needed under --peers-dir, pip requirements after torch, what it is)
    "llada": (("LLaDA/generate.py", "Fast-dLLM/llada/model/modeling_llada.py"),
              ("transformers==4.38.2", "numpy", "einops"),
              "ML-GSAI/LLaDA generate.py (LLaDA's modeling code from Fast-dLLM llada/model)"),
    "fast-dllm": (("Fast-dLLM/llada/generate.py", "Fast-dLLM/llada/model/modeling_llada.py"),
                  ("transformers==4.49.0", "accelerate==0.34.2", "numpy", "einops"),
                  "NVlabs/Fast-dLLM llada/generate.py generate_with_dual_cache + threshold"),
    # einops: LLaDA's modeling code needs it, and dlmserve does not pull it in
    "dlmserve": (("Fast-dLLM/llada/model/modeling_llada.py",), ("dlmserve==0.1.1", "einops"),
                 "dlmserve 0.1.1 from PyPI: OpenAI server, step-level batching"),
}
OURS = ("ours-exact", "ours-dual+threshold")
SAME_ALGORITHM = {"ours-exact": "llada", "ours-dual+threshold": "fast-dllm"}  # ours -> the peer it matches


# --------------------------------------------------------------------------- checkpoint and prompts


def llada_tokenizer(max_length: int):
    """A WordPiece tokenizer over the tiny vocabulary with LLaDA's special-token ids and size.

    Only the ids of the special tokens and the vocabulary size have to be LLaDA's (dlmserve
    checks ``<|mdm_mask|>`` is 126336); the other rows are reserved fillers no prompt uses.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from a2d_guard.models.tiny import CHAT_TEMPLATE, SPECIAL_TOKENS, UNK, tiny_vocab

    pieces = [p for p in tiny_vocab() if p not in SPECIAL_TOKENS]
    vocab = {p: i for i, p in enumerate(pieces)}
    vocab[UNK] = len(vocab)
    by_id = {i: t for t, i in LLADA_SPECIAL_IDS.items()}
    for i in range(len(vocab), LLADA_VOCAB):
        vocab[by_id.get(i, f"<|reserved_{i}|>")] = i
    core = Tokenizer(models.WordPiece(vocab=vocab, unk_token=UNK, max_input_chars_per_word=64))
    core.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    core.add_special_tokens([UNK, *LLADA_SPECIAL_IDS])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                                  unk_token=UNK, mask_token="<|mdm_mask|>", pad_token="<|endoftext|>",
                                  additional_special_tokens=["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"],
                                  model_max_length=max_length)
    tok.chat_template = CHAT_TEMPLATE
    return tok, core


def save_tokenizer(core, folder: Path, max_length: int) -> None:
    """``tokenizer.json`` plus a plain ``tokenizer_config.json`` that transformers 4.38 to 5.x all read."""
    from a2d_guard.models.tiny import CHAT_TEMPLATE, UNK

    core.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|startoftext|>",
              "eos_token": "<|endoftext|>", "unk_token": UNK, "mask_token": "<|mdm_mask|>",
              "pad_token": "<|endoftext|>", "padding_side": "left", "model_max_length": max_length,
              "additional_special_tokens": ["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"],
              "chat_template": CHAT_TEMPLATE}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def write_checkpoint(folder: Path, shape: str, modeling_dir: Path | None, seed: int = 0, dtype: str = "float32"):
    """A random LLaDA-shaped model in LLaDA's original format; returns the tokenizer.

    ``modeling_dir`` (Fast-dLLM's ``llada/model``) is copied in with an ``auto_map``, so
    ``AutoModel.from_pretrained(folder, trust_remote_code=True)`` loads it the way LLaDA's
    hub checkpoint loads; our loader reads the same folder natively.
    """
    import torch

    from a2d_guard.models.llada import build_bidirectional_llama, llama_config, save_llada

    body = SHAPES[shape]
    tok, core = llada_tokenizer(body["max_position_embeddings"])
    config = llama_config(vocab_size=LLADA_VOCAB, tie_word_embeddings=False, **body)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_bidirectional_llama(config).to(getattr(torch, dtype))
    ids = LLADA_SPECIAL_IDS
    save_llada(model, folder, mask_id=ids["<|mdm_mask|>"], eos_id=ids["<|endoftext|>"], pad_id=ids["<|endoftext|>"])
    del model
    raw = json.loads((folder / "config.json").read_text())
    raw["bos_token_id"] = ids["<|startoftext|>"]
    if modeling_dir is not None:
        for name in ("configuration_llada.py", "modeling_llada.py"):
            shutil.copy2(modeling_dir / name, folder / name)
        raw["auto_map"] = {"AutoConfig": "configuration_llada.LLaDAConfig",
                           "AutoModel": "modeling_llada.LLaDAModelLM",
                           "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"}
    (folder / "config.json").write_text(json.dumps(raw, indent=2) + "\n")
    save_tokenizer(core, folder, body["max_position_embeddings"])
    return tok


def prompt_words(tok) -> list[str]:
    """Words of the tiny vocabulary that the tokenizer keeps as one token each."""
    from a2d_guard.models.tiny import tiny_vocab

    words = [w for w in tiny_vocab() if w.isalpha() and len(w) > 2]
    return [w for w in words if len(tok(w, add_special_tokens=False).input_ids) == 1]


def make_prompts(tok, n: int, words_per_prompt: int = 16, masks: int = 8, seed: int = 0) -> dict:
    """``n`` plain chat prompts and ``n`` DIJA-style ones (``masks`` mask tokens inside the user
    turn, replacing words), all the same number of tokens: no system has to pad.

    Returns ``{"messages": [text], "kinds": ["plain" | "dija"], "prompts": [ids], "mask_id"}``.
    """
    import random

    rng = random.Random(seed)
    words = prompt_words(tok)
    texts, kinds = [], []
    for kind in ("plain", "dija"):
        for _ in range(n):
            w = [rng.choice(words) for _ in range(words_per_prompt)]
            if kind == "dija":  # a scaffold to fill in: the middle words become masks
                start = (words_per_prompt - masks) // 2
                w[start:start + masks] = ["<|mdm_mask|>"] * masks
            texts.append(" ".join(w))
            kinds.append(kind)
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True,
                                           tokenize=False), add_special_tokens=False).input_ids for t in texts]
    if len({len(p) for p in prompts}) != 1:
        raise RuntimeError(f"prompts of different lengths: {sorted({len(p) for p in prompts})}")
    return {"messages": texts, "kinds": kinds, "prompts": prompts, "mask_id": LLADA_SPECIAL_IDS["<|mdm_mask|>"]}


# --------------------------------------------------------------------------- peers: sources and venvs


def missing_sources(peer: str, peers_dir: Path | None) -> str | None:
    """Why ``peer`` cannot run from ``peers_dir`` (None: it can)."""
    if peers_dir is None:
        return "no --peers-dir given (fetch ML-GSAI/LLaDA and NVlabs/Fast-dLLM into it)"
    gone = [f for f in PEERS[peer][0] if not (peers_dir / f).is_file()]
    return f"missing under {peers_dir}: {', '.join(gone)}" if gone else None


def ensure_venv(venv_dir: Path, peer: str, torch_spec: str, log: Path) -> tuple[Path | None, str | None]:
    """The Python of ``peer``'s venv, created on first use: (python, None) or (None, why not).

    The venv is keyed by its requirements, so a changed pin builds a fresh one; a half-built
    venv (no ``.complete`` marker) is rebuilt.
    """
    reqs = (torch_spec, *PEERS[peer][1])
    key = hashlib.sha256("\n".join(reqs).encode()).hexdigest()[:10]
    root = venv_dir / f"{peer}-{key}"
    python = root / "bin" / "python"
    if (root / ".complete").is_file():
        return python, None
    if root.exists():
        shutil.rmtree(root)  # our own half-built venv (no marker): written by this function
    steps = [[sys.executable, "-m", "venv", str(root)],
             [str(python), "-m", "pip", "install", "-q", torch_spec],
             [str(python), "-m", "pip", "install", "-q", *PEERS[peer][1]]]
    with log.open("a") as f:
        for cmd in steps:
            f.write("$ " + " ".join(cmd) + "\n")
            f.flush()
            done = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
            if done.returncode != 0:
                shown_cmd = " ".join(cmd[2:] if cmd[1] == "-m" else cmd)
                return None, f"`{shown_cmd}` failed (exit {done.returncode}); see {log}"
    (root / ".complete").write_text("\n".join(reqs) + "\n")
    return python, None


# --------------------------------------------------------------------------- measures


def shown(ids: list[int], stops: set[int]) -> list[int]:
    """What a user sees of a decoded answer: everything before its first EOS/EoT."""
    for i, t in enumerate(ids):
        if t in stops:
            return ids[:i]
    return ids


def agreement(a: list[list[int]], b: list[list[int]], stops: set[int]) -> dict:
    """Position-by-position agreement of the shown tokens, over the longer of each pair."""
    same = total = identical = 0
    for x, y in zip(a, b, strict=True):
        x, y = shown(x, stops), shown(y, stops)
        n = max(len(x), len(y))
        match = sum(1 for i in range(min(len(x), len(y))) if x[i] == y[i])
        same, total, identical = same + match, total + n, identical + (match == n)
    return {"token_agreement": round(same / total, 4) if total else 1.0, "identical": round(identical / len(a), 4)}


def summarize(result: dict, n: int, gen_length: int) -> dict:
    generated = n * gen_length
    out = {"requests": n, "wall_s": round(result["wall_s"], 3), "req_per_s": round(n / result["wall_s"], 3),
           "generated_tokens_per_s": round(generated / result["wall_s"], 1),
           "token_forwards_per_generated_token": round(result["token_forwards"] / generated, 2),
           "peak_rss_mb": round(result["peak_rss_mb"], 1), "batch_run": result["batch_run"],
           "versions": result["versions"]}
    if "peak_cuda_mb" in result:
        out["peak_cuda_mb"] = round(result["peak_cuda_mb"], 1)
    return out


def run_offline(system: str, python: Path, args, ckpt: Path, prompts_file: Path, batch: int, work: Path):
    """One offline system at one batch size, in a fresh process; (result, None) or (None, why)."""
    out = work / f"{system}-b{batch}.json"
    cmd = [str(python), str(RUNNER), "--system", system, "--checkpoint", str(ckpt), "--prompts", str(prompts_file),
           "--batch", str(batch), "--gen-length", str(args.gen_length), "--steps", str(args.steps),
           "--block-length", str(args.block_length), "--threshold", str(args.threshold), "--dtype", args.dtype,
           "--device", args.device, "--out", str(out)]
    if args.peers_dir:
        cmd += ["--peers-dir", str(args.peers_dir)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)} if system in OURS else dict(os.environ)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.system_timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, f"cut at --system-timeout {args.system_timeout} s"
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return None, f"exit {done.returncode}: " + " | ".join(tail)
    return json.loads(out.read_text()), None


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, url: str, timeout: float, log: Path) -> subprocess.Popen:
    """Start a server and wait until ``url`` answers 200 (or raise with its log's tail)."""
    import httpx

    f = log.open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(proc)
    tail = log.read_text().strip().splitlines()[-3:]
    raise RuntimeError("the server did not come up: " + " | ".join(tail))


def stop(proc: subprocess.Popen) -> int | None:
    proc.terminate()
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


async def drive(url: str, bodies: list[dict], concurrency: int) -> tuple[list[dict], float]:
    """``concurrency`` clients send ``bodies`` (non-streamed chat completions) until all are answered."""
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for i, b in enumerate(bodies):
        queue.put_nowait((i, b))
    results: list[dict] = [{}] * len(bodies)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(1800.0), limits=limits) as client:

        async def worker():
            while not queue.empty():
                i, b = queue.get_nowait()
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, json=b)
                    ok = r.status_code == 200
                    text = r.json()["choices"][0]["message"]["content"] if ok else None
                    results[i] = {"latency": time.perf_counter() - t0, "text": text,
                                  "error": None if ok else f"HTTP {r.status_code}: {r.text[:200]}"}
                except Exception as exc:  # a lost request is counted, never a crash of the bench
                    results[i] = {"error": f"{type(exc).__name__}: {exc}"}

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, time.perf_counter() - t0


def server_bodies(system: str, data: dict, args) -> list[dict]:
    """The same chat requests in each server's own fields (dlmserve: ``num_denoising_steps``)."""
    bodies = []
    for text, kind in zip(data["messages"], data["kinds"], strict=True):
        if kind != "plain":
            continue
        body = {"messages": [{"role": "user", "content": text}], "max_tokens": args.gen_length,
                "block_length": args.block_length, "temperature": 0.0}
        if system == "dlmserve":
            body.update(model=str(args.checkpoint_dir), num_denoising_steps=args.steps)
        else:
            body.update(model="peers", steps=args.steps, eos_threshold=1.0)
        bodies.append(body)
    return bodies


def server_command(system: str, python: Path, ckpt: Path, port: int, args) -> tuple[list[str], dict, str]:
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    if system == "dlmserve":
        env.update(DLMSERVE_MODEL=str(ckpt), DLMSERVE_DTYPE="bf16", DLMSERVE_DEVICE=args.device,
                   DLMSERVE_PORT=str(port))
        return [str(python.parent / "dlmserve")], env, f"http://127.0.0.1:{port}"
    env["PYTHONPATH"] = str(HERE.parent)
    cmd = [str(python), "-m", "a2d_guard.cli.main", "serve", "--model", str(ckpt), "--host", "127.0.0.1",
           "--port", str(port), "--batch", str(args.server_batch), "--served-model-name", "peers",
           "--dtype", "bf16", "--device", args.device, "--max-waiting", "256"]
    return cmd, env, f"http://127.0.0.1:{port}"


def run_server(system: str, python: Path, ckpt: Path, data: dict, args, work: Path) -> dict:
    """One server, started once, measured under each concurrency; texts kept for agreement."""
    port = free_port()
    cmd, env, base = server_command(system, python, ckpt, port, args)
    proc = start(cmd, env, base + "/health", args.server_timeout, work / f"{system}-server.log")  # both serve /health
    out = {}
    try:
        bodies = server_bodies(system, data, args)
        url = base + "/v1/chat/completions"
        asyncio.run(drive(url, bodies[:2], 2))  # warm-up
        for c in args.clients:
            results, wall = asyncio.run(drive(url, bodies, c))
            ok = [r for r in results if not r.get("error")]
            lat = sorted(r["latency"] for r in ok)
            out[f"clients_{c}"] = {
                "requests": len(bodies), "ok": len(ok), "wall_s": round(wall, 3),
                "req_per_s": round(len(ok) / wall, 3),
                "generated_tokens_per_s": round(len(ok) * args.gen_length / wall, 1),
                "latency_p50_s": round(lat[len(lat) // 2], 3) if lat else None,
                "errors": sorted({r["error"] for r in results if r.get("error")})[:3],
                "texts": [r.get("text") for r in results]}
    finally:
        out["exit_code"] = stop(proc)
    return out


# --------------------------------------------------------------------------- the run


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def goals(report: dict, args) -> dict:
    """The issue's goals, each ``{"value", "goal", "met"}`` (``met: None`` when a side is missing)."""
    sysr = report["systems"]

    def rps(system, batch):
        return ((sysr.get(system) or {}).get(f"batch_{batch}") or {}).get("req_per_s")

    def goal(value, target, at_least=True):
        return {"value": value, "goal": target, "met": None if value is None else value >= target}

    g = {}
    for ours, peer in SAME_ALGORITHM.items():
        g[f"{ours}_vs_{peer}_batch1"] = goal(ratio(rps(ours, 1), rps(peer, 1)), 1.0)
        top = max(args.batch_sizes)
        g[f"{ours}_vs_{peer}_batch{top}"] = goal(ratio(rps(ours, top), rps(peer, top)), 3.0)
        agree = ((sysr.get(ours) or {}).get("agreement_with_peer") or {}).get("plain", {}).get("token_agreement")
        g[f"{ours}_agrees_with_{peer}_plain"] = goal(agree, 1.0)
    srv = report.get("servers", {})
    c = max(args.clients)
    ours_rps = (srv.get("ours") or {}).get(f"clients_{c}", {}).get("req_per_s")
    peer_rps = (srv.get("dlmserve") or {}).get(f"clients_{c}", {}).get("req_per_s")
    g[f"server_vs_dlmserve_clients{c}"] = goal(ratio(ours_rps, peer_rps), 1.5)
    g["server_tokens_agree_with_dlmserve_bf16"] = goal((srv.get("agreement") or {}).get("token_agreement"), 1.0)
    return g


def by_kind(outputs: list, kinds: list[str], kind: str) -> list:
    return [o for o, k in zip(outputs, kinds, strict=True) if k == kind]


def machine(args) -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}
    if args.device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peer_commit(peers_dir: Path | None, name: str) -> str | None:
    """The peer checkout's commit, if it is a git work tree or carries a ``COMMIT`` file."""
    if peers_dir is None:
        return None
    f = peers_dir / name / "COMMIT"
    if f.is_file():
        return f.read_text().strip()
    done = subprocess.run(["git", "-C", str(peers_dir / name), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers-dir", type=Path, help="holds LLaDA/ and Fast-dLLM/ checkouts")
    ap.add_argument("--venv-dir", type=Path, default=Path.home() / ".cache" / "a2d-guard" / "peer-venvs")
    ap.add_argument("--torch", default="torch==2.13.0", help="the torch each peer venv installs first")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--systems", default="ours-exact,ours-dual+threshold,llada,fast-dllm")
    ap.add_argument("--servers", default="ours,dlmserve", help="'' to skip the server comparison")
    ap.add_argument("--batch-sizes", default="1,8,16")
    ap.add_argument("--clients", default="8,16")
    ap.add_argument("--requests", type=int, default=16, help="plain prompts; as many DIJA prompts again")
    ap.add_argument("--gen-length", type=int, default=64)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--block-length", type=int, default=32)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per system (0: its default)")
    ap.add_argument("--server-batch", type=int, default=16)
    ap.add_argument("--system-timeout", type=float, default=1800)
    ap.add_argument("--server-timeout", type=float, default=600, help="seconds a server may take to come up")
    ap.add_argument("--keep", type=Path, help="keep the checkpoint and logs in this new folder")
    ap.add_argument("--json", action="store_true", help=f"write {RESULTS}/peers_<device>.json")
    ap.add_argument("--out", type=Path, help="write the JSON here instead")
    args = ap.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    args.clients = [int(c) for c in args.clients.split(",") if c]
    systems = [s for s in args.systems.split(",") if s]
    servers = [s for s in args.servers.split(",") if s]
    if args.keep is not None and args.keep.exists():
        ap.error(f"--keep {args.keep} exists; name a new folder")
    work = args.keep or Path(tempfile.mkdtemp(prefix="a2d-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    args.venv_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    try:
        report = run(args, systems, servers, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    report["total_s"] = round(time.perf_counter() - t_start, 1)
    print(render(report))
    device = "cpu" if args.device == "cpu" else args.device.replace(":", "")
    target = args.out or (RESULTS / f"peers_{device}.json" if args.json else None)
    if target is not None:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(target)
        print(f"wrote {target}")
    return 0


def run(args, systems: list[str], servers: list[str], work: Path) -> dict:
    ckpt = work / "checkpoint"
    ckpt.mkdir()
    modeling = args.peers_dir / "Fast-dLLM" / "llada" / "model" if args.peers_dir else None
    if modeling is not None and not (modeling / "modeling_llada.py").is_file():
        modeling = None
    tok = write_checkpoint(ckpt, args.shape, modeling, dtype="float32")
    args.checkpoint_dir = ckpt
    data = make_prompts(tok, args.requests)
    prompts_file = work / "prompts.json"
    prompts_file.write_text(json.dumps(data))
    stops = {LLADA_SPECIAL_IDS["<|endoftext|>"], LLADA_SPECIAL_IDS["<|eot_id|>"]}
    report = {"command": "python bench/peers.py " + " ".join(sys.argv[1:]), "machine": machine(args),
              "settings": {"shape": args.shape, "body": SHAPES[args.shape], "vocab": LLADA_VOCAB,
                           "prompt_tokens": len(data["prompts"][0]), "plain_prompts": args.requests,
                           "dija_prompts": args.requests, "gen_length": args.gen_length, "steps": args.steps,
                           "block_length": args.block_length, "threshold": args.threshold, "dtype": args.dtype,
                           "device": args.device, "threads": args.threads or "default"},
              "peers": {"LLaDA": peer_commit(args.peers_dir, "LLaDA"),
                        "Fast-dLLM": peer_commit(args.peers_dir, "Fast-dLLM"),
                        "dlmserve": "0.1.1 (PyPI)"},
              "systems": {}, "skipped": {}}
    pythons: dict[str, Path] = {}
    for peer in dict.fromkeys([s for s in systems if s in PEERS] + [s for s in servers if s in PEERS]):
        why = missing_sources(peer, args.peers_dir)
        python = None
        if why is None:
            print(f"[peers] venv for {peer} ...", flush=True)
            python, why = ensure_venv(args.venv_dir, peer, args.torch, work / f"venv-{peer}.log")
        if why:
            report["skipped"][peer] = why
        else:
            pythons[peer] = python
    outputs: dict[str, list] = {}
    n = len(data["prompts"])
    for system in systems:
        if system in report["skipped"]:
            continue
        python = Path(sys.executable) if system in OURS else pythons[system]
        entry: dict = {"what": PEERS[system][2] if system in PEERS else "a2d_guard " + system}
        for batch in args.batch_sizes:
            if system == "fast-dllm" and batch != args.batch_sizes[0]:
                entry[f"batch_{batch}"] = {**entry[f"batch_{args.batch_sizes[0]}"], "same_run_as": "batch_1"}
                continue  # its generate runs one request at a time: the same run at every batch size
            print(f"[peers] {system} batch {batch} ...", flush=True)
            result, why = run_offline(system, python, args, ckpt, prompts_file, batch, work)
            if result is None:
                entry[f"batch_{batch}"] = {"error": why}
                continue
            entry[f"batch_{batch}"] = summarize(result, n, args.gen_length)
            outputs.setdefault(system, result["outputs"])
            if batch != args.batch_sizes[0] and outputs[system] != result["outputs"]:
                entry[f"batch_{batch}"]["outputs_differ_from_batch_1"] = agreement(outputs[system], result["outputs"],
                                                                                   stops)
        report["systems"][system] = entry
    for system, entry in report["systems"].items():
        if system not in outputs:
            continue
        pairs = (("ours-exact", "agreement_with_ours_exact"), (SAME_ALGORITHM.get(system), "agreement_with_peer"))
        for other, key in pairs:
            if other and other != system and other in outputs:
                entry[key] = {k: agreement(by_kind(outputs[system], data["kinds"], k),
                                           by_kind(outputs[other], data["kinds"], k), stops) for k in ("plain", "dija")}
    if servers:
        report["servers"] = {}
        for system in servers:
            if system in report["skipped"]:
                continue
            print(f"[peers] server {system} ...", flush=True)
            python = Path(sys.executable) if system == "ours" else pythons[system]
            try:
                report["servers"][system] = run_server(system, python, ckpt, data, args, work)
            except RuntimeError as exc:
                report["servers"][system] = {"error": str(exc)}
        texts = {s: (r.get(f"clients_{max(args.clients)}") or {}).get("texts") for s, r in report["servers"].items()}
        if texts.get("ours") and texts.get("dlmserve"):
            # Both answer text; the tokenizer writes one space-separated piece per token, so the
            # pieces stand for the tokens (a lost answer counts as empty).
            pieces = [[(t or "").split() for t in texts[s]] for s in ("ours", "dlmserve")]
            report["servers"]["agreement"] = {**agreement(*pieces, stops=set()),
                                              "compared": "answer pieces at the largest client count (bf16 on both)"}
        for r in report["servers"].values():
            for c in args.clients:
                texts_c = (r.get(f"clients_{c}") or {}).pop("texts", None)
                if texts_c and c == max(args.clients):
                    r["first_answer"] = texts_c[0]  # for a reader checking the agreement figure
    report["goals"] = goals(report, args)
    return report


def render(report: dict) -> str:
    lines = [f"peers on {report['machine']['cpu']} ({report['settings']['dtype']}, {report['settings']['device']})",
             f"{'system':<22}{'batch':>6}{'req/s':>9}{'tok/s':>9}{'fwd/tok':>9}{'peak MB':>9}  agree(exact)"]
    for system, entry in report["systems"].items():
        agree = (entry.get("agreement_with_ours_exact") or {}).get("plain", {}).get("token_agreement")
        for key, r in entry.items():
            if not key.startswith("batch_"):
                continue
            if "error" in r:
                lines.append(f"{system:<22}{key[6:]:>6}  error: {r['error']}")
                continue
            lines.append(f"{system:<22}{key[6:]:>6}{r['req_per_s']:>9}{r['generated_tokens_per_s']:>9}"
                         f"{r['token_forwards_per_generated_token']:>9}{r['peak_rss_mb']:>9}  {agree}")
    for system, r in report.get("servers", {}).items():
        if "error" in r:
            lines.append(f"server {system}: error: {r['error']}")
        for key, v in r.items():
            if key.startswith("clients_"):
                lines.append(f"server {system:<15}{key[8:]:>6}{v['req_per_s']:>9}{v['generated_tokens_per_s']:>9}"
                             f"{'':>9}{'':>9}  ok {v['ok']}/{v['requests']}")
    for peer, why in report["skipped"].items():
        lines.append(f"skipped {peer}: {why}")
    for name, g in report["goals"].items():
        verdict = "n/a" if g["met"] is None else "met" if g["met"] else "NOT met"
        lines.append(f"goal {name}: {g['value']} (>= {g['goal']}) {verdict}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
