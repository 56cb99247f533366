"""Issue 22's criteria on hand-made worlds: each flips on its own figure."""

import copy

from a2d_guard.demo.criteria import CRITERIA, check_sweep, check_world

ORDERS = ("low_confidence", "random")


def _table(rate):
    return {a: dict.fromkeys(ORDERS, rate) for a in ("plain", "dija", "prefill")}


def _model(success, monitored, over_refusal=0.0, accuracy=0.9, fpr=0.0):
    return {"attack_success": _table(success), "attack_success_monitored": _table(monitored),
            "over_refusal": over_refusal, "benign_accuracy": accuracy,
            "guard": {"probe_c": {"fpr": fpr, "fpr_lookalike": fpr}}}


def _world():
    rl = _model(0.0, 0.0)
    rl["attack_success"]["dija"]["random"] = 0.6
    return {"models": {"base": _model(0.95, 0.95, fpr=0.5), "response_level": rl, "a2d": _model(0.0, 0.0)},
            "guard_model": {"name": "a2d"}}


def test_a_world_showing_the_pattern_meets_every_criterion():
    assert check_world(_world()) == dict.fromkeys(CRITERIA, True)


def test_each_criterion_fails_on_its_figure():
    def broken(edit):
        w = copy.deepcopy(_world())
        edit(w["models"])
        return {c for c, ok in check_world(w).items() if not ok}

    assert broken(lambda m: m["base"]["attack_success"]["prefill"].update(random=0.7)) == {"base_complies"}
    assert broken(lambda m: m["response_level"]["attack_success"]["dija"].update(random=0.4)) == {
        "response_level_breaks_under_dija"}
    assert broken(lambda m: m["a2d"]["attack_success"]["prefill"].update(random=0.1)) == {"a2d_holds"}
    assert broken(lambda m: m["a2d"]["attack_success_monitored"]["plain"].update(random=0.025)) == {"a2d_holds"}
    assert broken(lambda m: m["a2d"].update(over_refusal=0.1)) == {"a2d_over_refusal"}
    assert broken(lambda m: m["base"].update(benign_accuracy=0.7)) == {"base_accuracy"}
    assert broken(lambda m: m["a2d"].update(benign_accuracy=0.75)) == {"a2d_accuracy"}
    assert broken(lambda m: m["a2d"]["guard"]["probe_c"].update(fpr_lookalike=0.1)) == {"guard_fpr"}


def test_a_sweep_counts_the_worlds_where_each_holds():
    bad = copy.deepcopy(_world())
    bad["models"]["base"]["benign_accuracy"] = 0.5
    sweep = check_sweep([_world(), bad])
    assert sweep["base_accuracy"] == {"held": 1, "of": 2, "all": False}
    assert sweep["a2d_holds"] == {"held": 2, "of": 2, "all": True}
