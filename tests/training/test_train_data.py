"""Reading, validating, templating and ordering training rows."""

import json
import sys
import types

import pytest

from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.errors import A2DGuardError
from a2d_guard.training.data import BatchStream, encode_row, encode_rows, load_rows, template_prompt


def test_jsonl_json_csv_agree(tmp_path, rows, jsonl):
    rows = rows(6)
    a, _ = load_rows(jsonl(tmp_path / "a.jsonl", rows))
    (tmp_path / "b.json").write_text(json.dumps(rows))
    b, _ = load_rows(tmp_path / "b.json")
    lines = ["prompt,response,label"] + [
        f"\"{r['prompt']}\",\"{r['response']}\",{'safe' if r['is_safe'] else 'harmful'}" for r in rows]
    (tmp_path / "c.csv").write_text("\n".join(lines) + "\n")
    c, _ = load_rows(tmp_path / "c.csv")
    key = [(r.prompt, r.response, r.is_harmful) for r in a]
    assert key == [(r.prompt, r.response, r.is_harmful) for r in b] == [(r.prompt, r.response, r.is_harmful) for r in c]
    assert [r.is_harmful for r in a] == [not r["is_safe"] for r in rows]


def test_beavertails_shape_with_extra_columns_loads(tmp_path, jsonl):
    row = {"prompt": "p", "response": "r", "category": {"animal_abuse": False}, "is_safe": False}
    rows, _ = load_rows(jsonl(tmp_path / "bt.jsonl", [row]))
    assert rows[0].is_harmful


@pytest.mark.parametrize("content, match", [
    ('{"prompt": "p", "response": "r", "is_safe": true}\n{"prompt": "p", "is_safe": true}\n',
     r"rows\.jsonl:2: missing column response"),
    ('{"question": "p", "answer": "r"}\n', r"rows\.jsonl:1: missing column prompt, response, is_safe or label"),
    ('{"prompt": "p", "response": "r", "is_safe": "maybe"}\n', r"rows\.jsonl:1: 'is_safe' must be true or false"),
    ('{"prompt": "p", "response": "r", "label": "bad"}\n', r"rows\.jsonl:1: 'label' must be 'harmful' or 'safe'"),
    ('{"prompt": "p", "response": "r", "is_safe": true}\n{not json\n', r"rows\.jsonl:2: not valid JSON"),
    ("", r"no rows to train on"),
    ("\n\n", r"no rows to train on"),
])
def test_bad_rows_name_file_and_line(tmp_path, content, match):
    path = tmp_path / "rows.jsonl"
    path.write_text(content)
    with pytest.raises(A2DGuardError, match=match):
        load_rows(path)


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"prompt": "p", "response": "r", "is_safe": true}\n{"prompt": "\xff"}\n')
    with pytest.raises(A2DGuardError, match=r"rows\.jsonl:2: bytes that are not UTF-8"):
        load_rows(path)


def test_skip_bad_rows_counts_them(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "p", "response": "r", "is_safe": true}\n{"prompt": "p"}\n')
    rows, skipped = load_rows(path, skip_bad_rows=True)
    assert len(rows) == 1 and skipped == 1


def test_unknown_format_and_missing_file(tmp_path):
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(A2DGuardError, match="unknown data format"):
        load_rows(tmp_path / "rows.txt")
    with pytest.raises(A2DGuardError, match="does not exist"):
        load_rows(tmp_path / "nope.jsonl")


def test_example_layout(tiny_parts, tmp_path, rows, jsonl):
    _, tok, spec = tiny_parts
    rows, _ = load_rows(jsonl(tmp_path / "r.jsonl", rows(2)))
    ex = encode_row(tok, spec, rows[0], max_length=40)
    prompt = encode_prompt(tok, spec, rows[0].prompt)
    response = tok(rows[0].response, add_special_tokens=False)["input_ids"]
    assert list(ex.input_ids) == prompt + response + [spec.eos_id] * (40 - len(prompt) - len(response))
    assert ex.prompt_length == len(prompt) and not ex.truncated
    assert ex.input_ids.count(tok.bos_token_id) == 1  # no second BOS
    start, end = ex.content_span
    assert list(ex.input_ids[start:end]) == tok(rows[0].prompt, add_special_tokens=False)["input_ids"]


def test_truncation_and_too_long_counts(tiny_parts, tmp_path, rows, jsonl):
    _, tok, spec = tiny_parts
    rows, _ = load_rows(jsonl(tmp_path / "r.jsonl", rows(4)))
    prompt_len = len(template_prompt(tok, spec, rows[0].prompt)[0])
    examples, stats = encode_rows(rows, tok, spec, max_length=prompt_len + 2)
    assert stats.truncated == len(examples) and all(len(e.input_ids) == prompt_len + 2 for e in examples)
    assert stats.harmful + stats.retain + stats.too_long == 4
    with pytest.raises(A2DGuardError, match="raise --max-length"):
        encode_rows(rows, tok, spec, max_length=8)


def test_stream_is_a_pure_function_and_splits_across_ranks(tiny_parts, tmp_path, rows, jsonl):
    _, tok, spec = tiny_parts
    rows, _ = load_rows(jsonl(tmp_path / "r.jsonl", rows(10)))
    examples, _ = encode_rows(rows, tok, spec, max_length=40)
    one = BatchStream(examples, 4, seed=3)
    again = BatchStream(examples, 4, seed=3)
    assert [one.indices(m) for m in range(6)] == [again.indices(m) for m in reversed(range(6))][::-1]
    assert sorted(one.indices(0) + one.indices(1) + one.indices(2)[:2]) == list(range(10))  # epoch 0 covers all
    r0, r1 = (BatchStream(examples, 2, seed=3, rank=r, world_size=2) for r in (0, 1))
    for m in range(4):
        assert r0.indices(m) + r1.indices(m) == one.indices(m)
        assert r0.batch(m).row_seeds.tolist() + r1.batch(m).row_seeds.tolist() == one.batch(m).row_seeds.tolist()


def test_hub_data_set_error_keeps_the_datasets_message(monkeypatch):
    """The Hub cannot be reached here, so a stand-in ``datasets`` module raises what the real one does."""
    def load_dataset(name, split):
        raise ValueError(f'Unknown split "{split}". Should be one of [\'train\', \'test\'].')

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with pytest.raises(A2DGuardError) as err:
        load_rows("hf:org/safety:validation")
    message = str(err.value)
    assert message.startswith("hf:org/safety:validation: could not load the data set (ValueError: Unknown split")
    assert "Should be one of ['train', 'test']" in message and "check the name, split and network" in message
