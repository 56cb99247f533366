"""Two CPU processes under torchrun (gloo DDP) train the same adapter as one process with
twice the batch: rows and masks are functions of the stream position, gradients are averaged."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from a2d_guard.training import TrainConfig, train


@pytest.mark.slow
def test_two_processes_match_one(data_file, tmp_path):
    common = dict(data=data_file, max_length=32, lr=1e-3, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                  max_steps=3, save_every=0, progress=False)
    (tmp_path / "ddp.yaml").write_text("".join(f"{k}: {v}\n" for k, v in common.items()))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "a2d_guard.cli.main", "train", "--config", str(tmp_path / "ddp.yaml"),
           "--batch-size", "2", "--output", str(tmp_path / "ddp"), "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("done: 3 steps") == 1  # rank 0 alone reports and writes

    train(TrainConfig(**common, batch_size=4, output=str(tmp_path / "one"), device="cpu"), log=lambda *_: None)
    two = load_file(str(tmp_path / "ddp" / "adapter" / "adapter_model.safetensors"))
    one = load_file(str(tmp_path / "one" / "adapter" / "adapter_model.safetensors"))
    assert two.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6)
