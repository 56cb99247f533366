"""``a2d-guard compress`` end to end on the tiny model, and its bad-input contract."""

import json

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()
TEXTS = [f"calibration sentence number {i}: the model fills masked tokens in any order." for i in range(12)]


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    path = tmp_path_factory.mktemp("calib") / "calib.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


def _args(calib, output, *extra):
    return ["compress", "--model", "tiny", "--calib", str(calib), "--output", str(output), "--bits", "2",
            "--rank", "4", "--iters", "2", "--max-length", "32", *extra]


@pytest.fixture(scope="module")
def compressed(calib, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny-q2"
    result = runner.invoke(app, _args(calib, out, "--json"))
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_json_report_has_the_metrics(compressed):
    out, report = compressed
    assert report["bits"] == 2 and report["rank"] == 4 and report["init"] == "odlri"
    assert 0 < report["act_err"] < 1 and report["quant_scale"] > 0 and report["bpw"] > 2
    assert report["memory"]["after_bytes"] < report["memory"]["before_bytes"]
    assert report["memory"]["file_bytes"] == (out / "model.safetensors").stat().st_size
    assert set(report["md_loss"]) == {"0.15", "0.5", "0.85"}
    assert all(set(v) == {"uncompressed", "compressed"} for v in report["md_loss"].values())
    assert len(report["layers"]) == 14 and report["calibration"]["eval_texts"] >= 1
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llada" and config["a2d_guard_compression"]["bits"] == 2


def test_generate_runs_on_the_compressed_folder(compressed, library_outcomes):
    out, _ = compressed
    result = runner.invoke(app, ["generate", "--model", str(out), "--prompt", "hello", "--gen-length", "16",
                                 "--steps", "16", "--block-length", "8", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert [(record["finish_reason"], record["token_ids"])] == library_outcomes(
        ["hello"], model=str(out), gen_length=16, steps=16, block_length=8)


def test_readable_output_prints_tables(calib, tmp_path):
    result = runner.invoke(app, _args(calib, tmp_path / "out", "--init", "zero", "--iters", "1"))
    assert result.exit_code == 0, result.output
    assert "masked-diffusion loss" in result.stdout and "bits/weight" in result.stdout


@pytest.mark.parametrize("extra, message", [
    (["--bits", "5"], "--bits 5"),
    (["--rank", "64"], "--rank 64"),
    (["--group-size", "48"], "--group-size 48"),
    (["--init", "random"], "--init 'random'"),
    (["--iters", "0"], "--iters 0"),
    (["--lr-bits", "8"], "--lr-bits 8"),
])
def test_bad_options_exit_1_with_one_line_and_write_nothing(calib, tmp_path, extra, message):
    out = tmp_path / "out"
    result = runner.invoke(app, _args(calib, out) + extra)
    _assert_clean_failure(result, message, tmp_path)


@pytest.mark.parametrize("content, message", [
    ("", "holds no text"),
    ("\n   \n", "holds no text"),
    ("only one line\n", "at least 2"),
])
def test_empty_calibration_file_fails_cleanly(tmp_path, content, message):
    calib = tmp_path / "calib.txt"
    calib.write_text(content)
    _assert_clean_failure(runner.invoke(app, _args(calib, tmp_path / "out")), message, tmp_path, keep={"calib.txt"})


def test_missing_or_unreadable_calibration_file_fails_cleanly(tmp_path):
    _assert_clean_failure(runner.invoke(app, _args(tmp_path / "nope.txt", tmp_path / "out")), "does not exist",
                          tmp_path)
    binary = tmp_path / "calib.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    _assert_clean_failure(runner.invoke(app, _args(binary, tmp_path / "out")), "unreadable", tmp_path,
                          keep={"calib.txt"})


def test_existing_output_is_not_touched(calib, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, _args(calib, out))
    _assert_clean_failure(result, "already exists", tmp_path, keep={"out"})
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def _assert_clean_failure(result, message, folder, keep=frozenset()):
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in result.output
    assert {p.name for p in folder.iterdir()} == set(keep)  # no output, no temporary folder left behind


def test_lr_bits_4_packs_the_factors_and_counts_them_in_bpw(calib, compressed, tmp_path):
    """--lr-bits 4: L R stored as 4-bit codes (smaller file, lower bpw), the folder loads and generates."""
    import torch

    from a2d_guard.compress.qlr_linear import QLRLinear
    from a2d_guard.models import load_model

    base_out, base_report = compressed
    out = tmp_path / "tiny-q2-lr4"
    result = runner.invoke(app, _args(calib, out, "--lr-bits", "4", "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["lr_bits"] == 4 and report["bpw"] < base_report["bpw"]
    assert report["memory"]["file_bytes"] < base_report["memory"]["file_bytes"]
    config = json.loads((out / "config.json").read_text())["a2d_guard_compression"]
    assert config["version"] == 2 and {s["lr_bits"] for s in config["layers"].values()} == {4}
    model, _, spec = load_model(str(out), device="cpu")
    layers = [m for m in model.modules() if isinstance(m, QLRLinear)]
    assert len(layers) == 14 and all(m.lr_bits == 4 and m.L is None for m in layers)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[spec.mask_id] * 4])).logits
    assert torch.isfinite(logits).all()
