"""Server settings: flags, ``--config serve.yaml`` and the per-request sampling defaults.

A request's diffusion parameters fall back to the server's defaults, which come from the
flags or the YAML config (flags win). The YAML keys are the flag names, with ``-`` or
``_`` (``gen-length`` or ``gen_length``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import get_args, get_type_hints

from a2d_guard.config import SamplingParams
from a2d_guard.engine.cached_forward import CACHE_MODES
from a2d_guard.errors import A2DGuardError
from a2d_guard.yaml_file import read_yaml_mapping

_SAMPLING = SamplingParams()


@dataclass(frozen=True)
class ServerConfig:
    model: str = "tiny"
    adapter: str | None = None
    batch: int = 64  # running slots (max_num_seqs): requests sharing one model step
    cache: str = "none"  # engine K/V cache: none (exact mode) | prefix | dual (fast mode, DESIGN §12)
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)  # never printed
    max_waiting: int = 256  # queued (not yet running) requests before 429
    served_model_name: str | None = None
    dtype: str | None = None
    device: str | None = None
    family: str | None = None
    trust_remote_code: bool = False
    seed: int = 0
    shutdown_timeout: float = 30.0
    # what one request may take (checked before tokenizing or queueing; see server/app.py)
    max_model_len: int | None = None  # canvas positions (prompt + max_tokens); default: the model's
    max_body_bytes: int = 4 << 20  # a larger body is a 413, refused before it is read
    max_samples_per_request: int | None = None  # prompts x n; default: max(8, batch // 4)
    # connections (server/connections.py): a client that holds a socket without sending is closed
    max_connections: int = 1024  # open sockets; one more is answered 503 and closed
    timeout_keep_alive: float = 15.0  # idle seconds between requests (> clients' 5 s pool expiry)
    timeout_header: float = 10.0  # seconds from connection (or a request's first byte) to its last header
    timeout_body: float = 60.0  # seconds from the last header to the last body byte
    api_key_file: str | None = None  # the key in a file (first line): kept out of `ps` and shell history
    docs: bool = True  # /docs, /redoc and /openapi.json (behind the API key when one is set)
    # sampling defaults: SamplingParams' own, so the library and the server agree
    gen_length: int = _SAMPLING.gen_length
    steps: int | None = None  # default: gen_length (one token per step, as SamplingParams' defaults)
    block_length: int = _SAMPLING.block_length
    temperature: float = _SAMPLING.temperature
    remasking: str = _SAMPLING.remasking
    eos_threshold: float = _SAMPLING.eos_threshold
    refusal_text: str | None = _SAMPLING.refusal_text

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise A2DGuardError(f"--batch must be >= 1, got {self.batch}")
        if self.cache not in CACHE_MODES:
            raise A2DGuardError(f"--cache {self.cache!r} is not a cache mode; use one of {', '.join(CACHE_MODES)}")
        if self.max_waiting < 0:
            raise A2DGuardError(f"--max-waiting must be >= 0, got {self.max_waiting}")
        if not 0 <= self.port <= 65535:
            raise A2DGuardError(f"--port must be in 0..65535, got {self.port}")
        if self.shutdown_timeout < 0:
            raise A2DGuardError(f"--shutdown-timeout must be >= 0, got {self.shutdown_timeout}")
        for name in ("max_body_bytes", "max_connections"):
            if getattr(self, name) < 1:
                raise A2DGuardError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("max_model_len", "max_samples_per_request"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise A2DGuardError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("timeout_keep_alive", "timeout_header", "timeout_body"):
            if not getattr(self, name) > 0:
                raise A2DGuardError(f"--{name.replace('_', '-')} must be > 0 seconds, got {getattr(self, name)}")
        if self.api_key is not None and self.api_key_file is not None:
            raise A2DGuardError("both an API key and --api-key-file are set; give one of them")
        if self.api_key_file is not None:
            self.read_api_key()  # an unreadable or empty file fails at start-up, naming it
        self.default_params()  # a bad default fails at start-up, naming the flag

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model

    @property
    def samples_per_request(self) -> int:
        """Engine requests (prompts x n) one HTTP request may take: a share of the batch, so
        one client cannot fill every slot with a single call."""
        if self.max_samples_per_request is not None:
            return self.max_samples_per_request
        return max(8, self.batch // 4)

    def read_api_key(self) -> str | None:
        """The key clients must send: ``api_key``, or the first line of ``api_key_file``."""
        if self.api_key_file is None:
            return self.api_key
        path = Path(self.api_key_file)
        try:
            key = path.read_text(encoding="utf-8").splitlines()[0].strip() if path.stat().st_size else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise A2DGuardError(f"--api-key-file {str(path)!r} cannot be read ({exc}); "
                                "pass a readable file holding the key on its first line") from None
        if not key:
            raise A2DGuardError(f"--api-key-file {str(path)!r} is empty; write the key on its first line")
        return key

    def default_params(self) -> SamplingParams:
        try:
            steps = self.steps if self.steps is not None else self.gen_length
            return SamplingParams(gen_length=self.gen_length, steps=steps, block_length=self.block_length,
                                  temperature=self.temperature, remasking=self.remasking,
                                  eos_threshold=self.eos_threshold, refusal_text=self.refusal_text)
        except A2DGuardError as exc:
            raise A2DGuardError(f"server default sampling settings: {exc}") from None

    def merged(self, **flags) -> ServerConfig:
        """These settings with the flags that were given (not None) on top."""
        return replace(self, **{k: v for k, v in flags.items() if v is not None})


def load_server_config(path: Path | None) -> ServerConfig:
    """``ServerConfig`` from a YAML file (unknown keys are an error naming them), or the defaults."""
    return replace(ServerConfig(), **read_server_config(path))


def read_server_config(path: Path | None) -> dict:
    """The settings a YAML file sets, by field name, each type-checked; ``{}`` for no file."""
    if path is None:
        return {}
    values = read_yaml_mapping(path)
    known = {f.name for f in fields(ServerConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise A2DGuardError(f"--config {str(path)!r}: unknown setting(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
    for key, value in values.items():
        _check_type(path, key, value)
    return values


def _check_type(path: Path, key: str, value) -> None:
    """YAML guesses types (``no`` is False, ``1e3`` a string): say so instead of serving with it."""
    hint = get_type_hints(ServerConfig)[key]
    allowed = tuple(t for t in get_args(hint) or (hint,) if t is not type(None))
    if value is None and type(None) in get_args(hint):
        return
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return
    if isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed):
        return
    names = " or ".join({str: "text", int: "an integer", float: "a number", bool: "true/false"}[t] for t in allowed)
    quote = " (YAML reads yes/no/on/off as true/false: quote text)" if isinstance(value, bool) else ""
    raise A2DGuardError(f"--config {str(path)!r}: {key} must be {names}, got {value!r}{quote}")
