"""`--device cuda` on a machine without CUDA: one line naming the device and the fix, exit 1."""

import json

import pytest
import torch
from a2d_guard.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _one_line(result, match):
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_generate(no_cuda):
    result = runner.invoke(app, ["generate", "--model", "tiny", "--prompt", "hi", "--device", "cuda"])
    _one_line(result, "--device cuda: CUDA is not available on this machine")


def test_train(no_cuda, tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"prompt": "p", "response": "r", "is_safe": True}) + "\n")
    result = runner.invoke(app, ["train", "--model", "tiny", "--data", str(data), "--output", str(tmp_path / "out"),
                                 "--device", "cuda", "--no-progress"])
    _one_line(result, "--device cuda: CUDA is not available on this machine")
    assert not (tmp_path / "out").exists()
