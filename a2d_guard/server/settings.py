"""Server settings: flags, ``--config serve.yaml`` and the per-request sampling defaults.

A request's diffusion parameters fall back to the server's defaults, which come from the
flags or the YAML config (flags win). The YAML keys are the flag names, with ``-`` or
``_`` (``gen-length`` or ``gen_length``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from a2d_guard.config import SamplingParams
from a2d_guard.errors import A2DGuardError


@dataclass(frozen=True)
class ServerConfig:
    model: str = "tiny"
    adapter: str | None = None
    batch: int = 64  # running slots (max_num_seqs): requests sharing one model step
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
    # sampling defaults (SamplingParams fields)
    gen_length: int = 128
    steps: int = 128
    block_length: int = 32
    temperature: float = 0.0
    remasking: str = "low_confidence"
    eos_threshold: float = 0.9
    refusal_text: str | None = None

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise A2DGuardError(f"--batch must be >= 1, got {self.batch}")
        if self.max_waiting < 0:
            raise A2DGuardError(f"--max-waiting must be >= 0, got {self.max_waiting}")
        if not 0 <= self.port <= 65535:
            raise A2DGuardError(f"--port must be in 0..65535, got {self.port}")
        if self.shutdown_timeout < 0:
            raise A2DGuardError(f"--shutdown-timeout must be >= 0, got {self.shutdown_timeout}")
        self.default_params()  # a bad default fails at start-up, naming the flag

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model

    def default_params(self) -> SamplingParams:
        try:
            return SamplingParams(gen_length=self.gen_length, steps=self.steps, block_length=self.block_length,
                                  temperature=self.temperature, remasking=self.remasking,
                                  eos_threshold=self.eos_threshold, refusal_text=self.refusal_text)
        except A2DGuardError as exc:
            raise A2DGuardError(f"server default sampling settings: {exc}") from None

    def merged(self, **flags) -> ServerConfig:
        """These settings with the flags that were given (not None) on top."""
        return replace(self, **{k: v for k, v in flags.items() if v is not None})


def load_server_config(path: Path | None) -> ServerConfig:
    """``ServerConfig`` from a YAML file (unknown keys are an error naming them), or the defaults."""
    if path is None:
        return ServerConfig()
    import yaml

    if not path.is_file():
        raise A2DGuardError(f"--config {str(path)!r} is not a file; pass a YAML file of serve settings")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise A2DGuardError(f"--config {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise A2DGuardError(f"--config {str(path)!r} must hold a mapping of setting: value")
    known = {f.name for f in fields(ServerConfig)}
    values = {str(k).replace("-", "_"): v for k, v in raw.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise A2DGuardError(f"--config {str(path)!r}: unknown setting(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
    try:
        return ServerConfig(**values)
    except TypeError as exc:
        raise A2DGuardError(f"--config {str(path)!r}: {exc}") from None
