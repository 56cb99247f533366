"""Layout and import rules of DESIGN §2, enforced by walking the source."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(folder: str):
    return sorted((ROOT / folder).rglob("*.py"))


def test_triton_kernels_import_only_torch_and_triton():
    allowed = ("torch", "triton", "__future__", "math", "typing", "dataclasses", "functools", "collections")
    for path in _modules("triton_kernels"):
        for name in _imports(path):
            assert name.split(".")[0] in allowed or name.startswith("a2d_guard.triton_kernels"), (path, name)


def test_only_ops_imports_the_kernels_and_nothing_imports_cli():
    for path in _modules("a2d_guard"):
        for name in _imports(path):
            if "triton_kernels" in name:
                assert path.name == "ops.py", (path, name)
            assert not name.startswith("a2d_guard.cli"), (path, name)


def test_layers_import_downwards_only():
    forbidden = {
        "diffusion": ("a2d_guard.engine", "a2d_guard.training", "a2d_guard.server"),
        # compress builds on models; models learns about compressed folders through its
        # own format registry (models/formats.py), never by importing compress.
        "models": ("a2d_guard.engine", "a2d_guard.training", "a2d_guard.server", "a2d_guard.diffusion",
                   "a2d_guard.compress"),
        "training": ("a2d_guard.engine", "a2d_guard.server"),
        "engine": ("a2d_guard.server", "a2d_guard.training"),
        # the server is the HTTP face of the engine: it never trains, compresses or runs the demo
        "server": ("a2d_guard.training", "a2d_guard.compress", "a2d_guard.demo"),
    }
    for layer, bad in forbidden.items():
        for path in _modules(f"a2d_guard/{layer}"):
            for name in _imports(path):
                assert not name.startswith(bad), (path, name)


def _package(path: Path) -> str:
    """``a2d_guard/training/data.py`` -> ``a2d_guard.training``; top-level modules are their own package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:2]) if len(parts) > 2 else ".".join(parts)


def test_no_module_imports_another_packages_private_names():
    """A private name (``_x``) is a package's own business: another package that needs it gets a public one."""
    offenders = []
    for folder in ("a2d_guard", "cli"):
        for path in _modules(folder):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
                    continue
                if not node.module.startswith("a2d_guard") or node.module.startswith(_package(path)):
                    continue
                offenders += [(str(path.relative_to(ROOT)), node.module, a.name)
                              for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert offenders == []


def test_no_top_level_cli_or_triton_kernels_package_is_installed(tmp_path):
    code = ("import importlib.util as u; print(u.find_spec('cli') is None, u.find_spec('triton_kernels') is None,"
            " u.find_spec('a2d_guard.cli') is not None)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]


def test_public_api_resolves():
    import a2d_guard

    for name in a2d_guard.__all__:
        assert getattr(a2d_guard, name) is not None, name


def test_the_core_never_imports_the_integrations_or_their_gateways():
    """a2d_guard.integrations adapts to NeMo Guardrails and LiteLLM; nothing else may import it
    or them (a `pip install a2d-guard` without the gateways extra must work)."""
    for path in _modules("a2d_guard"):
        if "integrations" in path.parts:
            continue
        for name in _imports(path):
            assert not name.startswith(("a2d_guard.integrations", "nemoguardrails", "litellm")), (path, name)


def test_serving_never_imports_the_trainer():
    """`a2d-guard serve` (``--model demo`` included) reads trained folders through ``train_layout``."""
    for path in [ROOT / "cli" / "serve.py", *_modules("a2d_guard/server")]:
        for name in _imports(path):
            assert not name.startswith("a2d_guard.training"), (path, name)


def test_only_the_vllm_plugin_imports_vllm_and_nothing_imports_the_plugin():
    """``pip install a2d-guard`` never needs vLLM: ``vllm`` is imported only under ``a2d_guard/vllm``,
    and no other module imports that sub-package (vLLM loads it through the entry points)."""
    for path in _modules("a2d_guard") + _modules("cli"):
        inside = "vllm" in path.relative_to(ROOT).parts[:2]
        for name in _imports(path):
            if name == "vllm" or name.startswith("vllm."):
                assert inside, (path, name)
            if name.startswith("a2d_guard.vllm"):
                assert inside, (path, name)


def test_vllm_entry_points_name_real_callables():
    """The two entry points vLLM loads; ``register`` imports without vLLM (it imports vLLM when
    called), the endpoint class needs vLLM's FastAPI app and is exercised in ``tests/vllm_plugin``."""
    import tomllib  # noqa: I001 (stdlib from 3.11)

    from a2d_guard.vllm import register

    points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert points["vllm.general_plugins"] == {"a2d_guard": "a2d_guard.vllm:register"}
    assert points["vllm.endpoint_plugins"] == {"a2d_guard": "a2d_guard.vllm.endpoints:A2DGuardEndpoints"}
    assert callable(register)
