"""``a2d-guard serve --replicas N``: N engine replicas behind one OpenAI endpoint on Ray Serve.

Why each replica is a whole server app: every route (chat, completions, moderations,
``/classify``, models, health, metrics) is the same code as the single-process server,
built by ``build_app`` on the replica that owns the engine (``__serve_build_asgi_app__``),
so there is no second copy of the routes and no cross-process hop between a request and the
engine that decodes it. Ray Serve's HTTP proxy is the one endpoint: it spreads requests over
replicas, streams their answers, and queues at most ``max_ongoing_requests`` per replica
(``--batch`` + ``--max-waiting``, the single server's capacity, not Ray's default of 5).
``check_health`` fails when the replica's engine loop has stopped, so Ray replaces it.
``/metrics`` answers for every replica, each series labelled ``replica`` (``MetricsBoard``).

Ray is imported only here, and only ``serve --replicas``/``--min-replicas`` imports this
module. Each replica is pinned to one GPU on CUDA and to ``replica_cpus`` CPUs otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

from a2d_guard.errors import A2DGuardError
from a2d_guard.server.settings import ServerConfig

APP_NAME = "a2d-guard"
RAY_NAMESPACE = "a2d_guard"
METRICS_BOARD = "a2d-guard-metrics"
METRICS_PUBLISH_S = 1.0
METRICS_MAX_AGE_S = 10.0

log = logging.getLogger("a2d_guard.server")


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
    """How many replicas, and where Ray runs."""

    replicas: int | None = None  # fixed count; or autoscale between min and max
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_ongoing_requests: float | None = None  # per replica, for the autoscaler
    ray_address: str | None = None  # join this cluster; a local one otherwise
    replica_cpus: float = 1.0  # CPUs per replica on a CPU-only machine
    num_cpus: int | None = None  # CPUs of a local cluster (default: Ray's count)

    def __post_init__(self) -> None:
        if self.replicas is not None and (self.min_replicas is not None or self.max_replicas is not None):
            raise A2DGuardError("give --replicas or --min-replicas/--max-replicas, not both")
        if self.replicas is not None and self.replicas < 1:
            raise A2DGuardError(f"--replicas must be >= 1, got {self.replicas}")
        lo, hi = self.min_replicas, self.max_replicas
        if (lo is None) != (hi is None):
            raise A2DGuardError("autoscaling needs both --min-replicas and --max-replicas")
        if lo is not None and not 0 <= lo <= hi or hi is not None and hi < 1:
            raise A2DGuardError(f"need 0 <= --min-replicas <= --max-replicas and --max-replicas >= 1, got {lo}, {hi}")
        if self.target_ongoing_requests is not None and self.target_ongoing_requests <= 0:
            raise A2DGuardError("--target-ongoing-requests must be > 0")
        if self.replica_cpus <= 0:
            raise A2DGuardError("--replica-cpus must be > 0")

    @property
    def enabled(self) -> bool:
        return self.replicas is not None or self.max_replicas is not None


def deployment_options(config: ServerConfig, scale: ScaleConfig, cuda: bool) -> dict:
    """``serve.deployment`` options for the engine replicas."""
    actor = {"num_gpus": 1} if cuda else {"num_cpus": scale.replica_cpus}
    options = {"name": "engine", "ray_actor_options": actor,
               "max_ongoing_requests": config.batch + config.max_waiting,
               # the router's queue when every replica is full; beyond it: 429 (server/ray_proxy.py)
               "max_queued_requests": max(1, config.batch),
               "health_check_period_s": 2.0, "health_check_timeout_s": 30.0,
               "graceful_shutdown_timeout_s": config.shutdown_timeout}
    if scale.replicas is not None:
        options["num_replicas"] = scale.replicas
    else:
        target = scale.target_ongoing_requests or max(1.0, config.batch / 2)
        options["autoscaling_config"] = {"min_replicas": scale.min_replicas, "max_replicas": scale.max_replicas,
                                         "target_ongoing_requests": target}
    return options


class EngineReplica:
    """One replica: the model, its engine loop and the full server app (routes built on it)."""

    def __init__(self, config: ServerConfig):
        import os

        from a2d_guard.server.app import build_app
        from a2d_guard.server.run import load_llm

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.config = config
        self.server_app = build_app(load_llm(config), config)  # not `app`: the ingress wrapper owns that name
        state = self.server_app.state.server
        state.replica = _replica_id()  # /health names the replica that answered
        self.started = time.time()
        self._board = None
        if state.replica is not None:  # on Ray Serve (not the class alone, in a test)
            state.cluster_metrics = self._cluster_metrics
            threading.Thread(target=self._publish_metrics, name="a2d-metrics-publish", daemon=True).start()

    async def _cluster_metrics(self, own: bytes) -> bytes:
        """``/metrics`` on any replica: every live replica's series, labelled ``replica``."""
        from a2d_guard.server.metrics import merge_expositions

        replica, texts = self.server_app.state.server.replica, {}
        board = self._metrics_board()
        if board is not None:
            try:
                board.put.remote(replica, own.decode())
                texts = await board.recent.remote(METRICS_MAX_AGE_S)
            except Exception as exc:  # the board's actor is gone: this replica's own numbers, labelled
                log.warning("metrics board unreachable (%s); answering this replica's metrics only", exc)
                self._board = None
        return merge_expositions({**texts, replica: own.decode()})

    def _publish_metrics(self) -> None:
        state = self.server_app.state.server
        while True:
            time.sleep(METRICS_PUBLISH_S)
            board = self._metrics_board()
            try:
                if board is not None:
                    board.put.remote(state.replica, state.render_metrics().decode())
            except Exception as exc:  # the board gone (looked up again next time) or the replica stopping
                log.warning("replica %s could not publish its metrics: %r", state.replica, exc)
                self._board = None

    def _metrics_board(self):
        """The application's board (``build_deployment`` made it), looked up until found."""
        if self._board is None:
            try:
                import ray

                self._board = ray.get_actor(METRICS_BOARD, namespace=RAY_NAMESPACE)
            except Exception:  # not there (yet): this replica's own numbers until it is
                return None
        return self._board

    def __serve_build_asgi_app__(self):
        return self.server_app

    async def check_health(self) -> None:
        """Ray calls this every few seconds; raising makes it replace the replica."""
        loop = self.server_app.state.server.loop
        if loop.error is not None or loop.has_started and not loop.is_alive:
            raise RuntimeError(f"the engine loop stopped: {loop.error or 'its thread exited'}")


def _replica_id() -> str | None:
    try:
        from ray import serve

        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (tests of the class itself)
        return None


class MetricsBoard:
    """A Ray actor holding each replica's latest Prometheus exposition, so that ``/metrics`` on
    whichever replica the proxy picks answers for all of them (each replica publishes every
    ``METRICS_PUBLISH_S``; one silent for ``METRICS_MAX_AGE_S`` is dead and drops out)."""

    def __init__(self):
        self.texts: dict[str, tuple[float, str]] = {}

    def put(self, replica: str, text: str) -> None:
        self.texts[replica] = (time.monotonic(), text)

    def recent(self, max_age_s: float) -> dict[str, str]:
        now = time.monotonic()
        self.texts = {r: (t, text) for r, (t, text) in self.texts.items() if now - t <= max_age_s}
        return {r: text for r, (_, text) in self.texts.items()}


_board_handle = None  # build_deployment's handle on the board


def build_deployment(config: ServerConfig, scale: ScaleConfig, cuda: bool):
    """The bound Ray Serve application of engine replicas (and its metrics board, owned by
    the process that builds it)."""
    import ray
    from ray import serve

    global _board_handle  # an actor lives while a handle does: held for this (the driver's) process
    _board_handle = ray.remote(num_cpus=0)(MetricsBoard).options(name=METRICS_BOARD, namespace=RAY_NAMESPACE,
                                                                 get_if_exists=True).remote()
    ray.get(_board_handle.recent.remote(0.0))  # registered under its name before any replica looks

    cls = serve.ingress()(EngineReplica)
    return serve.deployment(**deployment_options(config, scale, cuda))(cls).bind(config)


def serve_on_ray(config: ServerConfig, scale: ScaleConfig, on_ready=None) -> None:
    """Start (or join) Ray, run the replicas behind Ray's HTTP proxy on ``--host``/``--port``,
    and block until SIGTERM/SIGINT; then shut the application down (replicas drain for
    ``--shutdown-timeout``)."""
    import signal
    import threading

    import ray
    import torch
    from ray import serve

    from a2d_guard.server import ray_proxy

    ray_proxy.install()  # OpenAI bodies for the proxy's own answers (429 when all are full, a dead replica)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ray.init(address=scale.ray_address, num_cpus=scale.num_cpus if scale.ray_address is None else None,
             include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        serve.start(http_options={"host": config.host, "port": config.port}, detached=False)
        app = build_deployment(config, scale, cuda=torch.cuda.is_available())
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        if on_ready is not None:
            on_ready()
        stop.wait()
    finally:
        try:
            serve.delete(APP_NAME)
            serve.shutdown()
        finally:
            ray.shutdown()
