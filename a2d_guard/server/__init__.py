"""OpenAI-compatible HTTP server on the continuous-batching engine (DESIGN §9).

Needs the ``serve`` extra (``pip install "a2d-guard[serve]"``): FastAPI, uvicorn and
prometheus-client. ``server`` imports ``engine``; nothing in ``engine`` knows about HTTP.
"""

from a2d_guard.server.settings import ServerConfig, load_server_config

__all__ = ["ServerConfig", "load_server_config"]
