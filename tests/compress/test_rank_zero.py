"""``compress --rank 0`` means plain group-wise quantization (no L R): it runs end to end, the
report says so, the folder has no low-rank tensors worth a byte, and it loads and generates."""

import json

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.compress import CompressConfig
from a2d_guard.errors import A2DGuardError

runner = CliRunner()


def test_rank_zero_is_plain_quantization_end_to_end(tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(f"calibration text {i}: masked tokens are filled in any order." for i in range(10)))
    out = tmp_path / "q2"
    result = runner.invoke(app, ["compress", "--model", "tiny", "--calib", str(calib), "--output", str(out),
                                 "--bits", "2", "--rank", "0", "--iters", "3", "--max-length", "32", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rank"] == 0 and report["outliers"] == 0
    assert report["method"] == "Q only: plain group-wise quantization (rank 0, no low-rank L R)"
    assert all(layer["rounds"] == 1 for layer in report["layers"])  # nothing to alternate with
    assert 0 < report["act_err"] < 1 and report["memory"]["after_bytes"] < report["memory"]["before_bytes"]
    stored = json.loads((out / "config.json").read_text())["a2d_guard_compression"]
    assert stored["rank"] == 0 and all(layer["rank"] == 0 for layer in stored["layers"].values())

    gen = runner.invoke(app, ["generate", "--model", str(out), "--prompt", "hello", "--gen-length", "8",
                              "--steps", "8", "--block-length", "8", "--json"])
    assert gen.exit_code == 0, gen.output
    assert len(json.loads(gen.stdout)["token_ids"]) > 0


def test_outliers_need_a_low_rank_part():
    with pytest.raises(A2DGuardError, match=r"--outliers 4 needs a low-rank part; --rank 0 has none"):
        CompressConfig(bits=2, rank=0, outliers=4).validate()


def test_readable_report_says_plain_quantization(tmp_path):
    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(f"calibration text {i}: masked tokens are filled in any order." for i in range(10)))
    result = runner.invoke(app, ["compress", "--model", "tiny", "--calib", str(calib), "--output",
                                 str(tmp_path / "q2"), "--rank", "0", "--max-length", "32"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "2-bit Q, rank 0: plain group-wise quantization, no L R" in result.stdout
    assert "(incl. L R)" not in result.stdout
