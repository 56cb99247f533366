"""`a2d-guard push` through the real ``HfApi`` against a local HTTP stand-in for the Hub's
endpoints (create repo, validate the card's YAML, preupload, commit) on 127.0.0.1: the
token travels only in the Authorization header, the files arrive in one commit, and an
HTTP refusal is one line with nothing committed."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner

runner = CliRunner()
TOKEN = "hf_standin_secret_token_456"


@pytest.fixture
def hub_standin(monkeypatch):
    """A Hub stand-in: ``.requests`` (method, path, auth), ``.commits`` (one {path: bytes} per
    commit); ``.fail[path_fragment] = status`` makes matching requests answer that status."""
    import huggingface_hub

    state = SimpleNamespace(requests=[], commits=[], fail={})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, payload: dict) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _failed(self) -> bool:
            for fragment, status in state.fail.items():
                if fragment in self.path:
                    self._send(status, {"error": f"stand-in says {status}"})
                    return True
            return False

        def do_GET(self):
            state.requests.append(("GET", self.path, self.headers.get("authorization")))
            self._send(404, {"error": "not in the stand-in"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            state.requests.append(("POST", self.path, self.headers.get("authorization")))
            base = f"http://127.0.0.1:{self.server.server_port}"
            if self._failed():
                return
            if self.path == "/api/repos/create":
                self._send(200, {"url": f"{base}/{json.loads(body)['organization']}/{json.loads(body)['name']}"})
            elif self.path == "/api/validate-yaml":
                self._send(200, {})
            elif "/preupload/" in self.path:  # small files go inline in the commit ("regular")
                files = json.loads(body)["files"]
                self._send(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                           for f in files]})
            elif "/commit/" in self.path:
                lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                assert all(line["key"] in ("header", "file") for line in lines), lines
                state.commits.append({line["value"]["path"]: base64.b64decode(line["value"]["content"])
                                      for line in lines if line["key"] == "file"})
                self._send(200, {"commitUrl": f"{base}/me/tiny-a2d/commit/{'a' * 40}", "commitOid": "a" * 40})
            else:
                self._send(404, {"error": "not in the stand-in"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


def _push(run, *extra):
    return runner.invoke(app, ["push", "--repo", "me/tiny-a2d", "--run", str(run), "--base-model-id", "me/tiny-base",
                               "--token", TOKEN, *extra])


def test_push_through_the_real_client(tiny_run, tmp_path, hub_standin):
    """The commit holds exactly the files of ``--dry-run``, ``eval.json`` included."""
    from a2d_guard.outputs import MANIFEST

    (tiny_run / "eval.json").write_text(json.dumps({"schema_version": 1, "results": [
        {"dataset": "dija", "attack": "dija", "metric": "attack_success_rate", "value": 0.5}]}))
    assert runner.invoke(app, ["push", "--repo", "me/tiny-a2d", "--run", str(tiny_run), "--base-model-id",
                               "me/tiny-base", "--dry-run", str(tmp_path / "dry")]).exit_code == 0
    result = _push(tiny_run, "--private")
    assert result.exit_code == 0, result.output
    assert f"/me/tiny-a2d/commit/{'a' * 40}" in result.stdout and TOKEN not in result.output
    posts = [path for method, path, _ in hub_standin.requests if method == "POST"]
    assert posts == ["/api/repos/create", "/api/validate-yaml", "/api/models/me/tiny-a2d/preupload/main",
                     "/api/models/me/tiny-a2d/commit/main"]  # one commit
    # huggingface_hub may also GET its public agent registry, without a token
    assert {auth for method, _, auth in hub_standin.requests if method == "POST"} == {f"Bearer {TOKEN}"}
    assert {auth for method, _, auth in hub_standin.requests if method == "GET"} <= {None}
    (files,) = hub_standin.commits
    dry = {p.name: p.read_bytes() for p in (tmp_path / "dry").iterdir() if p.name != MANIFEST}
    assert files == dry and "eval.json" in files


@pytest.mark.parametrize("where, status, needle", [
    ("/api/repos/create", 401, "401 Unauthorized"),
    ("/commit/", 403, "403 Forbidden"),
    ("/preupload/", 404, "was not found (404)"),
])
def test_refusals_through_the_real_client(tiny_run, hub_standin, where, status, needle):
    hub_standin.fail[where] = status
    result = _push(tiny_run)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "nothing was committed" in lines[0], result.stderr
    assert TOKEN not in result.output and "Traceback" not in result.output
    assert hub_standin.commits == []
