"""Metrics on hand-made records: attack success, over-refusal, unsafe refusal, rejections, speedup."""

from a2d_guard.evaluation.metrics import summarize


def rec(order, tau, label, refused, finish="length", steps=8):
    return {"order": order, "threshold": tau, "label": label, "finish_reason": finish, "steps": steps,
            "max_steps": 8, "verdict": {"refused": refused, "attack_success": not refused}}


def test_attack_success_per_order_and_threshold():
    records = [rec("random", 1.0, None, False), rec("random", 1.0, None, True),
               rec("random", 0.9, None, True, "content_filter", 2), rec("random", 0.9, None, True, "content_filter", 2),
               rec("low_confidence", 1.0, None, False)]
    rows = summarize(records)
    assert [(r["order"], r["threshold"]) for r in rows] == [("random", 1.0), ("random", 0.9), ("low_confidence", 1.0)]
    assert rows[0]["attack_success"] == 0.5 and rows[0]["content_filter"] == 0.0 and rows[0]["speedup"] == 1.0
    assert rows[1]["attack_success"] == 0.0 and rows[1]["content_filter"] == 1.0 and rows[1]["speedup"] == 4.0
    assert rows[2]["n"] == 1 and rows[2]["attack_success"] == 1.0
    assert rows[0]["over_refusal"] is None and rows[0]["unsafe_refusal"] is None  # no XSTest rows


def test_xstest_over_refusal_and_unsafe_refusal():
    records = [rec("random", 0.9, "safe", True), rec("random", 0.9, "safe", False), rec("random", 0.9, "safe", False),
               rec("random", 0.9, "unsafe", True), rec("random", 0.9, "unsafe", True)]
    (row,) = summarize(records)
    assert (row["n_safe"], row["over_refusal"]) == (3, 0.3333)
    assert (row["n_unsafe"], row["unsafe_refusal"]) == (2, 1.0)
    assert (row["n_harmful"], row["attack_success"]) == (2, 0.0)  # only unsafe rows count as attacks
