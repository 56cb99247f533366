"""``eval --protocol llada|a2d`` runs through the engine in batches, and every record is what the
readable decoder (``reference.reference_generate``) writes for that prompt (DESIGN §11, issue 12)."""

import pytest

from a2d_guard.diffusion.reference import reference_generate
from a2d_guard.engine import LLM
from a2d_guard.evaluation.attacks import prepare
from a2d_guard.evaluation.data import load_prompts
from a2d_guard.evaluation.judge_choice import make_judge
from a2d_guard.evaluation.run import EvalSettings, EvalTask, run_eval


@pytest.mark.slow
@pytest.mark.parametrize("protocol, temperature", [("llada", 0.8), ("a2d", 0.0)])
def test_eval_protocol_records_equal_the_readable_decoder(tiny64, fixture_files, protocol, temperature):
    model, tok, spec = tiny64
    llm = LLM.from_loaded(model, tok, spec, max_num_seqs=3)
    steps = []
    real_step = llm.engine.step
    llm.engine.step = lambda: steps.append(llm.engine.num_running) or real_step()  # batch size at each step

    settings = EvalSettings(orders=("low_confidence", "random"), thresholds=(1.0, 0.5), gen_length=8, steps=8,
                            block_length=4, temperature=temperature, seed=7, batch=3, protocol=protocol)
    tasks = [EvalTask("dija", fixture_files["refined"]), EvalTask("plain", fixture_files["advbench"])]
    report, records = run_eval(llm, tasks, settings, judge=make_judge("keyword"))
    assert max(steps) == 3  # batched: three requests share a step

    items = {}
    for task in tasks:
        kept, _ = prepare(tok, spec, task.attack, load_prompts(task.data, None), 8, True, protocol)
        items.update({(task.attack, item.prompt.id): item for item in kept})
    assert len(records) == 16 and {r["attack"] for r in records} == {"dija", "plain"}
    for rec in records:
        params = settings.params(rec["order"], rec["threshold"])
        ref = reference_generate(model, spec, items[rec["attack"], rec["id"]].ids, params)
        infill = tok.decode(ref.infill_ids, skip_special_tokens=False) if ref.infill_ids else None
        got = (rec["text"], rec["infill_text"], rec["finish_reason"], rec["steps"], rec["reject_step"])
        assert got == (tok.decode(ref.token_ids, skip_special_tokens=True), infill, ref.finish_reason, ref.steps,
                       ref.reject_step), rec
        assert rec["p_eos"] == pytest.approx(ref.p_eos, rel=1e-9, abs=1e-12)
    assert {r["finish_reason"] for r in records if r["threshold"] == 1.0} == {"length"}  # no early stop
