"""NeMo Guardrails drives the checks: its own `hf_classifier` rail (engine `vllm`) pointed at a live
`a2d-guard serve`, and our actions through `LLMRails` with the shipped rails folder and NeMo's
fake LLM. A flagged prompt is refused, a benign one answered; a flagged answer is refused."""

from __future__ import annotations

import pytest
from nemoguardrails import LLMRails, RailsConfig
from nemoguardrails.testing.fake_model import FakeLLMModel

from a2d_guard.integrations import nemo

from .conftest import BENIGN, FLAGGED

REFUSAL = "I'm sorry, I can't respond to that."


def _hf_classifier_config(url: str) -> RailsConfig:
    return RailsConfig.from_content(yaml_content=f"""
models: []
rails:
  config:
    hf_classifier:
      a2d:
        engine: vllm
        base_url: {url}
        model: tiny
        blocked_labels: [unsafe]
  input:
    flows:
      - hf classifier check input $classifier=a2d
  output:
    flows:
      - hf classifier check output $classifier=a2d
""")


@pytest.mark.parametrize("prompt, answer, expected", [
    (FLAGGED, "fine answer", REFUSAL),
    (BENIGN, "fine answer", "fine answer"),
    (BENIGN, "all about canada", REFUSAL),  # the output rail: the answer is classified too
])
def test_nemo_hf_classifier_rail_against_a_live_server(guard_server, prompt, answer, expected):
    url, _ = guard_server
    rails = LLMRails(_hf_classifier_config(url), llm=FakeLLMModel(responses=[answer] * 4))
    out = rails.generate(messages=[{"role": "user", "content": prompt}])
    assert out["content"] == expected


@pytest.fixture()
def shared_guard(guard):
    nemo.set_guard(guard)
    try:
        yield guard
    finally:
        nemo.set_guard(None)


@pytest.mark.parametrize("prompt, answer, expected", [
    (FLAGGED, "fine answer", REFUSAL),
    (BENIGN, "fine answer", "fine answer"),
    (BENIGN, "sure, canada is big", REFUSAL),  # checked as a response to the prompt (probe B)
])
def test_the_shipped_rails_folder_with_our_actions(shared_guard, prompt, answer, expected):
    config = RailsConfig.from_path(str(nemo.rails_config_path()))
    llm = FakeLLMModel(responses=[answer] * 4)
    out = LLMRails(config, llm=llm).generate(messages=[{"role": "user", "content": prompt}])
    assert out["content"] == expected
    assert llm.inference_count == (0 if prompt == FLAGGED else 1)  # a refused prompt never reaches the LLM


def test_the_rails_folder_ships_its_files():
    folder = nemo.rails_config_path()
    assert {p.name for p in folder.iterdir() if p.is_file()} >= {"config.yml", "rails.co", "actions.py"}
