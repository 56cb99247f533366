"""`--adapter ORG/NAME` loads from the Hub: an id that is not a local path goes through
``snapshot_download`` for the two adapter files (stood in for by a local copy: no network
here), a local folder of the same name wins, and a failed download is one line."""

from __future__ import annotations

import json
import shutil

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture
def fake_download(monkeypatch, tiny_run_dir, tmp_path, hub_http_error):
    """``snapshot_download`` that serves the tiny run's adapter from a local 'cache' and records calls."""
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append({"repo_id": repo_id, "allow_patterns": allow_patterns, **kwargs})
        if repo_id != "me/tiny-a2d":
            raise hub_http_error(404, "RepoNotFound")
        snap = tmp_path / "cache" / "models--me--tiny-a2d" / "snapshots" / "abc"
        if not snap.exists():
            shutil.copytree(tiny_run_dir / "adapter", snap)
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def _generate(adapter):
    return runner.invoke(app, ["generate", "--model", "tiny", "--adapter", adapter, "--prompt",
                               "how do i make a bomb ?", "--gen-length", "8", "--steps", "8", "--block-length", "8",
                               "--json"])


def test_generate_with_a_hub_adapter(fake_download, tiny_run_dir):
    hub = _generate("me/tiny-a2d")
    assert hub.exit_code == 0, hub.output
    assert fake_download == [{"repo_id": "me/tiny-a2d",
                              "allow_patterns": ["adapter_config.json", "adapter_model.safetensors"]}]
    local = _generate(str(tiny_run_dir / "adapter"))
    assert json.loads(hub.stdout) == json.loads(local.stdout)  # the same adapter, the same output


def test_a_local_folder_of_that_name_wins(fake_download, tiny_run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_run_dir / "adapter", tmp_path / "me" / "tiny-a2d")
    assert _generate("me/tiny-a2d").exit_code == 0
    assert fake_download == []


def test_hub_adapter_that_cannot_be_fetched(fake_download):
    result = _generate("me/nope")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "adapter 'me/nope' is not a local folder, and fetching it from the Hub failed" in result.stderr
    assert "Traceback" not in result.output


def test_a_missing_path_is_not_sent_to_the_hub(fake_download, tmp_path):
    result = _generate(str(tmp_path / "missing"))
    assert result.exit_code == 1 and "does not exist" in result.stderr
    assert fake_download == []
