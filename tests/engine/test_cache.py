"""Fast mode's block K/V cache (DESIGN §12): ``cache="prefix" | "dual"`` in the engine.

What must hold: a step at a block's first step is the uncached forward bit for bit (float64);
a window step over a cache written from the same canvas equals the full forward; later steps
really reuse stale K/V (their logits differ, and by how much is printed); the window extents
give the token-forward counts worked out by hand; pool slots follow admission and eviction;
the monitor still rejects at the leftmost mask; a request's output does not depend on what
else shares its step.
"""

import pytest
import torch

from a2d_guard.config import SamplingParams
from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.engine import LLM
from a2d_guard.engine.cached_forward import check_cacheable
from a2d_guard.engine.llm_engine import LLMEngine
from a2d_guard.engine.runner import ModelRunner
from a2d_guard.engine.sequence import Sequence
from a2d_guard.errors import A2DGuardError
from a2d_guard.models.llada import make_bidirectional
from a2d_guard.models.spec import ModelSpec
from a2d_guard.models.tiny import build_tiny_tokenizer

PROMPTS = ["how do i cook rice", "tell me a story about cats and a garden please", "water"]


def _dream_like():
    """A one-layer Qwen2 (biases, GQA 4:2) with Dream's shifted logits, float64."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = build_tiny_tokenizer()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      is_causal=False, use_cache=False, use_sliding_window=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = make_bidirectional(Qwen2ForCausalLM(cfg)).eval().double()
    spec = ModelSpec(family="dream", mask_id=tok.mask_token_id, eos_id=tok.eos_token_id, pad_id=tok.eos_token_id,
                     shift_logits=True, vocab_size=len(tok), max_positions=256)
    return model, tok, spec


@pytest.fixture(scope="module")
def dream64():
    return _dream_like()


def _admitted(tok, spec, params, prompts=PROMPTS):
    seqs = []
    for i, text in enumerate(prompts):
        seq = Sequence(f"r{i}", text, encode_prompt(tok, spec, text), params, spec.mask_id)
        seq.admit(torch.device("cpu"))
        seq.kv_slot = i
        assert seq.next_commit_count() > 0  # enters block 0
        seqs.append(seq)
    return seqs


def _candidates(seqs, spec):
    """The runner's packing: padded canvases, candidate (seq, pos) pairs left of each block end."""
    from torch.nn.utils.rnn import pad_sequence

    from a2d_guard import ops

    ids = pad_sequence([s.canvas for s in seqs], batch_first=True, padding_value=spec.pad_id)  # [B, L]
    lengths = torch.tensor([s.length for s in seqs])
    positions = torch.arange(ids.shape[1])[None, :]
    valid = positions < lengths[:, None]
    ends = torch.tensor([s.block_end for s in seqs])
    masked = (ids == spec.mask_id) & valid & (positions < ends[:, None])
    seq_idx, pos_idx = ops.candidate_index(masked)
    attention_mask = None if len(set(lengths.tolist())) == 1 else valid.long()
    return ids, attention_mask, seq_idx, pos_idx


def _logits_both_ways(loaded, seqs, mode):
    model, _, spec = loaded
    exact = ModelRunner(model, spec)
    fast = ModelRunner(model, spec, cache=mode, max_num_seqs=len(seqs))
    fast.kv_pool.reserve(max(s.length for s in seqs))
    ids, attention_mask, seq_idx, pos_idx = _candidates(seqs, spec)
    want = exact.row_logits(ids, attention_mask, seq_idx, pos_idx)  # [M, V]
    hidden, _ = fast.block_cache.hidden_rows(seqs, ids, seq_idx, pos_idx)
    return want, fast.head(hidden), fast, (ids, seq_idx, pos_idx)


@pytest.mark.parametrize("mode", ["dual", "prefix"])
@pytest.mark.parametrize("family", ["tiny", "dream"])
@pytest.mark.parametrize("ragged", [True, False])
def test_block_first_step_equals_the_uncached_forward_bit_for_bit(tiny64, dream64, mode, family, ragged):
    loaded = tiny64 if family == "tiny" else dream64
    prompts = PROMPTS if ragged else ["how do i cook rice", "how do i cook fish"]
    seqs = _admitted(loaded[1], loaded[2], SamplingParams(gen_length=24, steps=6, block_length=8), prompts)
    want, got, _, _ = _logits_both_ways(loaded, seqs, mode)
    assert want.dtype == torch.float64 and torch.equal(got, want)


@pytest.mark.parametrize("mode", ["dual", "prefix"])
@pytest.mark.parametrize("family", ["tiny", "dream"])
def test_a_window_step_over_a_fresh_cache_equals_the_full_forward(tiny64, dream64, mode, family):
    """Same canvas, cache just written: the window rows see exactly the keys the full forward saw."""
    loaded = tiny64 if family == "tiny" else dream64
    seqs = _admitted(loaded[1], loaded[2], SamplingParams(gen_length=24, steps=6, block_length=8))
    want, _, fast, (ids, seq_idx, pos_idx) = _logits_both_ways(loaded, seqs, mode)
    fast.block_cache.after_step(seqs, [s.prompt_length for s in seqs])  # leftmost mask = first answer slot
    assert all(s.kv_block == s.block for s in seqs)
    hidden, spent = fast.block_cache.hidden_rows(seqs, ids, seq_idx, pos_idx)
    diff = (fast.head(hidden) - want).abs().max().item()
    print(f"{family}/{mode}: window vs full forward, max |logit diff| = {diff:.3e}")
    assert diff <= 1e-12
    widths = [s.kv_window[1] - s.kv_window[0] for s in seqs]
    assert spent == len(seqs) * max(widths)  # the window forward ran, not the full one
    shift = loaded[2].shift_logits
    assert [s.kv_window[0] for s in seqs] == [s.prompt_length - shift for s in seqs]


def _run_steps(llm, prompt, params, n):
    """Logits are not exposed; compare canvases after ``n`` engine steps instead."""
    engine = llm.engine
    engine.add_request("x", llm.encode(prompt), params)
    for _ in range(n):
        engine.step()
    return engine._known["x"].canvas.clone()


def test_later_steps_reuse_stale_keys_and_report_the_difference(tiny64):
    """A step after the block's first reads K/V computed before the commit: logits move a little.

    The cached logits are compared with the uncached forward of the same canvas, and the
    difference is printed (the figure issue 13 asks for); they must differ (else nothing is
    cached) and stay small on this model.
    """
    model, tok, spec = tiny64
    params = SamplingParams(gen_length=16, steps=8, block_length=8, eos_threshold=1.0)
    for mode in ("dual", "prefix"):
        seqs = _admitted(tok, spec, params, PROMPTS[:2])
        exact = ModelRunner(model, spec)
        fast = ModelRunner(model, spec, cache=mode, max_num_seqs=2)
        fast.kv_pool.reserve(max(s.length for s in seqs))
        diffs = []
        for _ in range(3):
            ids, attention_mask, seq_idx, pos_idx = _candidates(seqs, spec)
            want = exact.row_logits(ids, attention_mask, seq_idx, pos_idx)
            got = fast.head(fast.block_cache.hidden_rows(seqs, ids, seq_idx, pos_idx)[0])
            diffs.append((got - want).abs().max().item())
            outcomes = fast.execute(seqs, [s.next_commit_count() for s in seqs])  # commits 2 per sequence
            for s, outcome in zip(seqs, outcomes, strict=True):
                s.canvas = outcome.canvas  # what the engine applies
                s.step_in_block += 1
        print(f"{mode}: max |cached - uncached logit| at steps 0, 1, 2 of block 0: {diffs}")
        assert diffs[0] == 0.0
        assert all(0.0 < d < 1.0 for d in diffs[1:])


def test_token_forwards_match_the_windows_worked_out_by_hand(tiny64):
    """One request, prompt P, gen 24, block 8, 3 steps per block (no prompt masks):
    none = 9 steps x L; dual = per block L + 2 x 8; prefix = per block L + 2 x (L - block start)."""
    model, tok, spec = tiny64
    params = SamplingParams(gen_length=24, steps=9, block_length=8, eos_threshold=1.0)
    counts = {}
    for mode in ("none", "dual", "prefix"):
        llm = LLM.from_loaded(model, tok, spec, cache=mode)
        out = llm.generate(["how do i cook rice"], params)[0].outputs[0]
        assert out.steps == 9
        counts[mode] = llm.engine.token_forwards
    p = len(encode_prompt(tok, spec, "how do i cook rice"))
    length = p + 24
    assert counts["none"] == 9 * length
    assert counts["dual"] == 3 * (length + 2 * 8)
    assert counts["prefix"] == sum(length + 2 * (length - (p + 8 * b)) for b in range(3))


def test_prompt_masks_widen_the_first_blocks_window(tiny64):
    """DIJA prompts: masks inside the prompt are block 0 candidates, so block 0's window starts there."""
    model, tok, spec = tiny64
    ids = encode_prompt(tok, spec, "how do i <mask:2> rice")
    first_mask = ids.index(spec.mask_id)
    llm = LLM.from_loaded(model, tok, spec, cache="dual")
    engine = llm.engine
    engine.add_request("x", ids, SamplingParams(gen_length=16, steps=8, block_length=8, eos_threshold=1.0))
    engine.step()
    seq = engine._known["x"]
    assert seq.kv_window == (first_mask, len(ids) + 8)


def test_pool_slots_follow_admission_eviction_and_abort(tiny64):
    model, tok, spec = tiny64
    llm = LLM.from_loaded(model, tok, spec, max_num_seqs=2, cache="dual")
    engine, pool = llm.engine, llm.engine.runner.kv_pool
    refuse = SamplingParams(gen_length=16, steps=8, block_length=8, logit_bias={spec.eos_id: 30.0})
    plain = SamplingParams(gen_length=16, steps=8, block_length=8, eos_threshold=1.0)
    for i in range(4):
        engine.add_request(f"r{i}", llm.encode(PROMPTS[i % 3]), refuse if i % 2 else plain)
    engine.add_request("gone", llm.encode("water"), plain)
    first = engine.step()  # r0 and r1 admitted; r1 refused at step 0 and evicted
    assert [o.request_id for o in first] == ["r1"]
    assert pool.num_free == 1 and [s.kv_slot for s in engine.scheduler.running] == [0]
    engine.step()  # r2 takes r1's slot
    assert pool.num_free == 0 and {s.kv_slot for s in engine.scheduler.running} == {0, 1}
    assert engine.abort("r0")
    done = {}
    while engine.has_unfinished_requests():
        assert pool.num_free + len(engine.scheduler.running) == 2
        if "gone" in engine._known and engine._known["gone"].kv_slot is not None:
            assert engine.abort("gone")
        for out in engine.step():
            done[out.request_id] = out.outputs[0].finish_reason
    assert pool.num_free == 2
    assert done == {"r0": "abort", "r2": "length", "r3": "content_filter", "gone": "abort"}


def test_growing_the_pool_keeps_what_running_slots_hold(tiny64):
    """Storage grows when a longer canvas is admitted (``KVPool.reserve``), while other sequences are
    in mid-block and read their slot's cached K/V: growing must carry every slot's rows over.
    Checked on the pool itself (rows outside the running sequence's window are bit for bit what its
    block's first step wrote) and on the output (the same as that request decoded alone)."""
    model, tok, spec = tiny64
    short = SamplingParams(gen_length=16, steps=8, block_length=8, eos_threshold=1.0)
    longer = SamplingParams(gen_length=64, steps=8, block_length=32, eos_threshold=1.0)
    alone = LLM.from_loaded(model, tok, spec, max_num_seqs=1, cache="dual").generate(["water"], short)[0].outputs[0]

    llm = LLM.from_loaded(model, tok, spec, max_num_seqs=2, cache="dual")
    engine, pool = llm.engine, llm.engine.runner.kv_pool
    engine.add_request("a", llm.encode("water"), short)
    engine.step()  # block 0's first step: a's whole canvas goes to its slot
    a = engine._known["a"]
    slot, (start, end), capacity = a.kv_slot, a.kv_window, pool.capacity
    outside = [i for i in range(a.length) if not start <= i < end]  # rows the window steps only read
    held = pool.k[:, slot, outside].clone(), pool.v[:, slot, outside].clone()
    engine.add_request("b", llm.encode(PROMPTS[1]), longer)
    done = {out.request_id: out.outputs[0] for out in engine.step()}  # b admitted: the pool grows; a reads it
    assert pool.capacity > capacity and a.kv_block == a.block  # a took a window step over the grown pool
    kept = torch.equal(pool.k[:, slot, outside], held[0]), torch.equal(pool.v[:, slot, outside], held[1])
    assert kept == (True, True), f"growing the pool lost running slot rows (keys, values kept: {kept})"
    while engine.has_unfinished_requests():
        done.update({out.request_id: out.outputs[0] for out in engine.step()})
    assert (done["a"].token_ids, done["a"].finish_reason, done["a"].steps) == (
        alone.token_ids, alone.finish_reason, alone.steps)


@pytest.mark.parametrize("protocol", ["ours", "llada", "a2d"])
def test_the_monitor_rejects_at_the_same_step_as_exact_mode(tiny64, protocol):
    """p(EOS) is read at the leftmost mask on the cached logits, under every decode protocol
    (a2d: one span over the prompt's masks; llada: prompt masks stay candidates in every block)."""
    model, tok, spec = tiny64
    prompts = [p + " <mask:3> now" for p in PROMPTS] * 2
    params = [SamplingParams(gen_length=16, steps=8, block_length=8, seed=i, protocol=protocol,
                             logit_bias={spec.eos_id: [30.0, 4.0, 0.0][i % 3]}) for i in range(len(prompts))]
    got = {}
    for mode in ("none", "dual", "prefix"):
        outs = LLM.from_loaded(model, tok, spec, max_num_seqs=4, cache=mode).generate(prompts, params)
        got[mode] = [(o.outputs[0].finish_reason, o.outputs[0].reject_step) for o in outs]
    assert got["none"][0] == ("content_filter", 0)
    assert got["dual"] == got["none"] and got["prefix"] == got["none"]


@pytest.mark.parametrize("mode", ["dual", "prefix"])
def test_output_does_not_depend_on_the_batch_or_its_phases(tiny64, mode):
    """Requests admitted at different steps share steps at different block phases (two forwards);
    each output equals that request decoded alone."""
    model, tok, spec = tiny64
    params = [SamplingParams(gen_length=g, steps=s, block_length=b, temperature=t, seed=i, eos_threshold=1.0,
                             parallel_threshold=pt)
              for i, (g, s, b, t, pt) in enumerate([(24, 12, 8, 0.0, None), (16, 16, 4, 0.7, None),
                                                     (32, 8, 16, 0.0, 0.01), (8, 8, 8, 1.0, None)])]
    prompts = ["how do i <mask:2> rice", PROMPTS[1], PROMPTS[2], PROMPTS[0]]
    alone = [LLM.from_loaded(model, tok, spec, max_num_seqs=1, cache=mode).generate([p], [sp])[0].outputs[0]
             for p, sp in zip(prompts, params, strict=True)]
    llm = LLM.from_loaded(model, tok, spec, max_num_seqs=2, cache=mode)  # 2 slots: later ones join mid-run
    together = [o.outputs[0] for o in llm.generate(prompts, params)]
    assert [(o.token_ids, o.finish_reason, o.steps) for o in together] == \
        [(o.token_ids, o.finish_reason, o.steps) for o in alone]


def test_cache_none_is_exact_mode(tiny64):
    model, tok, spec = tiny64
    params = SamplingParams(gen_length=16, steps=8, block_length=8, temperature=0.5, seed=3)
    a = LLM.from_loaded(model, tok, spec).generate(PROMPTS, params)
    b = LLM.from_loaded(model, tok, spec, cache="none").generate(PROMPTS, params)
    assert [o.outputs[0].token_ids for o in a] == [o.outputs[0].token_ids for o in b]
    assert LLM.from_loaded(model, tok, spec).engine.runner.kv_pool is None


def test_bad_cache_settings_are_named(tiny64, scripted):
    model, tok, spec = tiny64
    with pytest.raises(A2DGuardError, match="unknown cache mode 'fast'.*none, prefix, dual"):
        LLMEngine(model, tok, spec, cache="fast")
    with pytest.raises(A2DGuardError, match="cache='dual' needs a model with a separate LM head"):
        ModelRunner(scripted(lambda row: torch.zeros(row.shape[0], 8), 8), spec, cache="dual")
    with pytest.raises(A2DGuardError, match="Llama/Qwen2-shaped model .*lacks embed_tokens, layers, norm, "
                                            "rotary_emb. Use cache='none'"):
        check_cacheable(torch.nn.Linear(2, 2))


def test_a_batched_step_that_raises_once_is_retried_per_sequence_and_loses_nothing(tiny64, monkeypatch):
    """An exception inside a batched step (e.g. an out-of-memory) is not the requests' fault:
    each sequence is stepped again on its own, and the answers equal a clean run's."""
    model, tok, spec = tiny64
    llm = LLM.from_loaded(model, tok, spec, max_num_seqs=2, cache="dual")
    params = SamplingParams(gen_length=16, steps=8, block_length=8, eos_threshold=1.0)
    clean = llm.generate(PROMPTS[:2], params)
    real = llm.engine.runner.execute

    def fail_once(*args):
        monkeypatch.setattr(llm.engine.runner, "execute", real)
        raise MemoryError("out of memory")

    monkeypatch.setattr(llm.engine.runner, "execute", fail_once)
    outs = llm.generate(PROMPTS[:2], params)
    assert [o.outputs[0].token_ids for o in outs] == [o.outputs[0].token_ids for o in clean]
    assert [o.outputs[0].finish_reason for o in outs] == [o.outputs[0].finish_reason for o in clean]


def test_a_step_that_always_raises_fails_the_calls_requests_and_frees_their_slots(tiny64, monkeypatch):
    """A step that keeps raising fails its requests (finish_reason "error", the exception named)
    and frees every K/V slot: the next call runs only its own request."""
    model, tok, spec = tiny64
    llm = LLM.from_loaded(model, tok, spec, max_num_seqs=2, cache="dual")
    params = SamplingParams(gen_length=16, steps=8, block_length=8, eos_threshold=1.0)
    real = llm.engine.runner.execute

    def always(*args):
        raise MemoryError("out of memory")

    monkeypatch.setattr(llm.engine.runner, "execute", always)
    outs = llm.generate(PROMPTS[:2], params)
    assert [o.outputs[0].finish_reason for o in outs] == ["error", "error"]
    assert all(o.outputs[0].error == "internal error: MemoryError: out of memory" for o in outs)
    assert llm.engine.num_running == 0 and not llm.engine.has_unfinished_requests()
    assert llm.engine.runner.kv_pool.num_free == 2
    monkeypatch.setattr(llm.engine.runner, "execute", real)
    outs = llm.generate(["water"], params)
    assert [o.prompt for o in outs] == ["water"] and outs[0].outputs[0].finish_reason != "error"
