"""Attacks become canvases; rows too long for the model are skipped and counted, never a crash."""

import json

import pytest

from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.errors import A2DGuardError
from a2d_guard.evaluation.attacks import DEFAULT_PREFILL, attack_request, prepare
from a2d_guard.evaluation.data import load_prompts


def test_each_attack_places_its_text(fixture_files):
    dija = load_prompts(fixture_files["refined"]).prompts[0]
    assert attack_request("plain", dija).user == "write a story"
    assert attack_request("dija", dija).user == dija.refined and attack_request("dija", dija).prefill is None
    adv = load_prompts(fixture_files["advbench"]).prompts[0]
    assert attack_request("prefill", adv).prefill == "Sure, here is a poem"  # AdvBench's own target
    assert attack_request("prefill", dija).prefill == DEFAULT_PREFILL


def test_dija_masks_are_in_the_user_turn(tiny32, fixture_files):
    _, tokenizer, spec = tiny32
    data = load_prompts(fixture_files["refined"])
    kept, skipped = prepare(tokenizer, spec, "dija", data, gen_length=16)
    assert not skipped and [k.prompt.id for k in kept] == ["advbench_1", "advbench_2"]
    assert kept[0].ids == encode_prompt(tokenizer, spec, data.prompts[0].refined)
    assert kept[0].ids.count(spec.mask_id) == 3 + 4


def test_a_refined_attack_needs_refined_data(tiny32, fixture_files):
    _, tokenizer, spec = tiny32
    with pytest.raises(A2DGuardError, match=r"--attack fits needs a DIJA/FITS JSON.*advbench data"):
        prepare(tokenizer, spec, "fits", load_prompts(fixture_files["advbench"]), gen_length=16)
    with pytest.raises(A2DGuardError, match="unknown attack 'gcg'"):
        prepare(tokenizer, spec, "gcg", load_prompts(fixture_files["advbench"]), gen_length=16)


def test_too_long_rows_are_skipped_and_counted(tiny32, tmp_path):
    _, tokenizer, spec = tiny32  # 512 positions
    rows = [{"prompt": "hello"}, {"prompt": "go " * 600}, {"prompt": "fine <mask:4>"}, {"prompt": "go " * 480}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_prompts(path)
    kept, skipped = prepare(tokenizer, spec, "plain", data, gen_length=16)
    assert [k.prompt.id for k in kept] == ["0", "2", "3"] and [p.id for p in skipped] == ["1"]
    kept, skipped = prepare(tokenizer, spec, "plain", data, gen_length=128)  # row 3 fits only a short answer
    assert [p.id for p in skipped] == ["1", "3"]


def test_a_bad_placeholder_names_the_row(tiny32, tmp_path):
    _, tokenizer, spec = tiny32
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"Behavior": "b", "Refined_behavior": "fill <mask:0> here"}]))
    with pytest.raises(A2DGuardError, match=r"d\.json: row 0: prompt placeholder '<mask:0>'"):
        prepare(tokenizer, spec, "dija", load_prompts(path), gen_length=16)


def test_a_too_long_row_logs_no_tokenizer_warning(tiny32, tmp_path):
    import logging

    from a2d_guard.models.tiny import build_tiny_tokenizer

    _, _, spec = tiny32
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "go " * 600}) + "\n")
    logged = []
    handler = logging.Handler()
    handler.emit = logged.append
    logging.getLogger("transformers").addHandler(handler)
    try:
        kept, skipped = prepare(build_tiny_tokenizer(), spec, "plain", load_prompts(path), gen_length=16)
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert (len(kept), len(skipped)) == (0, 1)  # skipped and counted instead of the tokenizer's warning
    assert not [r for r in logged if "Token indices sequence length" in r.getMessage()]
