"""``a2d-guard train --help`` states the default of every option that has one (flags default
to "not given" so a --config file is only overridden on purpose; the help must still say
what a run uses)."""

import re

import pytest
from a2d_guard.cli.main import app
from typer.testing import CliRunner

from a2d_guard.training.config import TrainConfig

FLAGS = {"--model": "model", "--output": "output", "--epochs": "epochs", "--lr": "lr", "--batch-size": "batch_size",
         "--grad-accum": "grad_accum", "--max-length": "max_length", "--seed": "seed", "--save-every": "save_every"}


@pytest.fixture(scope="module")
def help_text():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", result.output))  # one line, box drawing gone


@pytest.mark.parametrize("flag", list(FLAGS))
def test_help_shows_the_default(help_text, flag):
    default = getattr(TrainConfig(), FLAGS[flag])
    entry = help_text[help_text.index(flag):]
    shown = re.search(r"\(default ([^)]+)\)", entry)  # the first one after the flag must be its own
    assert shown is not None, entry
    assert type(default)(shown[1]) == default, (flag, shown[0])
