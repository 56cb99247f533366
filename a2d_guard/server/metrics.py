"""Prometheus metrics, named as vLLM names its own under ``a2d_guard:``.

Each app gets its own ``CollectorRegistry`` so that two servers in one process (tests, or
an embedding application) never share or clash on counters.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from a2d_guard.engine.outputs import RequestOutput

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
_OCCUPANCY_BUCKETS = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)


class ServerMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.running = Gauge("a2d_guard:num_requests_running", "Requests in a running slot.", registry=r)
        self.waiting = Gauge("a2d_guard:num_requests_waiting", "Requests queued for a slot.", registry=r)
        self.finished = Counter("a2d_guard:request_success", "Finished requests by finish_reason.",
                                ["finished_reason"], registry=r)
        self.rejections = Counter("a2d_guard:request_rejections",
                                  "Requests rejected by the A2D EOS monitor (content_filter).", registry=r)
        self.overloaded = Counter("a2d_guard:request_overload_rejections",
                                  "Requests answered 429 because the queue was full.", registry=r)
        self.step_time = Histogram("a2d_guard:step_time_seconds", "Wall time of one engine step.",
                                   buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_occupancy = Histogram("a2d_guard:batch_occupancy",
                                         "Running sequences / max_num_seqs at each step.",
                                         buckets=_OCCUPANCY_BUCKETS, registry=r)
        self.time_to_first_token = Histogram("a2d_guard:time_to_first_token_seconds",
                                             "Arrival to the first visible (final) response token.",
                                             buckets=_LATENCY_BUCKETS, registry=r)
        self.e2e_latency = Histogram("a2d_guard:e2e_request_latency_seconds", "Arrival to finish.",
                                     buckets=_LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("a2d_guard:prompt_tokens", "Prompt tokens of finished requests.", registry=r)
        self.generation_tokens = Counter("a2d_guard:generation_tokens",
                                         "Visible response tokens of finished requests.", registry=r)

    def observe_step(self, seconds: float, num_running: int, max_num_seqs: int) -> None:
        self.step_time.observe(seconds)
        self.batch_occupancy.observe(num_running / max_num_seqs)

    def observe_finished(self, out: RequestOutput, seconds: float, reason: str | None = None) -> None:
        """``reason`` overrides the engine's (a stop-string cut is an engine abort but a ``stop``)."""
        completion = out.outputs[0]
        self.finished.labels(finished_reason=reason or completion.finish_reason).inc()
        if completion.rejected:
            self.rejections.inc()
        self.e2e_latency.observe(seconds)
        self.prompt_tokens.inc(len(out.prompt_token_ids))
        self.generation_tokens.inc(len(completion.token_ids))

    def render(self, num_running: int, num_waiting: int) -> bytes:
        self.running.set(num_running)
        self.waiting.set(num_waiting)
        return generate_latest(self.registry)


class _Labelled:
    """A collector of other registries' expositions, each sample labelled with its source."""

    def __init__(self, expositions: dict[str, str], label: str):
        self.expositions, self.label = expositions, label

    def collect(self):
        families: dict[str, Metric] = {}
        for source, text in sorted(self.expositions.items()):
            for family in text_string_to_metric_families(text):
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type,
                                                                 family.unit))
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, self.label: source}, sample.value,
                                      sample.timestamp, sample.exemplar)
        yield from families.values()


def merge_expositions(expositions: dict[str, str], label: str = "replica") -> bytes:
    """One Prometheus exposition of several servers' (``{source: text}``): every series once
    per source, told apart by ``label`` (``serve --replicas``: Prometheus then sums with
    ``sum by (...)``, as it does over vLLM's per-engine series)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Labelled(expositions, label))
    return generate_latest(registry)
