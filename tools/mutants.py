#!/usr/bin/env python
"""A small mutation check of our own (issue 25): would the suite notice if a rule broke?

Each mutant is a one-line change to a rule users depend on (the server, the guard, push, the
model card, eval, fast mode and the engine's core rules), with the tests that must catch it.
For each: write the mutated file (a temp file, then a rename), run those tests with pytest,
and put the original back (always: ``try/finally``, the same temp-file-and-rename, SIGTERM
included). A mutant is *caught* when its tests fail, error or time out, and *survives* when
they pass: then a test is missing. Before any mutant runs, the union of their tests must pass
on the unmutated tree (else "caught" means nothing).

Not part of CI (it runs each mutant's tests, a few minutes on 2 cores). Usage::

    nice -n 10 python tools/mutants.py --out bench/results/mutation_cpu.json
    python tools/mutants.py --list            # ids, rules, tests
    python tools/mutants.py --check           # every original text occurs exactly once (no tests run)
    python tools/mutants.py --only guard-strict-b --only kv-pool-grow-keeps-rows

Exit status: 0 when every mutant is caught, 1 when one survives (or is invalid), 2 when the
baseline fails or the list does not match the sources.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT_S = 600

_FAULTS = "tests/server/test_faults.py"
_CLIENT = "tests/server/test_openai_client.py"
_GUARD = "tests/guard/test_guard_rule.py"
_PUSH = "tests/hub/test_push.py"
_PUSH_HTTP = "tests/hub/test_push_http.py"
_GOLDEN = "tests/engine/test_golden.py"
_BEHAVIOUR = "tests/engine/test_engine_behaviour.py"
_CACHE = "tests/engine/test_cache.py"
_THRESHOLD = "tests/engine/test_threshold.py"
_MONITOR = "tests/diffusion/test_monitor.py"
_SCHEDULE = "tests/diffusion/test_schedule_and_forward.py"
_REFERENCE = "tests/diffusion/test_reference.py"


@dataclass(frozen=True)
class Mutant:
    id: str
    rule: str
    file: str  # relative to the repository root
    original: str  # exact text, must occur exactly once in ``file`` (context lines allowed)
    replacement: str  # differs from ``original`` in one line
    tests: tuple[str, ...]  # pytest paths or node ids that must fail


MUTANTS: tuple[Mutant, ...] = (
    # -- issue 25's rules ----------------------------------------------------------------
    Mutant("server-plain-disconnect-aborts",
           "a plain request whose client disconnects is aborted and its slot freed",
           "a2d_guard/server/app.py",
           "    work.cancel()\n    gen.abort_unfinished()\n", "    work.cancel()\n    pass\n",
           (f"{_FAULTS}::test_dropped_plain_request_is_aborted_and_frees_its_slot",)),
    Mutant("server-stop-earliest-of-several",
           "stop strings cut at the earliest match in the text, not the latest",
           "a2d_guard/server/generation.py",
           "    return min(hits) if hits else -1", "    return max(hits) if hits else -1",
           (f"{_CLIENT}::test_stop_strings_cut_at_the_earliest_match",)),
    Mutant("server-stop-first-occurrence",
           "a stop string cuts at its first occurrence",
           "a2d_guard/server/generation.py",
           "for i in (text.find(s) for s in stops)", "for i in (text.rfind(s) for s in stops)",
           (f"{_CLIENT}::test_stop_strings_cut_at_the_earliest_match",)),
    Mutant("server-usage-sums-n",
           "usage.completion_tokens sums every sample of n",
           "a2d_guard/server/app.py",
           "        completion = sum(c.num_tokens for c in choices)", "        completion = choices[0].num_tokens",
           (f"{_CLIENT}::test_usage_counts_every_sample_of_n",)),
    Mutant("guard-strict-b",
           "probe B flags only a score strictly above the threshold",
           "a2d_guard/guard.py",
           'return Verdict(score > self.threshold, score, self.threshold, "response"',
           'return Verdict(score >= self.threshold, score, self.threshold, "response"',
           (_GUARD,)),
    Mutant("guard-strict-c",
           "probe C flags only a score strictly above the threshold",
           "a2d_guard/guard.py",
           'return Verdict(score > self.threshold, score, self.threshold, "prompt"',
           'return Verdict(score >= self.threshold, score, self.threshold, "prompt"',
           (_GUARD,)),
    Mutant("guard-last-window",
           "probe B's windowed max considers the last window of the response",
           "a2d_guard/guard.py",
           "for s in range(len(scores) - w + 1)]", "for s in range(max(1, len(scores) - w))]",
           (_GUARD,)),
    Mutant("push-uploads-eval-json",
           "push uploads exactly the files of --dry-run (eval.json included)",
           "a2d_guard/hub.py",
           "        stage(source, repo_id, Path(tmp))",
           '        stage(PushSource(**{**vars(source), "eval_file": None}), repo_id, Path(tmp))',
           (f"{_PUSH}::test_push_is_one_commit_with_the_dry_run_files",
            f"{_PUSH_HTTP}::test_push_through_the_real_client")),
    Mutant("push-no-upload-filter",
           "push uploads exactly the files of --dry-run (no pattern drops one)",
           "a2d_guard/hub.py",
           "commit_message=message, create_pr=create_pr)",
           "commit_message=message, create_pr=create_pr, ignore_patterns=[EVAL_FILE])",
           (f"{_PUSH}::test_push_is_one_commit_with_the_dry_run_files",
            f"{_PUSH_HTTP}::test_push_through_the_real_client")),
    Mutant("card-metric-name-keeps-setting",
           "model-index metric names keep their setting (attack, order, threshold)",
           "a2d_guard/model_card.py",
           "metric_name=f\"{row['metric']} ({setting})\" if setting else row[\"metric\"],",
           "metric_name=row[\"metric\"],",
           (f"{_PUSH}::test_eval_json_gives_a_results_table_and_model_index",)),
    Mutant("eval-judges-infill",
           "the eval judge reads the prompt-mask infill as well as the answer",
           "a2d_guard/evaluation/run.py",
           "    judged = [judged_text(llm.tokenizer, llm.spec, c) for c in completions]",
           "    judged = [c.text for c in completions]",
           ("tests/evaluation/test_run.py",)),
    Mutant("eval-judged-text-infill",
           "judged_text is the infill, then the answer",
           "a2d_guard/evaluation/judges.py",
           'parts = [tokenizer.decode(infill, skip_special_tokens=True).strip() if infill else "",',
           'parts = ["",',
           ("tests/evaluation/test_run.py", "tests/evaluation/test_judges.py")),
    Mutant("threshold-engine-at-least",
           "threshold decoding (engine) commits a candidate whose p(x0) equals the threshold",
           "a2d_guard/engine/runner.py",
           "sure = stats.p_x0[order].to(torch.float64) >= parallel[seq_idx[order]]",
           "sure = stats.p_x0[order].to(torch.float64) > parallel[seq_idx[order]]",
           (_THRESHOLD,)),
    Mutant("threshold-reference-at-least",
           "threshold decoding (reference sampler) commits a candidate whose p(x0) equals the threshold",
           "a2d_guard/diffusion/reference.py",
           "squeeze(-1) >= params.parallel_threshold", "squeeze(-1) > params.parallel_threshold",
           (_THRESHOLD,)),
    Mutant("kv-pool-grow-keeps-rows",
           "growing the K/V pool on admission keeps what running slots hold",
           "a2d_guard/engine/kv_cache.py",
           "        if self.k is not None:\n            k[:, :, : self.capacity] = self.k",
           "        if False:\n            k[:, :, : self.capacity] = self.k",
           (_CACHE,)),
    # -- the engine's core rules ------------------------------------------------------------
    Mutant("monitor-strict-threshold",
           "the monitor rejects when p(EOS) > tau, not at tau",
           "a2d_guard/diffusion/monitor.py",
           "(p_eos > threshold)", "(p_eos >= threshold)",
           (_MONITOR, _GOLDEN)),
    Mutant("monitor-needs-a-condition",
           "rejection needs nothing-before or content-after, not only one of them",
           "a2d_guard/diffusion/monitor.py",
           "& (nothing_before | content_after)", "& nothing_before",
           (_MONITOR, _GOLDEN)),
    Mutant("monitor-leftmost-masked",
           "leftmost_masked is the first masked position",
           "a2d_guard/diffusion/monitor.py",
           "    first = masked.to(torch.int8).argmax(dim=1)",
           "    first = masked.shape[1] - 1 - masked.to(torch.int8).flip(1).argmax(dim=1)",
           (_MONITOR, _GOLDEN, _REFERENCE)),
    Mutant("engine-monitor-reads-leftmost-row",
           "the engine reads p(EOS) at the leftmost candidate row of each sequence",
           "a2d_guard/engine/runner.py",
           "        p_eos = stats.p_eos[starts].to(torch.float64)  # [B]",
           "        p_eos = stats.p_eos[starts + counts - 1].to(torch.float64)  # [B]",
           (_GOLDEN,)),
    Mutant("engine-monitor-before-commit",
           "the monitor reads the canvas before the step's commit: a rejected sequence commits nothing",
           "a2d_guard/engine/runner.py",
           "        keep = ((rank < k[seq_idx[order]]) | sure) & ~(rejected | bad_seq)[seq_idx[order]]",
           "        keep = ((rank < k[seq_idx[order]]) | sure) & ~bad_seq[seq_idx[order]]",
           (_GOLDEN,)),
    Mutant("engine-rejected-finishes",
           "a rejected sequence finishes content_filter",
           "a2d_guard/engine/llm_engine.py",
           "            seq.finish(SequenceStatus.FINISHED_REJECTED)",
           "            pass",
           (_BEHAVIOUR, _GOLDEN)),
    Mutant("scheduler-evicts-rejected",
           "a rejected sequence is evicted at the step boundary and its slot given to a waiting request",
           "a2d_guard/engine/sequence.py",
           "        return self not in (SequenceStatus.WAITING, SequenceStatus.RUNNING)",
           "        return self not in (SequenceStatus.WAITING, SequenceStatus.RUNNING, "
           "SequenceStatus.FINISHED_REJECTED)",
           (_BEHAVIOUR, _CACHE)),
    Mutant("scheduler-eviction-frees-kv-slot",
           "eviction and abort give the K/V slot back",
           "a2d_guard/engine/scheduler.py",
           "            self.kv_pool.free(seq.kv_slot)", "            pass",
           (_CACHE,)),
    Mutant("schedule-extra-first",
           "commit count schedule: the first n_mask % steps steps take one more",
           "a2d_guard/diffusion/schedule.py",
           "return [base + (1 if s < extra else 0) for s in range(steps_b)]",
           "return [base + (1 if s >= steps_b - extra else 0) for s in range(steps_b)]",
           (_SCHEDULE, _GOLDEN)),
    Mutant("schedule-block-end",
           "a block's candidates end at prompt + (block + 1) * block_length",
           "a2d_guard/diffusion/schedule.py",
           "    return prompt_length + (block + 1) * block_length",
           "    return prompt_length + (block + 1) * block_length + 1",
           (_SCHEDULE, _GOLDEN, _REFERENCE)),
    Mutant("engine-low-confidence-order",
           "low-confidence remasking commits the most confident candidates (engine)",
           "a2d_guard/engine/runner.py",
           "        order = torch.sort(conf, descending=True, stable=True).indices",
           "        order = torch.sort(conf, descending=False, stable=True).indices",
           (_GOLDEN,)),
    Mutant("reference-low-confidence-order",
           "low-confidence remasking commits the most confident candidates (reference sampler)",
           "a2d_guard/diffusion/confidence.py",
           "    order = torch.sort(conf, descending=True, stable=True).indices",
           "    order = torch.sort(conf, descending=False, stable=True).indices",
           (_GOLDEN, _REFERENCE)),
    Mutant("engine-commits-k",
           "each step commits exactly k candidates (no more)",
           "a2d_guard/engine/runner.py",
           "        keep = ((rank < k[seq_idx[order]]) | sure)",
           "        keep = ((rank <= k[seq_idx[order]]) | sure)",
           (_GOLDEN,)),
    Mutant("early-exit-needs-no-mask-left",
           "early exit (stop) needs an end token with no mask to its left",
           "a2d_guard/diffusion/monitor.py",
           "    visible = ends.any(dim=1) & ((j < 0) | (j > first_end))",
           "    visible = ends.any(dim=1)",
           (_MONITOR, _GOLDEN)),
)


# -- applying and restoring ------------------------------------------------------------------

def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder and a rename, so the
    file is never half-written (a crash leaves either the old or the new text)."""
    tmp = path.with_name(f".{path.name}.mutants-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.chmod(tmp, path.stat().st_mode & 0o7777)
    os.replace(tmp, path)


def check_mutant(m: Mutant, root: Path) -> str | None:
    """None when the mutant applies (original found exactly once, one line changed); else why not."""
    path = root / m.file
    if not path.is_file():
        return f"{m.file} does not exist"
    count = path.read_text(encoding="utf-8").count(m.original)
    if count != 1:
        return f"its original text occurs {count} times in {m.file} (must be once); update the mutant"
    old, new = m.original.splitlines(), m.replacement.splitlines()
    if len(old) != len(new) or sum(a != b for a, b in zip(old, new, strict=True)) != 1:
        return "original and replacement must differ in exactly one line"
    return None


def run_tests(tests: tuple[str, ...], root: Path, timeout: float, python: str = sys.executable) -> dict:
    """Run pytest on ``tests`` in ``root``: returncode (124 on timeout), seconds, failed ids, output tail."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # no .pyc of a mutated file is ever written
    # this checkout's a2d_guard first, even when the venv's editable install points at another checkout:
    # else every mutant would "survive" (the baseline cannot tell)
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
        rc, out = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = 124
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    seconds = time.monotonic() - t0
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", out, flags=re.M)))
    return {"returncode": rc, "seconds": round(seconds, 2), "failed": failed, "tail": out[-1500:]}


def _status(rc: int) -> str:
    if rc == 0:
        return "survived"
    if rc in (1, 2, 124):  # tests failed; interrupted/collection error (the mutant broke an import); timeout
        return "caught"
    return "invalid"  # 3 internal error, 4 usage error, 5 no tests collected: the mutant's test list is wrong


def run_mutant(m: Mutant, root: Path, timeout: float, python: str = sys.executable) -> dict:
    """Apply ``m``, run its tests, and always restore the file; the mutant's report row."""
    path = root / m.file
    why = check_mutant(m, root)
    row = {**asdict(m), "tests": list(m.tests)}
    if why is not None:
        return {**row, "status": "invalid", "reason": why, "seconds": 0.0}
    original = path.read_text(encoding="utf-8")
    row["line"] = original.count("\n", 0, original.index(m.original)) + 1 + next(
        i for i, (a, b) in enumerate(zip(m.original.splitlines(), m.replacement.splitlines(), strict=True))
        if a != b)
    try:
        _write_atomic(path, original.replace(m.original, m.replacement, 1))
        result = run_tests(m.tests, root, timeout, python)
    finally:
        _write_atomic(path, original)
    if path.read_text(encoding="utf-8") != original:  # pragma: no cover - would be a bug here
        raise RuntimeError(f"{m.file} was not restored")
    status = _status(result["returncode"])
    return {**row, "status": status, "returncode": result["returncode"], "seconds": result["seconds"],
            "failed": result["failed"], **({"tail": result["tail"]} if status != "caught" else {})}


def _git(root: Path, *args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _sigterm(signum, frame):  # restore the file of the running mutant (the finally) before exiting
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None, mutants: tuple[Mutant, ...] = MUTANTS, root: Path = ROOT) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the JSON report here (e.g. bench/results/mutation_cpu.json)")
    ap.add_argument("--only", action="append", default=[], metavar="ID", help="run only these mutants (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--check", action="store_true", help="check every mutant applies, run nothing")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per pytest run")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of every listed test")
    args = ap.parse_args(argv)

    unknown = sorted(set(args.only) - {m.id for m in mutants})
    if unknown:
        ap.error(f"unknown mutant id(s): {', '.join(unknown)}; see --list")
    chosen = [m for m in mutants if not args.only or m.id in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.id}\n    rule: {m.rule}\n    file: {m.file}\n    tests: {' '.join(m.tests)}")
        return 0
    problems = [(m.id, why) for m in chosen if (why := check_mutant(m, root)) is not None]
    for mid, why in problems:
        print(f"mutant {mid}: {why}", file=sys.stderr)
    if args.check or problems:
        if not problems:
            print(f"all {len(chosen)} mutants apply")
        return 2 if problems else 0

    signal.signal(signal.SIGTERM, _sigterm)
    started = time.time()
    t0 = time.monotonic()
    report: dict = {
        "what": "tools/mutants.py: one-line mutations of core rules; caught = their tests fail",
        "command": " ".join([Path(sys.executable).name, "tools/mutants.py", *(argv if argv is not None
                                                                             else sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "git_commit": _git(root, "rev-parse", "HEAD"),
        "git_dirty": bool(_git(root, "status", "--porcelain", "--untracked-files=no")),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "nice": os.nice(0), "load_at_start": list(os.getloadavg())},
    }
    tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    if not args.no_baseline:
        print(f"baseline: {len(tests)} test paths, unmutated ...", flush=True)
        base = run_tests(tests, root, args.timeout)
        report["baseline"] = {k: base[k] for k in ("returncode", "seconds", "failed")}
        print(f"baseline: rc {base['returncode']} in {base['seconds']:.0f} s", flush=True)
        if base["returncode"] != 0:
            print(base["tail"], file=sys.stderr)
            print("the baseline fails: fix the tree before judging mutants", file=sys.stderr)
            if args.out:
                _write_report(args.out, report)
            return 2
    rows = []
    for i, m in enumerate(chosen, 1):
        row = run_mutant(m, root, args.timeout)
        rows.append(row)
        print(f"[{i}/{len(chosen)}] {row['status']:8s} {row['seconds']:6.1f} s  {m.id}", flush=True)
        if row["status"] != "caught":
            print(row.get("reason") or row.get("tail", ""), file=sys.stderr)
    caught = sum(r["status"] == "caught" for r in rows)
    report["mutants"] = rows
    report["summary"] = {"total": len(rows), "caught": caught,
                         "survived": [r["id"] for r in rows if r["status"] == "survived"],
                         "invalid": [r["id"] for r in rows if r["status"] == "invalid"],
                         "wall_s": round(time.monotonic() - t0, 1), "load_at_end": list(os.getloadavg())}
    print(f"{caught}/{len(rows)} caught in {report['summary']['wall_s']:.0f} s")
    if args.out:
        _write_report(args.out, report)
    return 0 if caught == len(rows) else 1


def _write_report(out: Path, report: dict) -> None:
    out = out if out.is_absolute() else Path.cwd() / out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)


if __name__ == "__main__":
    sys.exit(main())
