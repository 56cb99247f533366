"""`a2d-guard serve` start-up mistakes: one line naming the problem and the fix, exit 1, and no
model is loaded for a mistake that can be seen before loading."""

from __future__ import annotations

import socket

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner


def _serve(*args):
    return CliRunner().invoke(app, ["serve", *args])


@pytest.fixture()
def busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_port_in_use(busy_port):
    r = _serve("--port", str(busy_port))
    assert r.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{busy_port}" in r.output and "--port" in r.output
    assert "Traceback" not in r.output


def test_demo_model_without_a_demo_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _serve("--model", "demo", "--port", "0")
    assert r.exit_code == 1 and "run `a2d-guard demo` first" in r.output


@pytest.mark.parametrize("args, expected", [
    (["--batch", "0"], "--batch must be >= 1"),
    (["--max-waiting", "-1"], "--max-waiting must be >= 0"),
    (["--gen-length", "30", "--block-length", "8"], "not divisible by block_length"),
    (["--eos-threshold", "2"], "eos_threshold must be in (0, 1]"),
    (["--cache", "full"], "--cache 'full' is not a cache mode; use one of none, prefix, dual"),
])
def test_bad_flags(args, expected):
    r = _serve(*args, "--port", "0")
    assert r.exit_code == 1 and expected in r.output and "Traceback" not in r.output


def test_config_file_problems(tmp_path):
    bad_key = tmp_path / "serve.yaml"
    bad_key.write_text("batch: 8\nbatchsize: 4\n")
    r = _serve("--config", str(bad_key))
    assert r.exit_code == 1 and "unknown setting(s) batchsize" in r.output
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("batch: [8\n")
    r = _serve("--config", str(not_yaml))
    assert r.exit_code == 1 and "is not valid YAML" in r.output
    r = _serve("--config", str(tmp_path))
    assert r.exit_code == 1 and "is a folder, not a file" in r.output
    yes_no = tmp_path / "typed.yaml"
    yes_no.write_text("refusal_text: no\n")
    r = _serve("--config", str(yes_no))
    assert r.exit_code == 1 and "refusal_text must be text, got False" in r.output and "quote" in r.output
    yes_no.write_text("batch: '8'\n")
    r = _serve("--config", str(yes_no))
    assert r.exit_code == 1 and "batch must be an integer, got '8'" in r.output


def test_flags_override_the_config_file(tmp_path):
    from a2d_guard.server.settings import load_server_config

    cfg = tmp_path / "serve.yaml"
    cfg.write_text("batch: 8\ngen-length: 64\nrefusal_text: 'no'\neos_threshold: 1\n")
    settings = load_server_config(cfg).merged(batch=4, gen_length=None)
    assert (settings.batch, settings.gen_length, settings.refusal_text, settings.eos_threshold) == (4, 64, "no", 1)


def test_demo_model_serves_with_the_demos_decode_settings_unless_told_otherwise(tmp_path):
    """The demo's tiny model learned 64-token rows; the server's 128-token default canvas is not its world."""
    from a2d_guard.cli.serve import serve_settings

    from a2d_guard.demo.runner import DEFAULT_PLAN

    e = DEFAULT_PLAN.eval
    demo = serve_settings(None, model="demo")
    assert (demo.gen_length, demo.default_params().steps, demo.block_length, demo.eos_threshold) == \
        (e.gen_length, e.steps, e.block_length, e.eos_threshold)
    assert serve_settings(None, model="demo", block_length=16).block_length == 16  # a flag wins
    config = tmp_path / "serve.yaml"
    config.write_text("model: demo\ngen_length: 48\n")
    from_file = serve_settings(config)
    assert (from_file.gen_length, from_file.block_length) == (48, e.block_length)  # the file wins, then the demo
    tiny = serve_settings(None, model="tiny")
    assert (tiny.gen_length, tiny.block_length) == (128, 32)  # any other model keeps the server's defaults


def test_a_config_files_gen_length_and_a_block_length_flag_are_checked_together(tmp_path):
    from a2d_guard.cli.serve import serve_settings

    config = tmp_path / "serve.yaml"
    config.write_text("gen_length: 48\n")
    assert serve_settings(config, block_length=16).block_length == 16  # 48 / 32 alone would be invalid
