"""`serve --replicas 2` on Ray Serve (a local 2-CPU cluster on 127.0.0.1): both replicas answer,
through the same routes as the single-process server, with answers equal to it."""

from __future__ import annotations

import socket

import httpx
import pytest

from a2d_guard.config import SamplingParams
from a2d_guard.engine.llm import LLM

ray = pytest.importorskip("ray")  # the `ray` extra (in `dev`)


@pytest.fixture(scope="module")
def replicas():
    from ray import serve

    from a2d_guard.server.ray_app import APP_NAME, ScaleConfig, build_deployment
    from a2d_guard.server.settings import ServerConfig

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        config = ServerConfig(port=port, batch=4, gen_length=16, block_length=8)
        serve.run(build_deployment(config, ScaleConfig(replicas=2, replica_cpus=0.5), cuda=False), name=APP_NAME,
                  route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_answer_as_the_single_server_does(replicas):
    from openai import OpenAI

    url = replicas
    seen = {httpx.get(url + "/health", timeout=30).json().get("replica") for _ in range(40)}
    assert len(seen) == 2 and None not in seen  # both replicas serve

    llm = LLM("tiny", max_num_seqs=1)
    prompts = ["hello there", "tell me a story", "what is two plus two"]
    want = [llm.generate([llm.encode(p)], SamplingParams(gen_length=16, steps=16, block_length=8, seed=i))[0]
            .outputs[0].text for i, p in enumerate(prompts)]
    with OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120) as client:
        got = [client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": p}], seed=i)
               .choices[0].message.content for i, p in enumerate(prompts)]
        assert got == want
        chunks = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompts[0]}],
                                                seed=0, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want[0]
        rejected = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                                  logit_bias={"2": 100}, extra_body={"refusal_text": "no"})
        assert rejected.choices[0].finish_reason == "content_filter" and rejected.choices[0].message.content == "no"
        assert client.moderations.create(input="hello there", model="tiny").results[0].flagged is False
    r = httpx.post(url + "/v1/completions", json={"prompt": "hi", "seed": 2**63}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["param"] == "seed"  # the same bounds on every replica


def test_scale_flags_are_checked():
    from a2d_guard.errors import A2DGuardError
    from a2d_guard.server.ray_app import ScaleConfig, deployment_options
    from a2d_guard.server.settings import ServerConfig

    for kwargs in ({"replicas": 0}, {"replicas": 2, "max_replicas": 3}, {"min_replicas": 1},
                   {"min_replicas": 3, "max_replicas": 2}):
        with pytest.raises(A2DGuardError):
            ScaleConfig(**kwargs)
    options = deployment_options(ServerConfig(batch=8, max_waiting=24), ScaleConfig(min_replicas=1, max_replicas=4),
                                 cuda=True)
    assert options["max_ongoing_requests"] == 32 and options["ray_actor_options"] == {"num_gpus": 1}
    assert options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4.0}
