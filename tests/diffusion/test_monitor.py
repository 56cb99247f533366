import torch

from a2d_guard.diffusion.monitor import first_visible_end, leftmost_masked, should_reject

M, EOS, EOT = 4, 2, 3
END = (EOS, EOT)
P = 5  # prompt length in these canvases


def _canvas(response):
    prompt = [1, 10, 11, 12, 13]
    canvas = torch.tensor([prompt + response])
    generated = torch.tensor([[False] * P + [True] * len(response)])
    return canvas, generated


def _reject(canvas, gen, p, tau=0.9):
    j = leftmost_masked(canvas, M)
    return bool(should_reject(canvas, gen, j, torch.tensor([p]), M, END, tau)[0]), int(j[0])


def test_refuses_at_the_first_response_position():
    assert _reject(*_canvas([M, M, M, M]), 0.95) == (True, P)


def test_refuses_after_only_eos_was_generated():
    assert _reject(*_canvas([EOS, M, M, M]), 0.95)[0]


def test_refuses_before_committed_content():
    assert _reject(*_canvas([20, M, M, 21]), 0.95) == (True, P + 1)


def test_a_natural_end_is_not_a_rejection():
    assert not _reject(*_canvas([20, 21, M, M]), 0.99)[0]


def test_threshold_is_strict_and_one_turns_it_off():
    assert not _reject(*_canvas([M, M]), 0.9)[0]
    assert not _reject(*_canvas([M, M]), 1.0, tau=1.0)[0]


def test_prefilled_opening_does_not_count_as_generated_content():
    canvas = torch.tensor([[1, 10, 30, 31, M, M]])  # 30, 31: prefill (part of the prompt)
    gen = torch.tensor([[False, False, False, False, True, True]])
    assert _reject(canvas, gen, 0.95) == (True, 4)


def test_batched_rows_are_independent():
    a, ga = _canvas([M, M, M, M])
    b, gb = _canvas([20, 21, M, M])
    canvas, gen = torch.cat([a, b]), torch.cat([ga, gb])
    j = leftmost_masked(canvas, M)
    assert j.tolist() == [P, P + 2]
    out = should_reject(canvas, gen, j, torch.tensor([0.95, 0.95]), M, END, torch.tensor([0.9, 0.9]))
    assert out.tolist() == [True, False]


def test_early_exit_needs_an_end_token_with_no_mask_to_its_left():
    rows = [[20, EOS, M, M], [M, EOS, 20, M], [20, 21, EOT, M], [20, 21, 22, 23]]
    canvas = torch.cat([_canvas(r)[0] for r in rows])
    gen = torch.cat([_canvas(r)[1] for r in rows])
    assert first_visible_end(canvas, gen, M, END).tolist() == [P + 1, -1, P + 2, -1]


def test_a_full_canvas_with_an_end_token_is_a_stop():
    """No mask left at all (the last step committed the EOS): still an early exit, not "length"."""
    rows = [[20, EOS, 21, 22], [20, 21, 22, EOT], [EOS, EOS, EOS, EOS]]
    canvas = torch.cat([_canvas(r)[0] for r in rows])
    gen = torch.cat([_canvas(r)[1] for r in rows])
    assert leftmost_masked(canvas, M).tolist() == [-1, -1, -1]
    assert first_visible_end(canvas, gen, M, END).tolist() == [P + 1, P + 3, P]


def test_an_end_token_outside_the_response_ends_nothing():
    """An EOS infilled into a prompt mask (DIJA) is not a response end: only ``response`` counts."""
    canvas = torch.tensor([[1, EOS, 11, 12, 13, 20, M, M]])
    generated = torch.tensor([[False, True, False, False, False, True, True, True]])
    response = generated & (torch.arange(8) >= P)
    assert first_visible_end(canvas, response, M, END).tolist() == [-1]
