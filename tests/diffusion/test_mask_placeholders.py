"""``<mask:N>`` placeholders: N >= 1 digits only; anything else written as a placeholder is an
error naming it (it used to become zero masks or silently stay literal text)."""

import re

import pytest

from a2d_guard.diffusion.prompts import encode_prompt
from a2d_guard.errors import A2DGuardError


@pytest.mark.parametrize("bad", ["<mask:0>", "<mask:-3>", "<mask:x>", "<mask:>", "<mask: 3>", "<mask:3 >",
                                 "<mask:1.5>", "<mask:00>", "<mask:+2>"])
def test_malformed_placeholders_are_refused(tiny32, bad):
    _, tok, spec = tiny32
    message = rf"prompt placeholder '{re.escape(bad)}': <mask:N> needs a whole number N >= 1"
    with pytest.raises(A2DGuardError, match=message):
        encode_prompt(tok, spec, f"fill {bad} here")
    with pytest.raises(A2DGuardError, match="needs a whole number"):  # in a prefill too
        encode_prompt(tok, spec, "hi", prefill=f"sure {bad}")


def test_more_masks_than_positions_is_refused(tiny32):
    _, tok, spec = tiny32
    with pytest.raises(A2DGuardError, match=rf"more masks than the model's {spec.max_positions} positions"):
        encode_prompt(tok, spec, f"a <mask:{spec.max_positions + 1}> b")
    with pytest.raises(A2DGuardError, match="more masks than"):
        encode_prompt(tok, spec, "a <mask:" + "9" * 5000 + "> b")


def test_valid_placeholders_and_plain_text(tiny32):
    _, tok, spec = tiny32
    ids = encode_prompt(tok, spec, "fill <mask:3> and <mask:01> here", chat=False)
    assert ids.count(spec.mask_id) == 4
    for literal in ["<mask:3 no closing", "<mask>", "<MASK:3>", "a <mask:\n3> b"]:
        assert spec.mask_id not in encode_prompt(tok, spec, literal, chat=False), literal


def test_generate_cli_refuses_mask_zero():
    from a2d_guard.cli.main import app
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["generate", "--model", "tiny", "--prompt", "fill <mask:-3> here"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines() == [
        "error: prompt placeholder '<mask:-3>': <mask:N> needs a whole number N >= 1 (the number of mask "
        "tokens to insert), e.g. <mask:4>; fix or remove it"]
