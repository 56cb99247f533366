"""One-shot GPU validation (issue 13 item 7): what a lent H100/H200 should tell us, in one command.

A lent GPU comes rarely and for minutes, so everything we want from it runs from here, the
short correctness and kernel parts first and the long engine run last, where it takes whatever
time is left:

1. ``install``: ``pip install --no-deps --no-build-isolation -e .`` (the device machine reaches
   no registry and brings its own torch, transformers, peft and triton; without the install,
   ``a2d_guard.triton_kernels`` and ``a2d_guard.cli`` do not resolve: setuptools maps them, so
   if the install fails the other parts import the package from the repo through links);
2. ``kernel_tests``: ``pytest tests/kernels``, natively on CUDA;
3. ``kernels_bf16``, ``kernels_fp32``: ``bench/kernels.py``: token_stats (and gather_rows) as
   a fraction of the measured device copy bandwidth, bf16 and fp32 logits;
4. ``train``: ``bench/train_throughput.py --device cuda`` (a few steps per configuration);
5. ``engine``: ``bench/engine.py`` at the LLaDA-8B shape with random bf16 weights, batch 64,
   prompt 128, gen 256, block 32, steps 256, on ``reject25``: the fast modes, static and the
   exact engine (64 requests, one full batch: the fewest that fill it; a system the budget
   cuts or that runs out of memory is recorded as such).

Each part runs in its own process group with a timeout inside a total budget (default 480 s,
the issue's 8 minutes): the most it may take, and never so much that the parts after it lose
their minimum; a part that runs out is killed and recorded as ``timeout``, one that fails on
CUDA memory as ``oom``, one with no time left as ``skipped``. Estimated on an H200 (never run
there yet): static about 3 minutes (256 forwards of 64 x 384 tokens), the exact engine about 2,
the dual cache well under 1, so in 8 minutes the exact engine is the system likely to be cut.
The results file, ``<out>/gpu-<device>-<date>.json``, is rewritten whole (temp name, then
rename) after every part, so a run stopped from outside still leaves valid JSON (``complete``
false). ``--smoke`` runs the same plumbing on CPU at toy shapes
(CI: ``tests/bench/test_gpu_check.py``). Usage::

    python bench/gpu_check.py                          # on the GPU machine; writes bench/results/
    python bench/gpu_check.py --out "$OUT"             # the device tool: files under $OUT come back
    python bench/gpu_check.py --smoke --out /tmp/x     # CPU, toy shapes, no install
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 480.0  # the 8 minutes
MARGIN_S = 10.0  # left for writing the results after the last part
# Most wanted first: the fast mode and static (the >= 10x goal), then the rest; the exact engine,
# the longest after static (about 256 forwards of 48 x 384 tokens), is the one the budget cuts first.
ENGINE_SYSTEMS = "engine+dual+threshold,static,engine+dual,engine+prefix,engine"
SMOKE_SYSTEMS = "engine+dual+threshold,static,engine"
TAIL_CHARS = 3000


@dataclass
class Part:
    """One step of the check: a command, the most time it may take, and the least worth starting
    (which the parts before it leave for it)."""

    name: str
    command: list[str]
    cap_s: float
    min_s: float
    outputs: dict[str, Path] = field(default_factory=dict)  # what its parser reads


def build_parts(smoke: bool, work: Path, requests: int, install: bool) -> list[Part]:
    py = sys.executable
    bench = ROOT / "bench"
    parts = []
    if install and not smoke:
        parts.append(Part("install", [py, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-e", "."],
                          cap_s=120, min_s=30))
    junit = work / "kernel_tests.xml"
    tests = ["tests/kernels/test_gather_rows.py"] if smoke else ["tests/kernels"]
    parts.append(Part("kernel_tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests,
                                       f"--junitxml={junit}"], cap_s=120, min_s=30, outputs={"junit": junit}))
    toy_kernels = ["--device", "cpu", "--batch", "2", "--length", "8", "--hidden", "16", "--candidates", "4",
                   "--vocab", "64", "--repeats", "2", "--threads", "1"]
    for dtype in ("bf16", "fp32"):
        out = work / f"kernels_{dtype}.json"
        parts.append(Part(f"kernels_{dtype}", [py, str(bench / "kernels.py"), *(toy_kernels if smoke else
                                               ["--device", "cuda"]), "--dtype", dtype, "--out", str(out)],
                          cap_s=60, min_s=30, outputs={"json": out}))
    out = work / "train.json"
    toy_train = ["--device", "cpu", "--batch", "2", "--length", "32", "--steps", "1", "--warmup", "1",
                 "--threads", "1", "--checkpointing", "off"]
    parts.append(Part("train", [py, str(bench / "train_throughput.py"), *(toy_train if smoke else
                                ["--device", "cuda", "--steps", "4", "--warmup", "2"]), "--out", str(out)],
                      cap_s=120, min_s=60, outputs={"json": out}))
    out = work / "engine.json"
    shape = (["--model", "tiny", "--device", "cpu", "--requests", "4", "--batch", "2", "--prompt-len", "8",
              "--gen-length", "16", "--block-length", "8", "--steps", "16", "--threads", "1"] if smoke else
             ["--model", "llada8b-random", "--device", "cuda", "--requests", str(requests), "--batch", "64",
              "--prompt-len", "128", "--gen-length", "256", "--block-length", "32", "--steps", "256"])
    parts.append(Part("engine", [py, str(bench / "engine.py"), *shape, "--workloads", "reject25", "--systems",
                                 SMOKE_SYSTEMS if smoke else ENGINE_SYSTEMS, "--parallel-threshold", "0.9",
                                 "--out", str(out)],
                      cap_s=10_000, min_s=60, outputs={"json": out}))
    return parts


# --- running one part -----------------------------------------------------------------------------


def run_command(command: list[str], timeout: float, log: Path, env: dict | None = None
                ) -> tuple[str, int | None, float]:
    """(status, exit code, seconds). The command gets its own process group, so a timeout also
    ends the processes it started (bench/engine.py runs each system in a child)."""
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return "timeout", None, time.monotonic() - t0
    return ("ok" if code == 0 else "failed"), code, time.monotonic() - t0


def package_shadow(work: Path) -> dict:
    """The environment that imports the package from the repo when ``pip install -e .`` failed.

    The repo root on the path is not enough: setuptools maps ``cli/`` and ``triton_kernels/``
    into ``a2d_guard`` (DESIGN §2). Links in a scratch folder rebuild that layout without
    writing into the repo; PYTHONSAFEPATH keeps ``python -m pytest`` from importing the repo's
    own ``a2d_guard`` folder (which lacks them) from the current directory first.
    """
    shadow = work / "site" / "a2d_guard"
    shadow.mkdir(parents=True, exist_ok=True)
    for entry in [*(ROOT / "a2d_guard").iterdir(), ROOT / "cli", ROOT / "triton_kernels"]:
        if entry.name != "__pycache__" and not (shadow / entry.name).exists():
            (shadow / entry.name).symlink_to(entry)
    path = os.pathsep.join(p for p in (str(shadow.parent), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "PYTHONSAFEPATH": "1"}


def tail(path: Path, chars: int = TAIL_CHARS) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-chars:]


def is_oom(text: str) -> bool:
    return bool(re.search(r"OutOfMemoryError|CUDA out of memory|OOM:", text))


# --- reading what each part wrote -------------------------------------------------------------------


def read_junit(path: Path) -> dict:
    """Counts and the failing tests' names from pytest's JUnit XML."""
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    failing = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
               if case.find("failure") is not None or case.find("error") is not None]
    return {**counts, "failing": failing[:30], "time_s": float(suite.get("time", 0.0))}


def summarize_kernels(result: dict) -> dict:
    """Per kernel row: achieved fraction of the copy bandwidth (CUDA) and agreement with the ref."""
    keep = ("fraction_of_copy", "kernel_gbps", "copy_gbps", "kernel_ms", "ref_ms", "speedup_vs_ref",
            "x0_agreement", "p_x0_max_abs_err", "matches_ref", "speedup_ref_vs_naive")
    return {row["name"]: {k: row[k] for k in keep if k in row} for row in result.get("results", [])}


def summarize_engine(result: dict) -> dict:
    rows = {}
    for workload, row in result.get("workloads", {}).items():
        rows[workload] = {
            system: ({"error": r["error"]} if "error" in r else
                     {k: r.get(k) for k in ("requests_per_s", "token_forwards_per_token", "peak_mem_mb", "mean_steps",
                                            "wall_s")})
            for system, r in row.items() if isinstance(r, dict)}
        rows[workload]["ratios"] = {k: v for k, v in row.items() if "_vs_" in k}
    return {"workloads": rows, "goals": result.get("goals", [])}


def summarize_train(result: dict) -> dict:
    return {("checkpointing_on" if r.get("gradient_checkpointing") else "checkpointing_off"):
            ({"error": r["error"]} if "error" in r else
             {k: r.get(k) for k in ("tokens_per_s", "step_s", "peak_memory_gib")}) for r in result.get("rows", [])}


SUMMARIES = {"kernel_tests": None, "kernels_bf16": summarize_kernels, "kernels_fp32": summarize_kernels,
             "engine": summarize_engine, "train": summarize_train}


def collect(part: Part, record: dict) -> None:
    """Attach what the part wrote (its JSON, or test counts) to its record; a missing file is said."""
    try:
        if "junit" in part.outputs and part.outputs["junit"].exists():
            record["summary"] = read_junit(part.outputs["junit"])
        elif "json" in part.outputs and part.outputs["json"].exists():
            result = json.loads(part.outputs["json"].read_text())
            record["summary"] = SUMMARIES[part.name](result)
            record["result"] = result
    except (OSError, ValueError, ET.ParseError, KeyError, AttributeError, TypeError) as exc:
        record["summary_error"] = f"{type(exc).__name__}: {exc}"
    if part.name == "engine" and record["status"] == "ok":
        errors = [r["error"] for w in record.get("summary", {}).get("workloads", {}).values()
                  for r in w.values() if isinstance(r, dict) and "error" in r]
        if any(is_oom(e) for e in errors):
            record["status"] = "ok (some systems out of memory)"


# --- the whole check --------------------------------------------------------------------------------


def environment(smoke: bool) -> dict:
    """Versions and the device, read without changing any of its settings."""
    import importlib.metadata as md

    import torch

    env = {"python": platform.python_version(), "machine": platform.machine(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(), "smoke": smoke}
    for pkg in ("transformers", "peft", "triton", "tokenizers", "safetensors", "a2d-guard"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                   multiprocessors=props.multi_processor_count, capability=f"{props.major}.{props.minor}")
        try:
            env["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=15).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            env["nvidia_smi"] = None
    try:
        env["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                           timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        env["git_commit"] = None
    return env


def device_slug(env: dict) -> str:
    if env.get("smoke") or not env.get("gpu"):
        return "cpu-smoke" if env.get("smoke") else "cpu"
    return re.sub(r"[^a-z0-9]+", "-", env["gpu"].lower()).strip("-")


def write_whole(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def run_check(smoke: bool, out_dir: Path, budget: float, requests: int, install: bool, only: set[str] | None,
              log=print) -> Path:
    started = time.monotonic()
    deadline = started + budget - MARGIN_S
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="a2d-gpu-check-") as tmp:
        work = Path(tmp)
        parts = [p for p in build_parts(smoke, work, requests, install) if only is None or p.name in only]
        report = {"check": "gpu_check", "issue": 13, "smoke": smoke, "started_utc": dt.datetime.now(dt.timezone.utc)
                  .isoformat(timespec="seconds"), "budget_s": budget, "complete": False, "parts": {}}
        # install first: the environment is read after it (a2d-guard's version comes from the install)
        path, env = None, None
        for i, part in enumerate(parts):
            if path is None and part.name != "install":
                report["environment"] = environment(smoke)
                date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
                path = out_dir / f"gpu-{device_slug(report['environment'])}-{date}.json"
            later = sum(p.min_s for p in parts[i + 1:])
            left = deadline - time.monotonic() - later  # the parts after this one keep their minimum
            timeout = min(part.cap_s, left)
            record = {"command": " ".join(part.command).replace(str(ROOT) + "/", ""), "timeout_s": round(timeout, 1)}
            if timeout < part.min_s:
                record.update(status="skipped", why=f"{max(left, 0):.0f} s left of the budget, the part needs "
                                                    f"{part.min_s:.0f} s at least")
            else:
                if part.name == "engine":  # bench/engine.py cuts its own systems a little before our timeout
                    part.command += ["--budget", f"{max(timeout - 20, 1):.0f}"]
                    record["command"] += f" --budget {max(timeout - 20, 1):.0f}"
                log(f"[gpu_check] {part.name}: up to {timeout:.0f} s")
                status, code, seconds = run_command(part.command, timeout, work / f"{part.name}.log", env)
                record.update(status=status, exit_code=code, elapsed_s=round(seconds, 1),
                              log_tail=tail(work / f"{part.name}.log"))
                if status == "failed" and is_oom(record["log_tail"]):
                    record["status"] = "oom"
                collect(part, record)
            if part.name == "install" and record["status"] != "ok":  # the rest still runs, from the repo
                env = package_shadow(work)
                record["fallback"] = "the other parts import the package from the repo (PYTHONPATH links)"
            report["parts"][part.name] = record
            log(f"[gpu_check] {part.name}: {record['status']}"
                + (f" in {record['elapsed_s']} s" if "elapsed_s" in record else ""))
            if path is not None:
                report["elapsed_s"] = round(time.monotonic() - started, 1)
                write_whole(path, report)
        if path is None:  # only the install ran
            report["environment"] = environment(smoke)
            path = out_dir / f"gpu-{device_slug(report['environment'])}-" \
                             f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d')}.json"
        report["complete"] = True
        report["elapsed_s"] = round(time.monotonic() - started, 1)
        write_whole(path, report)
    return path


def print_summary(path: Path) -> None:
    """The few lines a reader wants first (the device tool returns the end of the output)."""
    report = json.loads(path.read_text())
    env = report.get("environment", {})
    print(f"\n{path}: {env.get('gpu') or 'cpu'}, torch {env.get('torch')}, transformers {env.get('transformers')}, "
          f"triton {env.get('triton')}; {report['elapsed_s']} s of {report['budget_s']:.0f}")
    for name, rec in report["parts"].items():
        line = f"  {name:<13} {rec['status']:<10} {rec.get('elapsed_s', '-')!s:>7} s"
        summary = rec.get("summary", {})
        if name == "kernel_tests" and summary:
            line += f"  {summary['passed']} passed, {summary['failures'] + summary['errors']} failed"
        elif name.startswith("kernels_"):
            line += "  " + ", ".join(f"{k}: {v['fraction_of_copy']:.2f} of copy" for k, v in summary.items()
                                     if v.get("fraction_of_copy") is not None)
        elif name == "engine":
            for workload, row in summary.get("workloads", {}).items():
                for system, r in row.items():
                    if system != "ratios":
                        line += (f"\n      {workload} {system}: " + (r["error"] if "error" in r else
                                 f"{r['requests_per_s']:.3f} req/s, {r['token_forwards_per_token'] or 0:.0f} "
                                 f"token-forwards/token, peak {r['peak_mem_mb']:.0f} MB"))
            for goal in summary.get("goals", []):
                line += f"\n      goal: {goal['goal']}: {goal['value']} -> met={goal['met']}"
        elif name == "train":
            line += "  " + ", ".join(f"{k}: {v.get('tokens_per_s', v.get('error'))}" for k, v in summary.items())
        print(line)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, toy shapes, no install (CI)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for gpu-<device>-<date>.json")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole check (default 480)")
    ap.add_argument("--requests", type=int, default=64, help="engine requests (default 64: one batch of 64)")
    ap.add_argument("--no-install", action="store_true", help="use the package as installed")
    ap.add_argument("--parts", help="comma-separated subset: install,kernel_tests,kernels_bf16,kernels_fp32,engine,"
                                    "train")
    args = ap.parse_args(argv)
    if not args.smoke:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA device is visible; run on the GPU machine, or pass --smoke for the CPU plumbing",
                  file=sys.stderr)
            return 1
    only = set(args.parts.split(",")) if args.parts else None
    path = run_check(args.smoke, Path(args.out), args.budget, args.requests, not args.no_install, only)
    print_summary(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
