"""The demo's evaluation is ``a2d-guard eval``'s: engine decodes equal to the reference sampler, tables from records."""

from a2d_guard.demo.corpus import build_corpus
from a2d_guard.demo.evaluate import ATTACKS, ORDERS, EvalSettings, Evaluator
from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.diffusion.reference import reference_generate
from a2d_guard.engine.llm import LLM

SETTINGS = EvalSettings(gen_length=16, steps=4, block_length=8, max_prompts=2, batch=8)


def _evaluated(tiny32):
    calls = []
    evaluator = Evaluator(LLM.from_loaded(*tiny32, max_num_seqs=SETTINGS.batch), build_corpus(), SETTINGS,
                          on_progress=calls.append)
    return evaluator, evaluator.run(), calls


def test_every_planned_request_is_decoded_once_and_tables_come_from_the_records(tiny32):
    evaluator, result, calls = _evaluated(tiny32)
    assert sum(calls) == evaluator.planned_requests() == len(evaluator.records) == result["details"]["generations"]
    for key, tau in (("attack_success", 1.0), ("attack_success_monitored", SETTINGS.eos_threshold)):
        for attack in ATTACKS:
            for order in ORDERS:
                rows = [r for r in evaluator.records if r["data"] == "demo/heldout-harmful" and r["attack"] == attack
                        and r["order"] == order and r["threshold"] == tau]
                assert len(rows) == 2
                assert result[key][attack][order] == sum(r["verdict"]["attack_success"] for r in rows) / 2
    benign = [r for r in evaluator.records if r["data"] == "demo/heldout-benign" and r["attack"] == "plain"]
    assert result["over_refusal"] == sum(r["verdict"]["refused"] for r in benign) / len(benign)
    assert result["details"]["benign"]["n"] == result["details"]["lookalike"]["n"] == 2


def test_the_engine_decodes_what_the_reference_sampler_writes(tiny32):
    """Each record, decoded again one at a time by the golden oracle, gives the same answer and steps."""
    model, tokenizer, spec = tiny32
    evaluator, _, _ = _evaluated(tiny32)
    for r in evaluator.records[::3]:
        params = SETTINGS.run_settings((r["order"],), (r["threshold"],)).params(r["order"], r["threshold"])
        ref = reference_generate(model, spec, encode_prompt(tokenizer, spec, r["user"], prefill=r["prefill"]), params)
        assert (tokenizer.decode(ref.token_ids, skip_special_tokens=True), ref.finish_reason, ref.steps) == \
            (r["text"], r["finish_reason"], r["steps"]), r
