"""A real vLLM server with the a2d_guard plugin on 127.0.0.1, for the plugin's tests and
``bench/vllm_decode.py``: started on an ephemeral port, waited for, always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ARCH = {"llada": "A2DGuardLLaDA", "dream": "A2DGuardDream"}


class ServerFailed(RuntimeError):
    """vLLM exited or did not answer ``/health`` in time; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def vllm_server(model: Path, family: str, name: str, log: Path, overrides: dict | None = None,
                timeout_s: float = 240):
    """Yield the base URL of a vLLM server serving ``model`` as the guard (``--runner pooling``)."""
    import httpx

    port = free_port()
    env = {**os.environ, "VLLM_PLUGINS": "a2d_guard",
           "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    hf = {"architectures": [ARCH[family]], **(overrides or {})}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--served-model-name", name, "--runner", "pooling", "--hf-overrides", json.dumps(hf),
           "--dtype", "float32", "--enforce-eager", "--max-model-len", "512",
           "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise ServerFailed(f"vLLM exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerFailed(f"vLLM did not answer /health in {timeout_s:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=10)
