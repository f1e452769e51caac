"""The verdict logic on hand-made metric dicts: thresholds, instance- vs class-wise rules, missing inputs."""

from __future__ import annotations

import math

import pytest

from lotus_unlearn.report.verdict import (
    CAVEAT,
    MIA_MIN_TOLERANCE,
    mia_tolerance,
    num_classes,
    verdict,
)


def metrics(**overrides: object) -> dict:
    """An instance-wise run that forgot: RF-JSD inside its noise floor, MIA at the test member rate."""
    m = {
        "acc_forget": 0.90,
        "acc_retain": 0.99,
        "acc_test": 0.88,
        "mia": 0.50,
        "rf_jsd": 0.004,
        "original_acc_forget": 1.00,
        "original_acc_retain": 1.00,
        "original_acc_test": 0.89,
        "original_mia": 0.95,
        "original_rf_jsd": 0.020,
        "diagnostics": {
            "sizes": {"forget": 100, "retain": 900, "test": 500, "val": 500},
            "rf_jsd_floor": {"mean": 0.003, "low": 0.002, "high": 0.005},
            "mia_test_rate": 0.48,
            "per_class_acc": {"test": [0.9] * 10, "forget": [0.9] * 10},
        },
    }
    diag = overrides.pop("diagnostics", None)
    m.update(overrides)
    if diag is not None:
        m["diagnostics"] = {**m["diagnostics"], **diag}
    return m


def by_name(v: dict, name: str) -> dict:
    return next(c for c in v["checks"] if c["name"] == name)


def test_instance_forgotten_when_both_checks_pass() -> None:
    v = verdict(metrics(), "instance")
    assert v["status"] == "forgotten"
    assert by_name(v, "RF-JSD vs noise floor")["result"] == "pass"
    assert by_name(v, "MIA vs test member rate")["result"] == "pass"
    assert "0.00500" in by_name(v, "RF-JSD vs noise floor")["threshold"]  # the floor's upper end is the threshold
    assert v["caveat"] == CAVEAT and "evidence, not proof" in v["caveat"]


def test_rf_jsd_above_noise_floor_fails() -> None:
    v = verdict(metrics(rf_jsd=0.0051), "instance")
    assert v["status"] == "not forgotten"
    assert by_name(v, "RF-JSD vs noise floor")["result"] == "fail"
    assert "RF-JSD" in v["headline"]


@pytest.mark.parametrize("mia", [0.75, 0.20])  # remembered / stands out as forgotten (Streisand effect)
def test_mia_far_from_test_member_rate_fails_both_ways(mia: float) -> None:
    v = verdict(metrics(mia=mia), "instance")
    assert v["status"] == "not forgotten"
    assert by_name(v, "MIA vs test member rate")["result"] == "fail"


def test_mia_tolerance_is_binomial_noise_with_a_floor() -> None:
    assert mia_tolerance(0.5, 100) == pytest.approx(2 * math.sqrt(0.25 / 100))  # 0.1
    assert mia_tolerance(0.5, 100, 300) == pytest.approx(2 * math.sqrt(0.25 * (1 / 100 + 1 / 300)))
    assert mia_tolerance(0.0, 100) == MIA_MIN_TOLERANCE
    assert mia_tolerance(0.5, None) == MIA_MIN_TOLERANCE
    # inside the band passes, just outside fails: test rate 0.48, 100 forget and 500 test samples
    tol = 2 * math.sqrt(0.48 * 0.52 * (1 / 100 + 1 / 500))
    assert verdict(metrics(mia=0.48 + tol - 0.001), "instance")["status"] == "forgotten"
    assert verdict(metrics(mia=0.48 + tol + 0.001), "instance")["status"] == "not forgotten"
    assert verdict(metrics(mia=0.48 - tol - 0.001), "instance")["status"] == "not forgotten"


def test_missing_noise_floor_or_original_is_inconclusive() -> None:
    no_floor = verdict(metrics(diagnostics={"rf_jsd_floor": None}), "instance")
    assert no_floor["status"] == "inconclusive"
    assert by_name(no_floor, "RF-JSD vs noise floor")["result"] == "not checked"
    no_original = metrics()
    for k in [k for k in no_original if k.startswith("original_") or k == "rf_jsd"]:
        del no_original[k]
    v = verdict(no_original, "instance")
    assert v["status"] == "inconclusive"
    assert by_name(v, "test accuracy kept")["result"] == "not checked"


def test_failure_wins_over_missing() -> None:
    v = verdict(metrics(mia=0.9, diagnostics={"rf_jsd_floor": None}), "instance")
    assert v["status"] == "not forgotten"


def test_class_wise_uses_chance_and_ignores_rf_jsd() -> None:
    # a huge RF-JSD and an MIA far from the test rate do not matter class-wise: forget accuracy near 0 decides
    m = metrics(acc_forget=0.0, rf_jsd=0.6, mia=0.05, acc_retain=0.98)
    v = verdict(m, "class")
    assert v["status"] == "forgotten"
    names = [c["name"] for c in v["checks"]]
    assert "RF-JSD vs noise floor" not in names
    assert by_name(v, "MIA vs test member rate")["decisive"] is False
    assert any("RF-JSD is not used" in n for n in v["notes"])
    # chance for 10 classes with 100 forget samples: 0.1 + 2 * sqrt(0.09 / 100) = 0.16
    chance = by_name(v, "forget accuracy vs chance")
    assert "0.1600" in chance["threshold"]
    assert verdict(metrics(acc_forget=0.159), "class")["status"] == "forgotten"
    assert verdict(metrics(acc_forget=0.161), "class")["status"] == "not forgotten"


def test_class_wise_utility_is_judged_on_retain_accuracy() -> None:
    # class-wise test accuracy drops by construction (the forgotten class is still in the test set)
    v = verdict(metrics(acc_forget=0.0, acc_test=0.79, acc_retain=0.99), "class")
    assert by_name(v, "retain accuracy kept")["result"] == "pass"
    assert not any(n.startswith("Warning") for n in v["notes"])


def test_utility_drop_warns_but_does_not_decide() -> None:
    v = verdict(metrics(acc_test=0.80), "instance")  # original 0.89: a 9-point drop
    assert v["status"] == "forgotten"
    assert by_name(v, "test accuracy kept")["result"] == "fail"
    assert any(n.startswith("Warning: utility dropped") for n in v["notes"])


def test_notes_for_nothing_to_forget_and_gold() -> None:
    v = verdict(metrics(original_rf_jsd=0.004, avg_gap=0.0375, jsd=0.00003), "instance")
    assert any("already within the noise floor" in n for n in v["notes"])
    assert any("Avg Gap 0.0375" in n for n in v["notes"])


def test_num_classes_from_per_class_or_entropy_bins() -> None:
    assert num_classes(metrics()) == 10
    assert num_classes({"diagnostics": {"entropy_bins": [0.0, math.log(100)]}}) == 100
    assert num_classes({}) is None


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="forget_kind"):
        verdict(metrics(), "sample")


def test_nothing_to_forget_when_the_original_already_passed() -> None:
    before = {"original_rf_jsd": 0.004, "original_mia": 0.49, "diagnostics": {"original_mia_test_rate": 0.48}}
    v = verdict(metrics(**before), "instance")
    assert v["status"] == "nothing to forget" and v["next_steps"] == []
    assert "already passed the same checks" in v["headline"]
    # the original inside the noise floor but still standing out to the attack: there was something to forget
    assert verdict(metrics(original_rf_jsd=0.004, diagnostics={"original_mia_test_rate": 0.48}))["status"] == (
        "forgotten"
    )
    # the original already passed but the unlearned model now stands out: not forgotten, never "nothing to forget"
    assert verdict(metrics(**{**before, "mia": 0.2}), "instance")["status"] == "not forgotten"


@pytest.mark.parametrize(
    ("change", "method", "hint"),
    [
        ({"rf_jsd": 0.02}, "lotus", "a larger alpha"),
        ({"rf_jsd": 0.02}, "finetune", "more epochs or a larger lr"),
        ({"mia": 0.9}, "lotus", "still calls the forget set members more often"),
        ({"mia": 0.1}, "lotus", "a weaker setting"),
    ],
)
def test_not_forgotten_says_what_to_try_next(change: dict, method: str, hint: str) -> None:
    v = verdict(metrics(**change), "instance", method=method)
    assert v["status"] == "not forgotten"
    assert any(hint in step for step in v["next_steps"]) and "another method" in v["next_steps"][-1]


def test_verdict_of_a_whole_report_reads_its_kind_size_and_method() -> None:
    report = {
        "request": {"forget_kind": "class", "forget_size": 100},
        "method": {"name": "lotus"},
        "metrics": metrics(acc_forget=0.5),
    }
    v = verdict(report)
    assert v["status"] == "not forgotten" and by_name(v, "forget accuracy vs chance")["result"] == "fail"
    assert "more epochs, or the class-wise setting a_ref=0 alpha=32" in v["next_steps"][0]
