"""bench/peers.py: the checkpoint and prompts every system gets, the agreement measure, and a
peer with no source being reported as skipped (the peers' own code is never in CI).

Nothing here is timed. The model body is shrunk (``SHAPES["unit"]``); the vocabulary and
special-token ids stay LLaDA's, since they are what the peers check.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "peers.py"
UNIT = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
            max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0)


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("bench_peers", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.SHAPES["unit"] = UNIT
    return module


@pytest.fixture(scope="module")
def checkpoint(peers, tmp_path_factory):
    folder = tmp_path_factory.mktemp("peers") / "checkpoint"
    folder.mkdir()
    tok = peers.write_checkpoint(folder, "unit", modeling_dir=None)
    return folder, tok


def test_checkpoint_is_in_llada_original_format_with_llada_ids(peers, checkpoint):
    from safetensors import safe_open

    from a2d_guard.models import load_model

    folder, _ = checkpoint
    raw = json.loads((folder / "config.json").read_text())
    assert raw["model_type"] == "llada" and raw["d_model"] == 16 and raw["embedding_size"] == 126464
    assert (raw["mask_token_id"], raw["eos_token_id"], raw["bos_token_id"]) == (126336, 126081, 126080)
    assert "auto_map" not in raw  # no modeling code given: nothing points at files that are not there
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert "model.transformer.blocks.0.ff_proj.weight" in keys and "model.transformer.wte.weight" in keys
    assert not any(k.startswith("model.layers.") for k in keys)
    _, tok, spec = load_model(str(folder))
    assert (spec.family, spec.vocab_size, spec.mask_id, spec.eos_id, spec.eot_id) == ("llada", 126464, 126336,
                                                                                     126081, 126348)
    assert len(tok) == 126464 and tok.convert_tokens_to_ids("<|mdm_mask|>") == 126336


def test_modeling_code_is_copied_with_an_auto_map(peers, tmp_path):
    modeling = tmp_path / "model"
    modeling.mkdir()
    for name in ("configuration_llada.py", "modeling_llada.py"):
        (modeling / name).write_text(f"# stand-in for the peer's {name}\n")
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    peers.write_checkpoint(folder, "unit", modeling_dir=modeling)
    raw = json.loads((folder / "config.json").read_text())
    assert raw["auto_map"]["AutoModel"] == "modeling_llada.LLaDAModelLM"
    assert (folder / "modeling_llada.py").read_text().startswith("# stand-in")


def test_prompts_have_one_length_and_dija_ones_carry_masks(peers, checkpoint):
    _, tok = checkpoint
    data = peers.make_prompts(tok, 3, words_per_prompt=10, masks=4)
    assert data["kinds"] == ["plain"] * 3 + ["dija"] * 3
    assert len({len(p) for p in data["prompts"]}) == 1
    masks = [p.count(126336) for p in data["prompts"]]
    assert masks == [0, 0, 0, 4, 4, 4]
    # the chat template is LLaDA's: BOS, role headers, EoT after the user turn
    assert data["prompts"][0][:2] == [126080, 126346] and 126348 in data["prompts"][0]


def test_agreement_counts_shown_tokens_over_the_longer_answer(peers):
    stops = {9}
    same = peers.agreement([[1, 2, 3]], [[1, 2, 3]], stops)
    assert same == {"token_agreement": 1.0, "identical": 1.0}
    assert peers.agreement([[1, 2, 3, 4]], [[1, 5, 3, 4]], stops) == {"token_agreement": 0.75, "identical": 0.0}
    # what follows the first EOS is not shown, so it cannot disagree; a shorter answer can
    assert peers.agreement([[1, 9, 7]], [[1, 9, 8]], stops)["identical"] == 1.0
    assert peers.agreement([[1, 2]], [[1, 9]], stops) == {"token_agreement": 0.5, "identical": 0.0}


@pytest.mark.slow
def test_a_peer_without_its_source_is_skipped_with_the_reason(peers, tmp_path):
    out = tmp_path / "peers.json"
    code = peers.main(["--peers-dir", str(tmp_path / "empty"), "--venv-dir", str(tmp_path / "venvs"),
                       "--shape", "unit", "--systems", "ours-exact,llada", "--servers", "", "--batch-sizes", "1",
                       "--requests", "1", "--gen-length", "4", "--steps", "4", "--block-length", "4",
                       "--out", str(out)])
    report = json.loads(out.read_text())
    assert code == 0
    assert "LLaDA/generate.py" in report["skipped"]["llada"]
    assert not (tmp_path / "venvs").exists() or not any((tmp_path / "venvs").iterdir())  # no venv for it
    ours = report["systems"]["ours-exact"]["batch_1"]
    assert ours["requests"] == 2 and ours["token_forwards_per_generated_token"] > 0
    assert report["goals"]["ours-exact_vs_llada_batch1"]["met"] is None  # not faked: nothing to compare
