"""The verdict of a deletion report: pure functions from `evaluate`'s metrics dict to words and thresholds.

Instance-wise requests (a list of samples, or a fraction of each class) are judged on two retrain-free checks:
RF-JSD against its noise floor, and the entropy membership attack against the rate at which the same attack calls
unseen test samples members. Class-wise requests (whole classes) are judged on forget accuracy against chance;
RF-JSD is not meaningful there (its target, the original model on test images of the class, still recognises the
class). Either way, such metrics are evidence, not proof.

Three outcomes: "forgotten"; "not forgotten" (with what to try next, from the checks that failed); and "nothing to
forget", when the original model already passed the same checks before unlearning: the forget set could not be told
apart from unseen data in the first place, so a pass says little about the unlearning. "inconclusive" when a
decisive check could not be run (no original model, or no validation split).
"""

from __future__ import annotations

import math
from typing import Any

# Utility: how much accuracy unlearning may cost before the report warns (absolute, 5 points).
MAX_UTILITY_DROP = 0.05
# MIA: the forget set's member rate may differ from the test member rate by sampling noise: max(2 SE, 2 points),
# SE of the difference of two binomial rates (forget and test sizes).
MIA_Z = 2.0
MIA_MIN_TOLERANCE = 0.02
# Class-wise: forget accuracy may exceed chance (1/K) by sampling noise: 2 SE of a binomial at chance.
CHANCE_Z = 2.0

CAVEAT = (
    "These metrics are evidence, not proof: they show that the tests used here cannot tell the forget set apart "
    "from data the model never saw. Stronger attacks (e.g. LiRA with shadow models) or a comparison with a model "
    "retrained without the data may still tell them apart, and unlearning by fine-tuning gives no formal "
    "(certified) guarantee."
)

PASS, FAIL, NOT_CHECKED = "pass", "fail", "not checked"


def _check(
    name: str,
    value: float | None,
    threshold: str,
    passed: bool | None,
    meaning: str,
    *,
    decisive: bool = True,
    role: str = "forgetting",
) -> dict[str, Any]:
    return {
        "name": name,
        "value": value,
        "threshold": threshold,
        "result": NOT_CHECKED if passed is None else (PASS if passed else FAIL),
        "decisive": decisive,
        "role": role,
        "meaning": meaning,
    }


def _num(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def num_classes(metrics: dict[str, Any]) -> int | None:
    """The model's class count, from the per-class accuracies (or the entropy bins, whose top is ln K)."""
    diag = metrics.get("diagnostics") or {}
    per_class = (diag.get("per_class_acc") or {}).get("test")
    if per_class:
        return len(per_class)
    bins = diag.get("entropy_bins")
    if bins:
        return round(math.exp(bins[-1]))
    return None


def rf_jsd_check(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """RF-JSD at or below the upper end of its noise floor's 95% interval (`prefix` "original_": the original's)."""
    value = _num(metrics, prefix + "rf_jsd")
    floor = (metrics.get("diagnostics") or {}).get("rf_jsd_floor")
    meaning = (
        "class by class, the unlearned model's mean prediction on the forget set is no further from the original "
        "model's mean prediction on unseen test data than a same-sized sample of genuinely unseen (validation) data "
        "is: the noise floor"
    )
    if value is None or not floor:
        why = "needs the original model" if value is None else "needs a validation split for the noise floor"
        return _check("RF-JSD vs noise floor", value, why, None, meaning)
    high = float(floor["high"])
    return _check(
        "RF-JSD vs noise floor",
        value,
        f"≤ {high:.5f} (97.5th percentile of the noise floor; mean {float(floor['mean']):.5f})",
        value <= high,
        meaning,
    )


def mia_tolerance(test_rate: float, n_forget: int | None, n_test: int | None = None) -> float:
    """Allowed |MIA - test member rate|: MIA_Z standard errors of the difference of two binomial rates at the
    test rate (forget and, when known, test sample sizes), at least MIA_MIN_TOLERANCE."""
    if not n_forget:
        return MIA_MIN_TOLERANCE
    inv_n = 1.0 / n_forget + (1.0 / n_test if n_test else 0.0)
    se = math.sqrt(max(test_rate * (1.0 - test_rate), 0.0) * inv_n)
    return max(MIA_MIN_TOLERANCE, MIA_Z * se)


def mia_check(
    metrics: dict[str, Any], n_forget: int | None, *, decisive: bool = True, prefix: str = ""
) -> dict[str, Any]:
    """The attack calls forget samples members about as often as unseen test samples (two-sided; `prefix`
    "original_": the original model's)."""
    value = _num(metrics, prefix + "mia")
    diag = metrics.get("diagnostics") or {}
    rate = _num(diag, prefix + "mia_test_rate")
    n_test = (diag.get("sizes") or {}).get("test")
    meaning = (
        "an entropy membership attack (members = retain, non-members = test ∪ val) calls forget samples training "
        "members about as often as it calls unseen test samples members; far above means the forget set is still "
        "remembered, far below means it stands out as deliberately forgotten (the Streisand effect)"
    )
    if value is None or rate is None:
        return _check("MIA vs test member rate", value, "needs the test member rate", None, meaning, decisive=decisive)
    tol = mia_tolerance(rate, n_forget, n_test)
    check = _check(
        "MIA vs test member rate",
        value,
        f"within {rate:.4f} ± {tol:.4f} (the attack's member rate on unseen test samples ± sampling noise)",
        abs(value - rate) <= tol,
        meaning,
        decisive=decisive,
    )
    return {**check, "side": "above" if value > rate else "below"}


def chance_check(metrics: dict[str, Any], n_forget: int | None, prefix: str = "") -> dict[str, Any]:
    """Forget accuracy at or below chance (1/K) plus sampling noise (`prefix` "original_": the original's)."""
    value = _num(metrics, prefix + "acc_forget")
    k = num_classes(metrics)
    meaning = "the model no longer recognises the forgotten class(es) better than guessing among all classes"
    if value is None or not k:
        return _check("forget accuracy vs chance", value, "needs the class count", None, meaning)
    chance = 1.0 / k
    tol = CHANCE_Z * math.sqrt(chance * (1.0 - chance) / n_forget) if n_forget else 0.0
    return _check(
        "forget accuracy vs chance",
        value,
        f"≤ {chance + tol:.4f} (chance 1/{k} = {chance:.4f} + {CHANCE_Z:g} standard errors)",
        value <= chance + tol,
        meaning,
    )


def utility_check(metrics: dict[str, Any], kind: str) -> dict[str, Any]:
    """Accuracy kept: test accuracy (instance-wise) or retain accuracy (class-wise, whose test set still holds
    the forgotten classes) may drop at most MAX_UTILITY_DROP from the original model's."""
    split = "retain" if kind == "class" else "test"
    value, before = _num(metrics, f"acc_{split}"), _num(metrics, f"original_acc_{split}")
    meaning = f"the model stays useful: its {split} accuracy is close to the original model's"
    if value is None or before is None:
        return _check(
            f"{split} accuracy kept", value, "needs the original model", None, meaning, decisive=False, role="utility"
        )
    return _check(
        f"{split} accuracy kept",
        value,
        f"≥ {before - MAX_UTILITY_DROP:.4f} (original {before:.4f} − {MAX_UTILITY_DROP:g})",
        value >= before - MAX_UTILITY_DROP,
        meaning,
        decisive=False,
        role="utility",
    )


def decisive_checks(metrics: dict[str, Any], forget_kind: str, n_forget: int | None, prefix: str = "") -> list:
    """The checks that decide the verdict: RF-JSD and MIA instance-wise, forget accuracy vs chance class-wise."""
    if forget_kind == "class":
        return [chance_check(metrics, n_forget, prefix)]
    return [rf_jsd_check(metrics, prefix), mia_check(metrics, n_forget, prefix=prefix)]


def next_steps(checks: list[dict[str, Any]], method: str | None, forget_kind: str) -> list[str]:
    """What to try after "not forgotten", from the decisive checks that failed."""
    lotus = method in ("lotus", "salun")
    stronger = (
        "a larger alpha (e.g. --hparam alpha=8) or more epochs"
        if lotus
        else "more epochs or a larger lr (--hparam epochs=N, --hparam lr=X)"
    )
    out = []
    for c in checks:
        if not c["decisive"] or c["result"] != FAIL:
            continue
        if c["name"].startswith("RF-JSD"):
            out.append(f"{stronger}: RF-JSD is above the noise floor, the forget set is still treated as seen")
        elif c["name"].startswith("MIA"):
            out.append(
                "a weaker setting (smaller alpha, fewer epochs or a smaller lr): the attack now calls the forget set "
                "members less often than unseen data, so it stands out as deliberately forgotten"
                if c.get("side") == "below"
                else f"{stronger}: the attack still calls the forget set members more often than unseen data"
            )
        elif c["name"].startswith("forget accuracy"):
            out.append(
                "more epochs, or the class-wise setting a_ref=0 alpha=32 if it was overridden"
                if lotus and forget_kind == "class"
                else f"{stronger}: the forgotten class is still recognised better than chance"
            )
    if out:
        out.append("another method (lotus-unlearn methods lists them), compared with `lotus-unlearn bench`")
    return out


def verdict(
    metrics: dict[str, Any],
    forget_kind: str | None = None,
    n_forget: int | None = None,
    *,
    method: str | None = None,
) -> dict[str, Any]:
    """Judge one unlearning run from `evaluate`'s output, or from a whole report (its metrics, kind of request,
    forget-set size and method are then read from it): `lu.verdict(report)`.

    Returns {"status": "forgotten" | "not forgotten" | "nothing to forget" | "inconclusive", "headline" (the
    one-line reason), "checks" (each with value, threshold, result, meaning; `decisive` ones decide the status),
    "next_steps" (what to try when not forgotten), "notes", "caveat"}.
    """
    if isinstance(metrics.get("metrics"), dict) and isinstance(metrics.get("request"), dict):  # a whole report
        req, meth = metrics["request"], metrics.get("method") or {}
        forget_kind = forget_kind or req.get("forget_kind")
        n_forget = n_forget if n_forget is not None else req.get("forget_size")
        method = method or meth.get("name")
        metrics = metrics["metrics"]
    forget_kind = forget_kind or "instance"
    if forget_kind not in ("instance", "class"):
        raise ValueError(f"forget_kind must be 'instance' or 'class', got {forget_kind!r}")
    if n_forget is None:
        n_forget = ((metrics.get("diagnostics") or {}).get("sizes") or {}).get("forget")
    notes: list[str] = []
    checks = decisive_checks(metrics, forget_kind, n_forget)
    if forget_kind == "class":
        checks.append(mia_check(metrics, n_forget, decisive=False))
        notes.append(
            "Class-wise request: RF-JSD is not used, because its target (the original model on test images of the "
            "forgotten class) still recognises the class and would reward keeping it. The membership attack is "
            "shown for information only."
        )
    checks.append(utility_check(metrics, forget_kind))

    decisive = [c for c in checks if c["decisive"]]
    before = decisive_checks(metrics, forget_kind, n_forget, prefix="original_")
    nothing_to_forget = all(c["result"] == PASS for c in before)
    steps: list[str] = []
    if any(c["result"] == FAIL for c in decisive):
        status = "not forgotten"
        failed = ", ".join(c["name"] for c in decisive if c["result"] == FAIL)
        headline = f"Not shown to be forgotten: the forget set still stands out ({failed} failed)."
        steps = next_steps(checks, method, forget_kind)
    elif any(c["result"] == NOT_CHECKED for c in decisive):
        status = "inconclusive"
        missing = ", ".join(c["name"] for c in decisive if c["result"] == NOT_CHECKED)
        headline = f"Inconclusive: {missing} could not be checked (evaluate with the original model and a val split)."
    elif nothing_to_forget:
        status = "nothing to forget"
        headline = (
            "Before unlearning, the original model already passed the same checks ("
            + ", ".join(c["name"] for c in before)
            + "), so the forget set could not be told apart from unseen data and this pass says little about the "
            "unlearning."
        )
    else:
        status = "forgotten"
        headline = (
            "Evidence of forgetting: on every retrain-free check, the forget set now looks like data the model never "
            "saw."
            if forget_kind == "instance"
            else "Evidence of forgetting: the model no longer recognises the forgotten class(es) better than chance."
        )
    utility = checks[-1]
    if utility["result"] == FAIL:
        notes.append(f"Warning: utility dropped; {utility['name']} failed ({utility['threshold']}).")
    if forget_kind == "instance" and status != "nothing to forget" and before[0]["result"] == PASS:
        notes.append(
            "The original model's RF-JSD was already within the noise floor: it did not treat the forget set "
            "differently from unseen data, so there was little to forget."
        )
    if "avg_gap" in metrics:
        notes.append(
            f"Against the retrained gold model: Avg Gap {float(metrics['avg_gap']):.4f}, JSD {float(metrics['jsd']):.5f} "
            "(lower is closer to retraining from scratch without the forget set)."
        )
    return {
        "status": status,
        "headline": headline,
        "checks": checks,
        "next_steps": steps,
        "notes": notes,
        "caveat": CAVEAT,
    }
