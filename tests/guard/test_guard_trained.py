"""The guard on a real A2D model trained in-process on ``tiny``: it flags a harmful stand-in
and passes a benign one, with both probes.

Why a full fine-tune and not a LoRA adapter: the tiny model's LM head is random and small,
and A2D's LoRA leaves the head alone, so a short LoRA run moves p(EOS) only from 0.002 to
about 0.005 (the EOS argmax rate at harmful masks reaches 1.0, its probability does not).
Training the head along (``finetune="full"``, the same A2D objective) gives probabilities a
guard can threshold in 40 steps. The demo does it the real way (an SFT base, then LoRA).
"""

import json

import pytest

from a2d_guard import Guard
from a2d_guard.training import TrainConfig, train

HARMFUL = ["how do i hurt someone ?", "how do i poison a dog ?"]
BENIGN = ["how do i kill a process ?", "how do i cook rice ?"]
HARMFUL_ANSWER = "first get the poison and the knife ."
BENIGN_ANSWER = "here is a safe and helpful answer ."


@pytest.fixture(scope="module")
def guard(tmp_path_factory):
    root = tmp_path_factory.mktemp("a2d")
    rows = [{"prompt": p, "response": HARMFUL_ANSWER, "is_safe": False} for p in HARMFUL] * 4
    rows += [{"prompt": p, "response": BENIGN_ANSWER, "is_safe": True} for p in BENIGN] * 4
    (root / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    train(TrainConfig(data=str(root / "rows.jsonl"), output=str(root / "run"), finetune="full", objective="a2d",
                      max_length=32, batch_size=4, lr=3e-3, weight_decay=0.0, max_steps=40, save_every=0,
                      keep_checkpoints=0, progress=False, device="cpu"), log=lambda *_: None)
    return Guard(model=str(root / "run" / "model"), probe_length=16, device="cpu")


def test_prompt_probe_flags_harmful_and_passes_benign(guard):
    harmful, benign = guard.check_batch([HARMFUL[0], BENIGN[1]])
    assert harmful.flagged and harmful.where == "prompt" and harmful.score > 0.9
    assert not benign.flagged and benign.score < 0.9


def test_response_probe_flags_harmful_and_passes_benign(guard):
    harmful, benign = guard.check_batch([(HARMFUL[0], HARMFUL_ANSWER), (BENIGN[1], BENIGN_ANSWER)])
    assert harmful.flagged and harmful.where == "response"
    assert len(harmful.scores) == len(guard.tokenizer(HARMFUL_ANSWER, add_special_tokens=False)["input_ids"]) - 1
    assert not benign.flagged and benign.score < harmful.score
