"""`serve --replicas 2` on Ray Serve (a local 2-CPU cluster on 127.0.0.1, shared by the module):
both replicas answer, through the same routes as the single-process server, with answers equal
to it; a replica killed under load costs only the requests it held (each answered with an
OpenAI error, none lost or duplicated) and Ray replaces it; every replica full is a 429."""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from a2d_guard.config import SamplingParams
from a2d_guard.engine.llm import LLM

ray = pytest.importorskip("ray")  # the `ray` extra (in `dev`)


@pytest.fixture(scope="module")
def replicas():
    from ray import serve

    from a2d_guard.server import ray_proxy
    from a2d_guard.server.ray_app import APP_NAME, ScaleConfig, build_deployment
    from a2d_guard.server.settings import ServerConfig

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    saved = os.environ.get(ray_proxy.PROXY_CALLBACK_ENV)
    ray_proxy.install()  # before the cluster starts: its proxy reads it from the environment
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        config = ServerConfig(port=port, batch=4, max_waiting=4, gen_length=16, block_length=8)
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_deployment(config, ScaleConfig(replicas=2, replica_cpus=0.5), cuda=False), name=APP_NAME,
                  route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        if saved is None:
            os.environ.pop(ray_proxy.PROXY_CALLBACK_ENV, None)


@pytest.mark.slow
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


def _finished_by_replica(url: str) -> dict[str, float]:
    """``a2d_guard:request_success`` summed over finish reasons, per ``replica`` label, from one scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(url + "/metrics", timeout=30)
    assert r.status_code == 200, r.text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if sample.name == "a2d_guard:request_success_total":
                out[sample.labels["replica"]] = out.get(sample.labels["replica"], 0.0) + sample.value
    return out


@pytest.mark.slow
def test_metrics_on_any_replica_add_up_across_replicas(replicas):
    """The proxy sends a scrape to one replica; it answers for both, labelled, so the sum over
    replicas counts every request once (each replica publishes every METRICS_PUBLISH_S)."""
    from a2d_guard.server.ray_app import METRICS_PUBLISH_S

    url = replicas
    time.sleep(2 * METRICS_PUBLISH_S)  # what earlier tests did is published by both replicas
    before = [_finished_by_replica(url) for _ in range(6)]
    assert all(len(b) == 2 for b in before), before  # whichever replica answered, both are in it
    assert len({sum(b.values()) for b in before}) == 1, before
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda i: httpx.post(url + "/v1/completions", timeout=120, json={
            "prompt": f"count {i}", "max_tokens": 16, "seed": i}).status_code, range(8)))
    assert codes == [200] * 8
    time.sleep(2 * METRICS_PUBLISH_S)
    after = [_finished_by_replica(url) for _ in range(6)]
    assert {sum(a.values()) - sum(before[0].values()) for a in after} == {8.0}, (before[0], after)


LONG = {"max_tokens": 64, "extra_body": {"steps": 64, "block_length": 8}}  # a request that lasts a while


def _expected(prompts: list[str]) -> list[str]:
    llm = LLM("tiny", max_num_seqs=4)
    outs = llm.generate([llm.encode(p) for p in prompts],
                        [SamplingParams(gen_length=64, steps=64, block_length=8, seed=i) for i in range(len(prompts))])
    return [o.outputs[0].text for o in outs]


def _replica_actors() -> dict[str, str]:
    """unique replica id -> actor name, for the engine replicas alive now."""
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)]
    return {n.rsplit("#", 1)[1]: n for n in names if n.startswith("SERVE_REPLICA::a2d-guard#engine#")}


def _wait_for_replicas(url: str, count: int, not_these: set, timeout: float = 120.0) -> set:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = set()
        for _ in range(20):
            r = httpx.get(url + "/health", timeout=30)
            if r.status_code == 200:
                seen.add(r.json()["replica"])
        if len(seen) == count and not seen & not_these:
            return seen
        time.sleep(1.0)
    raise AssertionError(f"never saw {count} healthy replicas other than {not_these}")


@pytest.mark.slow
def test_a_replica_killed_under_load_costs_only_its_own_requests(replicas):
    from openai import APIError, OpenAI, RateLimitError

    url = replicas
    prompts = [f"story number {i}" for i in range(12)]  # > one replica's 8 (batch 4 + 4 waiting): both hold some
    want = _expected(prompts)
    started = threading.Semaphore(0)
    client = OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)

    def open_stream(i: int):
        """Ray's router may answer 429 before every place is free (a replica still admitting the
        last test's leftovers); a client retries that, as the ``Retry-After`` asks. Before the kill only."""
        for _ in range(60):
            try:
                return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompts[i]}],
                                                      seed=i, stream=True, **LONG)
            except RateLimitError:
                time.sleep(0.5)
        raise AssertionError(f"request {i} was refused with 429 for 30 s")

    def one(i: int) -> tuple[str, object]:
        try:
            stream = open_stream(i)
            text, finals = [], []
            for chunk in stream:
                if not text and not finals:
                    started.release()  # the replica is streaming this request
                    text.append("")
                for c in chunk.choices:
                    text.append(c.delta.content or "")
                    if c.finish_reason is not None:
                        finals.append(c.finish_reason)
            return "ok", ("".join(text), finals)
        except APIError as exc:
            started.release()
            return "error", exc

    with ThreadPoolExecutor(len(prompts)) as pool:
        futures = [pool.submit(one, i) for i in range(len(prompts))]
        for _ in prompts:
            assert started.acquire(timeout=120)
        victim, name = sorted(_replica_actors().items())[0]
        ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)
        health = [httpx.get(url + "/health", timeout=30) for _ in range(10)]  # while the others still decode
        results = [f.result() for f in futures]

    for r in health:  # /health answers for a live replica, or says (in OpenAI's shape) that none answered
        assert (r.status_code == 200 and r.json()["status"] == "ok" and r.json()["replica"] != victim) or \
            (r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"), r.text
    failed = [i for i, (kind, _) in enumerate(results) if kind == "error"]
    for i, (kind, value) in enumerate(results):
        if kind == "ok":  # finished: the single server's answer, exactly one final chunk
            text, finals = value
            assert text == want[i] and len(finals) == 1, (i, text, finals)
        else:  # held by the dead replica: an OpenAI error body, nothing else
            assert value.body["type"] == "service_unavailable" and "replica" in value.body["message"], value.body
    assert 1 <= len(failed) <= 8, failed  # the victim held some, at most its capacity; the other's all finished

    _wait_for_replicas(url, 2, {victim})  # Ray replaced it; /health never names the dead one
    assert victim not in _replica_actors()
    with OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120) as retry:  # the client's retry
        for i in failed:
            got = retry.chat.completions.create(model="tiny", messages=[{"role": "user", "content": prompts[i]}],
                                                seed=i, **LONG)
            assert got.choices[0].message.content == want[i]
    client.close()


@pytest.mark.slow
def test_every_replica_full_is_a_429_with_openai_body(replicas):
    url = replicas
    body = {"model": "tiny", "prompt": "count to ten", "max_tokens": 64, "steps": 64, "block_length": 8}

    def one(i: int) -> httpx.Response:
        return httpx.post(url + "/v1/completions", json={**body, "seed": i}, timeout=120)

    with ThreadPoolExecutor(40) as pool:  # 2 replicas x 8 + 4 in the router's queue hold 20
        answers = list(pool.map(one, range(40)))
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {200, 429} and codes.count(429) >= 1 and codes.count(200) >= 8, codes
    for r in answers:
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limit_exceeded" and r.headers["retry-after"] == "1"
        else:
            assert r.json()["choices"][0]["finish_reason"] in ("length", "stop")


def test_check_health_fails_once_the_engine_loop_is_dead():
    import asyncio

    from a2d_guard.server.ray_app import EngineReplica
    from a2d_guard.server.settings import ServerConfig

    replica = EngineReplica(ServerConfig(batch=1, gen_length=8, block_length=8))  # the class, outside Ray
    loop = replica.server_app.state.server.loop
    asyncio.run(replica.check_health())  # not started yet: not dead
    loop.start()
    asyncio.run(replica.check_health())
    loop.stop(10.0)  # the thread exits, with no error recorded
    with pytest.raises(RuntimeError, match="engine loop stopped"):
        asyncio.run(replica.check_health())


@pytest.mark.slow
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
