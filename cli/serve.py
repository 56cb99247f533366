"""``a2d-guard serve``: the OpenAI-compatible HTTP server on the continuous-batching engine."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path
from typing import Annotated

import typer
from a2d_guard.cli.errors import user_errors_exit_1
from a2d_guard.cli.options import DeviceOpt, DtypeOpt, FamilyOpt, TrustRemoteCodeOpt

DEMO_DIR = Path("a2d-demo")  # `a2d-guard demo`'s default --out


@user_errors_exit_1
def serve(
    model: Annotated[str | None, typer.Option("--model", "-m", help="'tiny' (built in), 'demo' (the A2D model "
                                              "`a2d-guard demo` trained in ./a2d-demo), a local folder or a Hub id "
                                              "(default: tiny).")] = None,
    adapter: Annotated[str | None, typer.Option("--adapter", help="A PEFT LoRA adapter folder to apply.")] = None,
    batch: Annotated[int | None, typer.Option("--batch", "--max-num-seqs", help="Running slots: requests "
                                              "decoded together in every model step (default: 64).")] = None,
    cache: Annotated[str | None, typer.Option("--cache", help="K/V cache: none (exact mode), prefix or dual "
                                              "(fast mode: Fast-dLLM's block cache, approximate; "
                                              "default: none).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (0 = any free port) (default: 8000).")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="A2D_GUARD_API_KEY", show_envvar=True,
                                                help="Require 'Authorization: Bearer KEY' on /v1 and docs routes. "
                                                     "Prefer the environment variable or --api-key-file: a flag is "
                                                     "visible to anyone who can list processes.")] = None,
    api_key_file: Annotated[Path | None, typer.Option("--api-key-file", help="Read the API key from the first "
                                                      "line of this file.")] = None,
    max_model_len: Annotated[int | None, typer.Option(help="Canvas positions (prompt + max_tokens) one request "
                                                      "may take (default: the model's).")] = None,
    max_body_bytes: Annotated[int | None, typer.Option(help="Largest request body; larger is a 413 "
                                                       "(default: 4 MiB).")] = None,
    max_samples_per_request: Annotated[int | None, typer.Option(help="Prompts x n one request may take "
                                                                "(default: max(8, batch / 4)).")] = None,
    max_connections: Annotated[int | None, typer.Option(help="Open connections; one more is answered 503 "
                                                        "(default: 1024).")] = None,
    timeout_keep_alive: Annotated[float | None, typer.Option(help="Seconds an idle keep-alive connection stays "
                                                             "open (default: 15).")] = None,
    timeout_header: Annotated[float | None, typer.Option(help="Seconds a client has to send a request's headers "
                                                         "(default: 10).")] = None,
    timeout_body: Annotated[float | None, typer.Option(help="Seconds a client has to send a request's body after "
                                                       "its headers (default: 60).")] = None,
    docs: Annotated[bool | None, typer.Option("--docs/--no-docs", help="Serve /docs, /redoc and /openapi.json "
                                              "(behind the API key when one is set) (default: on).")] = None,
    max_waiting: Annotated[int | None, typer.Option(help="Queued requests beyond the running slots before "
                                                    "answering 429 (default: 256).")] = None,
    served_model_name: Annotated[str | None, typer.Option(help="Model name clients send and /v1/models lists "
                                                          "(default: --model).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of these settings "
                                                "(keys = flag names); flags override it.")] = None,
    gen_length: Annotated[int | None, typer.Option(help="Default max_tokens = canvas length (default: 128).")] = None,
    steps: Annotated[int | None, typer.Option(help="Default denoising steps per gen-length tokens "
                                              "(default: --gen-length, one token per step).")] = None,
    block_length: Annotated[int | None, typer.Option(help="Default block length (default: 32).")] = None,
    eos_threshold: Annotated[float | None, typer.Option(help="Default A2D monitor threshold, 1.0 = off "
                                                        "(default: 0.9).")] = None,
    refusal_text: Annotated[str | None, typer.Option(help="Default content of a rejected answer "
                                                     "(default: the text committed before the rejection, "
                                                     "often empty).")] = None,
    shutdown_timeout: Annotated[float | None, typer.Option(help="Seconds running requests get to finish after "
                                                           "SIGTERM/SIGINT (default: 30).")] = None,
    replicas: Annotated[int | None, typer.Option(help="Run N engine replicas (one per GPU) behind one endpoint "
                                                 "on Ray Serve (needs the 'ray' extra).")] = None,
    min_replicas: Annotated[int | None, typer.Option(help="Autoscale on Ray Serve: at least this many "
                                                     "replicas.")] = None,
    max_replicas: Annotated[int | None, typer.Option(help="Autoscale on Ray Serve: at most this many "
                                                     "replicas.")] = None,
    target_ongoing_requests: Annotated[float | None, typer.Option(help="Autoscaling target per replica "
                                                                  "(default: batch / 2).")] = None,
    ray_address: Annotated[str | None, typer.Option(help="Join this Ray cluster (default: start a local "
                                                    "one).")] = None,
    replica_cpus: Annotated[float, typer.Option(help="CPUs per replica on a machine without CUDA.")] = 1.0,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    family: FamilyOpt = None,
    trust_remote_code: TrustRemoteCodeOpt = False,
) -> None:
    """Serve the model over an OpenAI-compatible API; unsafe requests end with content_filter."""
    _check_serve_extra()
    settings = serve_settings(
        config, model=model, adapter=adapter, batch=batch, cache=cache, host=host, port=port, api_key=api_key or None,
        max_waiting=max_waiting, served_model_name=served_model_name, gen_length=gen_length, steps=steps,
        block_length=block_length, eos_threshold=eos_threshold, refusal_text=refusal_text,
        shutdown_timeout=shutdown_timeout, dtype=dtype, device=device, family=family,
        trust_remote_code=trust_remote_code or None, api_key_file=str(api_key_file) if api_key_file else None,
        max_model_len=max_model_len, max_body_bytes=max_body_bytes, max_samples_per_request=max_samples_per_request,
        max_connections=max_connections, timeout_keep_alive=timeout_keep_alive, timeout_header=timeout_header,
        timeout_body=timeout_body, docs=docs)
    if api_key and os.environ.get("A2D_GUARD_API_KEY") != api_key:
        typer.echo("warning: --api-key puts the key on the command line, where `ps` shows it to every user of "
                   "this machine; set A2D_GUARD_API_KEY or use --api-key-file instead", err=True)
    if settings.model == "demo":
        settings = _demo_model(settings)
    if replicas is not None or min_replicas is not None or max_replicas is not None:
        _serve_replicas(settings, replicas, min_replicas, max_replicas, target_ongoing_requests, ray_address,
                        replica_cpus)
        return
    from a2d_guard.server.run import bind_socket, load_llm, url_of
    from a2d_guard.server.run import serve as run

    sock = bind_socket(settings.host, settings.port)  # before loading: a busy port fails in a second
    llm = load_llm(settings)

    def ready(_state) -> None:
        auth = "API key required" if settings.api_key or settings.api_key_file else "no API key"
        typer.echo(f"a2d-guard serving {settings.model_name!r} on {url_of(sock)} (batch {settings.batch}, "
                   f"cache {settings.cache}, max waiting {settings.max_waiting}, {auth}); Ctrl-C to stop", err=True)

    with _exit_0_after_drain():
        run(llm, settings, sock, on_ready=ready)


def _serve_replicas(settings, replicas, min_replicas, max_replicas, target, ray_address, replica_cpus) -> None:
    """``--replicas``/``--min-replicas``: the same app on N engine replicas behind Ray Serve."""
    from a2d_guard.errors import A2DGuardError

    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise A2DGuardError('--replicas needs Ray Serve; run: pip install "a2d-guard[ray]"') from None
    from a2d_guard.server.ray_app import ScaleConfig, serve_on_ray

    scale = ScaleConfig(replicas=replicas, min_replicas=min_replicas, max_replicas=max_replicas,
                        target_ongoing_requests=target, ray_address=ray_address, replica_cpus=replica_cpus)

    def ready() -> None:
        count = replicas if replicas is not None else f"{min_replicas}-{max_replicas}"
        typer.echo(f"a2d-guard serving {settings.model_name!r} on http://{settings.host}:{settings.port} "
                   f"({count} replicas on Ray Serve, batch {settings.batch} each); Ctrl-C to stop", err=True)

    serve_on_ray(settings, scale, on_ready=ready)


@contextlib.contextmanager
def _exit_0_after_drain():
    """uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown so that the default action
    (death by signal) follows; a drained server has done what the signal asked, so the
    handlers it restores are no-ops and the command exits 0."""
    saved = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _check_serve_extra() -> None:
    from a2d_guard.errors import A2DGuardError

    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise A2DGuardError(f"serving needs the 'serve' extra ({exc.name} is missing); "
                            f"run: pip install \"a2d-guard[serve]\"") from None


def serve_settings(config: Path | None, **flags):
    """The flags given (not None) over the ``--config`` file over the defaults: the server's,
    or with ``--model demo`` (flag or file) the demo's decode settings (``_demo_defaults``).

    One ``replace`` for all of them, so a file's ``gen_length`` and a flag's ``--block-length``
    are checked together, never against a default the user overrode.
    """
    from dataclasses import replace

    from a2d_guard.server.settings import ServerConfig, read_server_config

    values = {**read_server_config(config), **{k: v for k, v in flags.items() if v is not None}}
    return replace(_demo_defaults() if values.get("model") == "demo" else ServerConfig(), **values)


def _demo_defaults():
    """``--model demo``'s defaults: the decode settings ``a2d-guard demo`` evaluated its models with.

    Why: the tiny model trained on 64-token rows; the server's own defaults (a 128-token
    canvas in blocks of 32) put it far outside what it learned, and it then cut answers
    short and refused look-alikes that it answers in the demo's evaluation.
    """
    from a2d_guard.demo.runner import DEFAULT_PLAN
    from a2d_guard.server.settings import ServerConfig

    e = DEFAULT_PLAN.eval
    steps = None if e.steps == e.gen_length else e.steps  # None: one token per step of whatever gen_length is set
    return ServerConfig(gen_length=e.gen_length, steps=steps, block_length=e.block_length,
                        eos_threshold=e.eos_threshold)


def _demo_model(settings):
    """``--model demo``: the demo's base with its A2D adapter, so a newcomer sees a live rejection."""
    from a2d_guard.errors import A2DGuardError
    from a2d_guard.train_layout import ADAPTER_DIR, MODEL_DIR

    base, adapter = DEMO_DIR / "base" / MODEL_DIR, DEMO_DIR / "a2d" / ADAPTER_DIR
    if not (base.is_dir() and adapter.is_dir()):
        raise A2DGuardError(f"--model demo serves the A2D model trained by `a2d-guard demo` in ./{DEMO_DIR}, and "
                            f"there is none here; run `a2d-guard demo` first (about 10 minutes on a CPU)")
    name = settings.served_model_name or "demo"
    return settings.merged(model=str(base), adapter=str(adapter), served_model_name=name)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the engine thread and HTTP both decode
