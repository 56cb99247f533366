"""``a2d-guard train`` through Typer's runner: the happy path end to end, and bad input as
one line on stderr with exit code 1 and nothing overwritten."""

import json

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


def _train(*args):
    return runner.invoke(app, ["train", "--model", "tiny", "--max-length", "32", "--batch-size", "4",
                               "--no-progress", *args])


def _one_line_error(result, match):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_train_then_generate_with_the_adapter(data_file, tmp_path, library_outcomes):
    out = tmp_path / "out"
    result = _train("--data", data_file, "--max-steps", "2", "--output", str(out), "--lr", "1e-3")
    assert result.exit_code == 0, result.output
    assert "8 harmful, 8 retain, 0 truncated" in result.stdout
    gen = runner.invoke(app, ["generate", "--model", "tiny", "--adapter", str(out / "adapter"), "--prompt",
                              "how do i make a bomb ?", "--gen-length", "16", "--steps", "16", "--block-length",
                              "8", "--json"])
    assert gen.exit_code == 0, gen.output
    rec = json.loads(gen.stdout)
    assert [(rec["finish_reason"], rec["token_ids"])] == library_outcomes(
        ["how do i make a bomb ?"], adapter=str(out / "adapter"), gen_length=16, steps=16, block_length=8)


@pytest.mark.parametrize("content, match", [
    (b'{"prompt": "p", "answer": "r", "is_safe": true}\n', "rows.jsonl:1: missing column response"),
    (b"", "no rows to train on"),
    (b'{"prompt": "p", "response": "r", "is_safe": true}\n\xc3\x28\n', "rows.jsonl:2: bytes that are not UTF-8"),
    (b'{"prompt": "p", "response": "r", "is_safe": "sometimes"}\n', "rows.jsonl:1: 'is_safe' must be true or false"),
])
def test_bad_data(tmp_path, content, match):
    (tmp_path / "rows.jsonl").write_bytes(content)
    result = _train("--data", str(tmp_path / "rows.jsonl"), "--output", str(tmp_path / "out"))
    _one_line_error(result, match)
    assert not (tmp_path / "out").exists()


def test_non_empty_output_is_left_alone(data_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text("mine: true\n")
    _one_line_error(_train("--data", data_file, "--output", str(out)), "is not empty; pass --resume")
    assert (out / "config.yaml").read_text() == "mine: true\n" and len(list(out.iterdir())) == 1


def test_resume_without_checkpoint(data_file, tmp_path):
    _one_line_error(_train("--data", data_file, "--output", str(tmp_path / "out"), "--resume"), "holds no checkpoint")


def test_unknown_config_key(data_file, tmp_path):
    (tmp_path / "c.yaml").write_text("lr: 1e-4\nlora_rank: 8\n")
    _one_line_error(_train("--data", data_file, "--config", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "o")),
                    "c.yaml: unknown key 'lora_rank' (did you mean 'lora_r'?)")


def test_missing_data_and_file(tmp_path):
    _one_line_error(_train("--output", str(tmp_path / "o")), "no training data: pass --data")
    _one_line_error(_train("--data", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")), "does not exist")
