import pytest
import torch

from a2d_guard.diffusion.forward_process import a2d_targets, forward_mask, mask_ratio
from a2d_guard.diffusion.schedule import block_end, num_transfer_tokens


@pytest.mark.parametrize("n_mask, steps", [(32, 8), (10, 4), (3, 8), (0, 4), (7, 7), (33, 32)])
def test_steps_commit_exactly_the_masks_first_steps_take_one_more(n_mask, steps):
    ks = num_transfer_tokens(n_mask, steps)
    assert len(ks) == steps and sum(ks) == n_mask
    base, extra = divmod(n_mask, steps)
    assert ks == [base + 1] * extra + [base] * (steps - extra)


@pytest.mark.parametrize("prompt_length, block, block_length, end", [(5, 0, 8, 13), (5, 3, 8, 37), (0, 0, 4, 4),
                                                                    (12, 1, 32, 76)])
def test_a_block_ends_after_the_prompt_and_whole_blocks(prompt_length, block, block_length, end):
    """Exclusive end: block b's candidates are the masks left of prompt + (b + 1) * block_length."""
    assert block_end(prompt_length, block, block_length) == end


def test_forward_process_masks_only_the_response_at_ratio_lambda():
    gen = torch.Generator().manual_seed(0)
    ids = torch.arange(4000).reshape(4, 1000) % 50 + 10
    prompt_lengths = torch.tensor([0, 100, 500, 999])
    t = torch.tensor([0.0, 0.25, 0.5, 1.0 - 1e-9])
    noisy, masked, lam = forward_mask(ids, prompt_lengths, mask_id=3, generator=gen, t=t)
    torch.testing.assert_close(lam, (1 - 1e-3) * t + 1e-3)  # DESIGN §4: ε = 1e-3, pinned as a literal
    for i, p in enumerate(prompt_lengths.tolist()):
        assert not masked[i, :p].any()  # the prompt is never masked
        assert torch.equal(noisy[i][masked[i]], torch.full((int(masked[i].sum()),), 3))
        assert torch.equal(noisy[i][~masked[i]], ids[i][~masked[i]])
    rate = masked[2, 500:].float().mean().item()
    assert abs(rate - float(mask_ratio(torch.tensor(0.5)))) < 0.07
    assert masked[3, 999:].all()


def test_mask_ratio_is_epsilon_at_t_zero_and_one_at_t_one():
    lam = mask_ratio(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(lam, torch.tensor([1e-3, 0.5005, 1.0], dtype=torch.float64), rtol=0, atol=1e-15)


def test_a2d_targets_are_eos_for_harmful_rows_and_tokens_otherwise():
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]])
    out = a2d_targets(ids, torch.tensor([True, False]), eos_id=2)
    assert out.tolist() == [[2, 2, 2], [8, 9, 10]]
