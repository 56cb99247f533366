"""Demo models are reused by the content of what trained them, never by path or time."""

import shutil

from a2d_guard.demo.fingerprint import FingerprintBook, fingerprint
from a2d_guard.training import TrainConfig


def _folder(root, data_text="a\n", weights=b"\x00\x01"):
    (root / "data").mkdir(parents=True)
    (root / "data" / "rows.jsonl").write_text(data_text)
    (root / "base" / "model").mkdir(parents=True)
    (root / "base" / "model" / "model.safetensors").write_bytes(weights)
    (root / "base" / "model" / "config.json").write_text("{}")
    return root


def _config(root, **kw):
    return TrainConfig(model=str(root / "base" / "model"), data=str(root / "data" / "rows.jsonl"),
                       output=str(root / "a2d"), **kw)


def test_fingerprint_is_path_independent(tmp_path):
    a = _folder(tmp_path / "a")
    shutil.copytree(a, tmp_path / "elsewhere" / "b")
    b = tmp_path / "elsewhere" / "b"
    assert fingerprint(_config(a)) == fingerprint(_config(b))
    assert fingerprint(_config(a)) == fingerprint(_config(a, progress=False))  # display only


def test_fingerprint_changes_with_config_data_or_base_contents(tmp_path):
    a = _folder(tmp_path / "a")
    ref = fingerprint(_config(a))
    assert fingerprint(_config(a, lr=1e-3)) != ref
    assert fingerprint(_config(a, max_steps=7)) != ref
    assert fingerprint(_config(_folder(tmp_path / "d", data_text="b\n"))) != ref  # same names, other data
    assert fingerprint(_config(_folder(tmp_path / "w", weights=b"\x00\x02"))) != ref  # other base weights
    assert fingerprint(TrainConfig(model="tiny", data="hf:some/set", output="x")) == fingerprint(
        TrainConfig(model="tiny", data="hf:some/set", output="y"))  # non-local names count as written


def test_book_records_per_stage_and_survives_a_damaged_file(tmp_path):
    book = FingerprintBook(tmp_path)
    assert not book.matches("base", "f1")
    book.record("base", "f1")
    book.record("a2d", "f2")
    assert book.matches("base", "f1") and book.matches("a2d", "f2") and not book.matches("base", "f2")
    book.path.write_text('{"base": ')  # interrupted by hand: nothing matches, everything retrains
    assert not book.matches("base", "f1")
    assert [p.name for p in tmp_path.iterdir()] == [FingerprintBook.FILE]  # no temporary left behind
