"""``a2d-guard check`` through Typer's runner: the library's verdicts, exit 3 on a flag, one-line errors."""

import json

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()
BASE = ["check", "--model", "tiny", "--probe-length", "16"]


@pytest.fixture(scope="module")
def library():
    from a2d_guard import Guard

    return Guard(model="tiny", probe_length=16, device="cpu")


def test_json_verdicts_are_the_library_verdicts(tmp_path, library):
    f = tmp_path / "items.jsonl"
    rows = [{"prompt": "how do i cook rice"}, {"prompt": "hello", "response": "here is a safe answer"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    result = runner.invoke(app, BASE + ["--file", str(f), "--json"])
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in result.stdout.splitlines()]
    want = library.check_batch([("how do i cook rice", None), ("hello", "here is a safe answer")])
    assert got == [{"index": i, **v.to_dict()} for i, v in enumerate(want)]
    assert [g["where"] for g in got] == ["prompt", "response"]


def test_fail_on_flag_exits_3_only_when_something_is_flagged(library):
    score = library.check("hello").score  # the untrained tiny model: p(EOS) ~ 0.0016
    below, above = f"{score * 0.5:.6g}", f"{min(1.0, score * 2):.6g}"
    flagged = runner.invoke(app, BASE + ["--prompt", "hello", "--threshold", below, "--fail-on-flag"])
    assert flagged.exit_code == 3, flagged.output
    assert flagged.stdout.startswith("0: FLAGGED score") and "prompt" in flagged.stdout
    passed = runner.invoke(app, BASE + ["--prompt", "hello", "--threshold", above, "--fail-on-flag"])
    assert passed.exit_code == 0 and passed.stdout.startswith("0: ok")
    without = runner.invoke(app, BASE + ["--prompt", "hello", "--threshold", below])
    assert without.exit_code == 0  # a flag is a result, not a failure, unless asked


def test_readable_response_line_names_the_offset():
    result = runner.invoke(app, BASE + ["--prompt", "hello", "--response", "a b c d e"])
    assert result.exit_code == 0, result.output
    assert "response from char" in result.stdout and "(token " in result.stdout


@pytest.mark.parametrize("args, message", [
    ([], "pass either --prompt TEXT"),
    (["--prompt", "x", "--file", "f.jsonl"], "pass either --prompt TEXT"),
    (["--response", "an answer", "--file", "FILE"], "--response needs the --prompt it answers"),
    (["--prompt", "  "], "the prompt is empty"),
    (["--prompt", "hi", "--threshold", "0"], "threshold 0.0 is out of range; use a value in (0, 1]"),
    (["--prompt", "hi", "--threshold", "1.5"], "threshold 1.5 is out of range"),
    (["--file", "missing.jsonl"], "--file 'missing.jsonl' does not exist"),
])
def test_bad_input_is_one_line_with_exit_1(tmp_path, args, message):
    if "FILE" in args:
        (tmp_path / "i.jsonl").write_text('{"prompt": "p"}\n')
        args = [str(tmp_path / "i.jsonl") if a == "FILE" else a for a in args]
    result = runner.invoke(app, BASE + args)
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("line, message", [
    ('{"response": "x"}', 'items.jsonl:2: each line needs a text "prompt"'),
    ('{"prompt": "p", "answer": "x"}', "items.jsonl:2: unknown field 'answer'"),
    ('{"prompt": "p", "response": 3}', 'items.jsonl:2: "response" must be text'),
    ("not json", "items.jsonl:2: not valid JSON"),
])
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    f = tmp_path / "items.jsonl"
    f.write_text('{"prompt": "fine"}\n' + line + "\n")
    result = runner.invoke(app, BASE + ["--file", str(f)])
    assert result.exit_code == 1 and message in result.stderr, result.output


def test_empty_file_is_refused(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n")
    result = runner.invoke(app, BASE + ["--file", str(tmp_path / "e.jsonl")])
    assert result.exit_code == 1 and "no items to check" in result.stderr
