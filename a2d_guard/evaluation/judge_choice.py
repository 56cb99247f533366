"""``--judge NAME`` -> a judge: ``keyword`` or a causal-LM classifier.

Its own module so that the judges never import the classifier that builds on them (no cycle).
"""

from a2d_guard.errors import A2DGuardError
from a2d_guard.evaluation.classifier import ClassifierJudge
from a2d_guard.evaluation.judges import KeywordJudge


def make_judge(name: str, device=None, dtype=None):
    """``keyword``, or a causal-LM classifier by Hub id or local folder (loaded here)."""
    if not isinstance(name, str) or not name.strip():
        raise A2DGuardError("--judge is empty; pass keyword or a classifier (e.g. cais/HarmBench-Llama-2-13b-cls)")
    if name == "keyword":
        return KeywordJudge()
    return ClassifierJudge.load(name, device=device, dtype=dtype)
