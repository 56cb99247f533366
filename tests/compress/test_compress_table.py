"""The readable ``compress`` report never cuts a layer name or a number, even at 80 columns."""

import pytest
from a2d_guard.cli.compress import print_report

LAYERS = [f"model.layers.{block}.{leaf}" for block in (0, 31) for leaf in
          ("self_attn.q_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj")]


def _report(names):
    layers = [{"name": n, "out_features": 14336, "in_features": 4096, "group_size": 128, "act_err": 0.0957,
               "init_err": 0.9999, "quant_scale": 3.14e-05, "bpw": 2.27, "rounds": 10} for n in names]
    return {"model": "GSAI-ML/LLaDA-8B-Instruct", "output": "llada-q2", "bits": 2, "rank": 64, "init": "odlri",
            "layers": layers, "act_err": 0.0957, "quant_scale": 3.14e-05, "bpw": 2.27,
            "memory": {"before_bytes": 2**34, "after_bytes": 2**32, "ratio": 0.25, "file_bytes": 2**32},
            "md_loss": {"0.5": {"uncompressed": 2.0, "compressed": 2.1}}}


@pytest.mark.parametrize("names", [LAYERS, [n.removeprefix("model.layers.") for n in LAYERS]])
def test_names_and_numbers_are_whole_at_80_columns(names, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    print_report(_report(names))
    out = capsys.readouterr().out
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80, out
    for name in names:  # the prefix every name shares is said once, in the header
        assert name.removeprefix("model.layers.") in out, (name, out)
    assert ("model.layers." in out) == (names is LAYERS)
    for number in ("14336x4096", "0.0957", "0.9999", "3.14e-05", "2.27"):
        assert number in out, (number, out)
