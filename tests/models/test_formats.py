"""The checkpoint-format registry: how ``load_model`` reads folders of formats it does not own.

The import rule itself (``models`` never imports ``compress``) is in tests/test_packaging.py.
"""

import json
import subprocess
import sys

import pytest

from a2d_guard.models import formats, load_model, save_model
from a2d_guard.models.formats import find_format, register_checkpoint_format


@pytest.fixture
def registry():
    """Leave the process-wide registry as the test found it."""
    saved = dict(formats._FORMATS)
    yield
    formats._FORMATS.clear()
    formats._FORMATS.update(saved)


def _plain_folder(tmp_path, tiny32, marker: str | None = None):
    model, tok, spec = tiny32
    folder = save_model(model, tok, spec, tmp_path / "m")
    if marker:
        raw = json.loads((folder / "config.json").read_text())
        raw[marker] = {"version": 1}
        (folder / "config.json").write_text(json.dumps(raw))
    return folder


LOADED = []


def load_marked(folder, raw, family, dtype, device):
    """A plugin's load function: the plain LLaDA loader, remembering that it ran."""
    from a2d_guard.models.llada import load_llada

    LOADED.append((folder, family))
    return load_llada(folder, raw, dtype, device)


def test_a_registered_format_routes_load_model(tmp_path, tiny32, registry):
    folder = _plain_folder(tmp_path, tiny32, marker="my_format")
    LOADED.clear()
    register_checkpoint_format("mine", lambda raw: "my_format" in raw, load_marked)
    _, _, spec = load_model(str(folder), device="cpu")
    assert LOADED == [(folder, "llada")] and spec.family == "llada"


def test_a_format_named_by_string_is_imported_when_first_used(tmp_path, tiny32, registry):
    folder = _plain_folder(tmp_path, tiny32, marker="my_format")
    LOADED.clear()
    fmt = register_checkpoint_format("mine", lambda raw: "my_format" in raw, f"{__name__}:load_marked")
    assert fmt.loader() is load_marked
    load_model(str(folder), device="cpu")
    assert LOADED == [(folder, "llada")]


def test_plain_folders_match_no_format_and_bad_names_are_refused(registry):
    assert find_format({"model_type": "llada"}) is None
    assert find_format({formats.COMPRESSION_KEY: {}}).name == "a2d-guard-qlr"
    with pytest.raises(ValueError, match="package.module:function"):
        register_checkpoint_format("bad", lambda raw: False, "no_colon_here")


@pytest.mark.slow
def test_compressed_folder_loads_without_importing_compress_first(tmp_path, tiny32):
    """A fresh interpreter: a plain load leaves compress unimported, a compressed one imports it."""
    from a2d_guard.compress.apply import CompressConfig, compress_model
    from a2d_guard.compress.data import calibration_inputs, make_batches, tokenize
    from a2d_guard.compress.storage import save_compressed
    from a2d_guard.models import model_logits

    plain = _plain_folder(tmp_path, tiny32)
    model, tok, spec = load_model(str(plain), device="cpu")
    batches = make_batches(tokenize(["a short calibration text for the test"], tok, spec, 16), spec, 1, "cpu")
    compress_model(model, calibration_inputs(batches, spec, seed=0),
                   lambda i, a: model_logits(model, spec, i, a),
                   CompressConfig(bits=3, rank=2, init="zero", iters=1))
    save_compressed(model, tok, spec, tmp_path / "c", {"bits": 3})
    code = (
        "import sys; from a2d_guard.models import load_model\n"
        f"load_model({str(plain)!r}, device='cpu')\n"
        "assert not any(m.startswith('a2d_guard.compress') for m in sys.modules), 'plain load imported compress'\n"
        f"m, _, _ = load_model({str(tmp_path / 'c')!r}, device='cpu')\n"
        "assert any(type(x).__name__ == 'QLRLinear' for x in m.modules())\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
