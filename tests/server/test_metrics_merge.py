"""``merge_expositions``: several servers' Prometheus expositions as one, every series once per
source with a ``replica`` label, so sums over replicas are the cluster's (``serve --replicas``)."""

from prometheus_client.parser import text_string_to_metric_families

from a2d_guard.server.metrics import ServerMetrics, merge_expositions


def _samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples if not s.name.endswith("_created")}


def test_each_replica_series_is_kept_and_labelled():
    a, b = ServerMetrics(), ServerMetrics()
    a.finished.labels(finished_reason="stop").inc(3)
    b.finished.labels(finished_reason="stop").inc(2)
    b.finished.labels(finished_reason="content_filter").inc()
    b.rejections.inc()
    a.step_time.observe(0.02)
    texts = {"r1": a.render(1, 0).decode(), "r2": b.render(0, 2).decode()}
    merged = merge_expositions(texts).decode()
    got = _samples(merged)
    for source, text in texts.items():  # every sample of every source, with its label added
        for (name, labels), value in _samples(text).items():
            assert got[(name, tuple(sorted({**dict(labels), "replica": source}.items())))] == value
    assert len(got) == sum(len(_samples(t)) for t in texts.values())
    success = {k: v for k, v in got.items() if k[0] == "a2d_guard:request_success_total"}
    assert sum(success.values()) == 6
    assert merged.count("# TYPE a2d_guard:request_success_total counter") == 1  # one family, not one per replica


def test_one_source_is_its_own_numbers_labelled():
    m = ServerMetrics()
    m.overloaded.inc(4)
    got = _samples(merge_expositions({"only": m.render(0, 0).decode()}).decode())
    assert got[("a2d_guard:request_overload_rejections_total", (("replica", "only"),))] == 4
