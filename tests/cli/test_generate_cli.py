"""The CLI through Typer's runner: JSON output, readable output, one-line errors with exit 1."""

import json

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()
BASE = ["generate", "--model", "tiny", "--gen-length", "32", "--steps", "32", "--block-length", "8"]


def test_json_prints_one_valid_object_per_prompt(library_outcomes):
    result = runner.invoke(app, BASE + ["--prompt", "hello", "--prompt", "how are you", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert len(lines) == 2
    for rec in lines:
        assert isinstance(rec["token_ids"], list) and isinstance(rec["text"], str)
        assert rec["steps"] >= 1 and "p_eos" in rec
    expected = library_outcomes(["hello", "how are you"], gen_length=32, steps=32, block_length=8)
    assert [(rec["finish_reason"], rec["token_ids"]) for rec in lines] == expected


def test_parallel_threshold_commits_whole_blocks_of_confident_tokens(library_outcomes):
    """The random tiny model's p(x0) is about 0.0017 everywhere: a threshold of 0.001 commits each
    block of 8 at once (4 steps instead of 32), exactly as the library does."""
    result = runner.invoke(app, BASE + ["--prompt", "hello", "--parallel-threshold", "0.001", "--json"])
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)
    assert rec["steps"] == 4 and len(rec["token_ids"]) > 0
    expected = library_outcomes(["hello"], gen_length=32, steps=32, block_length=8, parallel_threshold=0.001)
    assert [(rec["finish_reason"], rec["token_ids"])] == expected


def test_readable_view_marks_a_rejection():
    # A threshold near zero makes the monitor fire at the first step.
    result = runner.invoke(app, BASE + ["--prompt", "hello", "--eos-threshold", "0.0001"])
    assert result.exit_code == 0, result.output
    assert "REJECTED" in result.stdout


def test_refusal_text_replaces_a_rejected_output():
    result = runner.invoke(app, BASE + ["--prompt", "hi", "--eos-threshold", "0.0001", "--refusal-text",
                                        "I can't help with that.", "--json"])
    rec = json.loads(result.stdout)
    assert rec["finish_reason"] == "content_filter" and rec["text"] == "I can't help with that."


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("a2d-guard ")


@pytest.mark.parametrize("cache", ["dual", "prefix"])
def test_cache_runs_fast_mode_as_the_library_does(library_outcomes, cache):
    result = runner.invoke(app, BASE + ["--prompt", "hello", "--prompt", "how are you", "--cache", cache, "--json"])
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in result.stdout.strip().splitlines()]
    expected = library_outcomes(["hello", "how are you"], cache=cache, gen_length=32, steps=32, block_length=8)
    assert [(rec["finish_reason"], rec["token_ids"]) for rec in got] == expected


@pytest.mark.parametrize("args, message", [
    (["--model", "./no/such/folder", "--prompt", "x"], "does not exist"),
    (["--model", "tiny", "--prompt", "x", "--gen-length", "30", "--block-length", "8"], "not divisible"),
    (["--model", "tiny", "--prompt", "x", "--gen-length", "32", "--block-length", "8", "--steps", "6"],
     "multiple of the number of blocks"),
    (["--model", "tiny", "--prompt", "x", "--temperature", "-1"], "temperature"),
    (["--model", "tiny", "--prompt", "x", "--eos-threshold", "1.5"], "eos_threshold"),
    (["--model", "tiny", "--prompt", "x", "--remasking", "foo"], "unknown remasking mode"),
    (["--model", "tiny", "--prompt", "x", "--parallel-threshold", "1.5"], "parallel_threshold must be None"),
    (["--model", "tiny", "--prompt", "x", "--family", "gpt"], "unknown model family"),
    (["--model", "tiny", "--prompt", "  "], "empty"),
    (["--model", "tiny", "--prompt", "x", "--cache", "fast"], "unknown cache mode 'fast'; use one of none, prefix"),
    (["--model", "tiny", "--prompt", "x", "--cache", "dual", "--reference"], "drop --cache or --reference"),
])
def test_bad_input_is_one_line_and_exit_1(args, message):
    result = runner.invoke(app, ["generate", *args])
    assert result.exit_code == 1
    err = result.stderr.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert "Traceback" not in result.output


def test_no_config_folder_and_wrong_adapter(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["generate", "--model", str(tmp_path / "empty"), "--prompt", "x"])
    assert result.exit_code == 1 and "no config.json" in result.stderr
    result = runner.invoke(app, ["generate", "--model", "tiny", "--adapter", str(tmp_path / "empty"),
                                 "--prompt", "x"])
    assert result.exit_code == 1 and "adapter_config.json" in result.stderr


def test_engine_and_reference_agree_and_prompts_file_works(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hello"}\n\n{"prompt": "fill <mask:2> in"}\n')
    args = BASE + ["--prompts-file", str(prompts), "--prompt", "how are you", "--json", "--dtype", "fp64"]
    engine = runner.invoke(app, args + ["--batch", "2"])
    reference = runner.invoke(app, args + ["--reference"])
    assert engine.exit_code == 0 and reference.exit_code == 0, engine.output + reference.output
    a = [json.loads(x) for x in engine.stdout.splitlines()]
    b = [json.loads(x) for x in reference.stdout.splitlines()]
    assert [r["prompt"] for r in a] == ["how are you", "hello", "fill <mask:2> in"]
    for x, y in zip(a, b, strict=True):
        assert x.pop("p_eos") == pytest.approx(y.pop("p_eos"), rel=1e-12)  # same value, another summation order
        assert x == y
    assert "infill" in a[2]


@pytest.mark.parametrize("content, message", [
    (b"", "has no prompts"),
    (b'{"text": "x"}\n', ":1: a JSONL line needs"),
    (b"\xff\xfe bad", "not UTF-8"),
])
def test_bad_prompts_file(tmp_path, content, message):
    path = tmp_path / "p.txt"
    path.write_bytes(content)
    result = runner.invoke(app, ["generate", "--model", "tiny", "--prompts-file", str(path)])
    assert result.exit_code == 1 and message in result.stderr
