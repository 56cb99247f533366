"""``demo --out``: the demo writes only into a new, empty or earlier demo folder, never over a user's files."""

import pytest

from a2d_guard.demo.evaluate import EvalSettings
from a2d_guard.demo.runner import DemoPlan, run_demo
from a2d_guard.errors import A2DGuardError

MINI = DemoPlan(base_steps=2, adapter_steps=1, batch_size=8, max_length=48,
                eval=EvalSettings(gen_length=8, steps=2, block_length=8, max_prompts=1))


def test_demo_refuses_a_user_folder_and_names_its_files(tmp_path, user_project, snapshot):
    proj = user_project(tmp_path / "proj")
    before = snapshot(proj)
    with pytest.raises(A2DGuardError, match=r"refusing to write the demo into .*config\.yaml, notes\.txt, src/"):
        run_demo(proj, MINI, log=lambda *_: None)
    assert snapshot(proj) == before
