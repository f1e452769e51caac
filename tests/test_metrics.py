"""Metric functions on hand-made logits; expected values are computed by hand / in closed form here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from lotus_unlearn.errors import UserError
from lotus_unlearn.metrics import (
    accuracy,
    attack_views,
    avg_gap,
    avg_gap_seeds,
    class_mean_probs,
    entropy,
    jsd,
    jsd_reference_compat,
    mia,
    mia_holdout_accuracy,
    per_class_accuracy,
    predict,
    reference_avg_gap,
    rf_jsd,
    rf_jsd_floor,
    rf_jsd_reference_compat,
    zrf,
    zrf_reference_compat,
)
from lotus_unlearn.metrics.evaluate import random_init_copy

LN2 = math.log(2)


def logits_of(*rows: list[float]) -> torch.Tensor:
    """Logits whose softmax is exactly the given probability rows (log-probabilities)."""
    return torch.tensor(rows, dtype=torch.float64).log()


def f64(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def textbook_jsd(p: list[float], q: list[float]) -> float:
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def compat_by_hand(p: list[list[float]], q: list[list[float]]) -> float:
    """Spec §2.2, reference formula, written with plain Python loops."""
    p = [[max(v, 1e-8) for v in row] for row in p]
    q = [[max(v, 1e-8) for v in row] for row in q]
    sp, sq = sum(map(sum, p)), sum(map(sum, q))
    p = [[v / sp for v in row] for row in p]
    q = [[v / sq for v in row] for row in q]
    total = 0.0
    for rp, rq in zip(p, q, strict=True):
        for a, b in zip(rp, rq, strict=True):
            m = (a + b) / 2
            total += 0.5 * (m * math.log(m / a) + m * math.log(m / b))
    return total / len(p)


# ---------------------------------------------------------------- accuracy


def test_accuracy_counts_argmax_hits():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.0, 5.0]])
    labels = torch.tensor([0, 2, 0, 2])  # argmax 0, 1, 0, 2 -> 3 of 4 right
    assert accuracy(logits, labels) == pytest.approx(0.75)


def test_per_class_accuracy_marks_absent_classes():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.0, 5.0]])
    labels = torch.tensor([0, 2, 0, 2])
    assert per_class_accuracy(logits, labels) == [1.0, None, 0.5]


# ---------------------------------------------------------------- JSD


def test_jsd_zero_on_equal_rows():
    p = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    assert jsd(p, p) == pytest.approx(0.0, abs=1e-12)


def test_jsd_is_ln2_on_disjoint_one_hots():
    assert jsd(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 1.0]])) == pytest.approx(LN2)


def test_jsd_hand_computed_and_symmetric():
    # p = (1, 0), q = (1/2, 1/2): m = (3/4, 1/4), KL(p||m) = ln 4/3, KL(q||m) = ½ ln 4/3, JSD = ¾ ln 4/3
    p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])
    assert jsd(p, q) == pytest.approx(0.75 * math.log(4 / 3))
    assert jsd(q, p) == pytest.approx(0.75 * math.log(4 / 3))


def test_jsd_is_the_mean_over_rows():
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]])
    q = torch.tensor([[0.5, 0.5], [0.0, 1.0], [0.6, 0.4]])
    expected = (0.0 + LN2 + textbook_jsd([0.2, 0.8], [0.6, 0.4])) / 3
    assert jsd(p, q) == pytest.approx(expected)


def test_jsd_reference_compat_matches_its_formula():
    p = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]
    q = [[0.3, 0.3, 0.4], [0.0, 0.5, 0.5]]  # a zero entry: the 1e-8 clamp matters
    assert jsd_reference_compat(f64(p), f64(q)) == pytest.approx(compat_by_hand(p, q), rel=1e-9)


def test_jsd_reference_compat_times_n_is_the_reversed_kl_mean():
    p = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.25, 0.25, 0.5]]
    q = [[0.3, 0.3, 0.4], [0.2, 0.5, 0.3], [0.6, 0.2, 0.2]]
    reversed_form = []
    for rp, rq in zip(p, q, strict=True):
        m = [(a + b) / 2 for a, b in zip(rp, rq, strict=True)]
        reversed_form.append(0.5 * (kl(m, rp) + kl(m, rq)))
    value = jsd_reference_compat(f64(p), f64(q))
    assert value * len(p) == pytest.approx(sum(reversed_form) / len(p), rel=1e-9)
    assert value != pytest.approx(jsd(f64(p), f64(q)), rel=1e-2)  # it is not the textbook JSD


def test_jsd_reference_compat_is_unbounded_on_disjoint_rows():
    # clamp gives P = (1, 1e-8)/(1 + 1e-8), M = (½, ½): KL(M||P) = ½ ln(½(1+1e-8)) + ½ ln(½(1+1e-8)/1e-8)
    expected = 0.5 * math.log(0.5 * (1 + 1e-8)) + 0.5 * math.log(0.5 * (1 + 1e-8) / 1e-8)
    value = jsd_reference_compat(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert value == pytest.approx(expected, rel=1e-9)
    assert value > 8 * LN2


# ---------------------------------------------------------------- class means and RF-JSD


def test_class_mean_probs_tiny_example():
    logits = logits_of([0.5, 0.25, 0.25], [0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3])
    means = class_mean_probs(logits, torch.tensor([0, 0, 2]), 3)
    assert means[0].tolist() == pytest.approx([0.3, 0.225, 0.475])
    assert torch.isnan(means[1]).all()
    assert means[2].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])


def test_rf_jsd_zero_when_forget_and_test_are_the_same():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([0, 1, 2, 0])
    value = rf_jsd(
        original_test_logits=logits, test_labels=labels, unlearned_forget_logits=logits, forget_labels=labels
    )
    assert value == pytest.approx(0.0, abs=1e-12)


def test_rf_jsd_hand_computed_and_ignores_absent_classes():
    # forget has class 0 only: rows (0.9, 0.1) and (0.7, 0.3) -> mean (0.8, 0.2); test class 0 mean (0.5, 0.5)
    forget = logits_of([0.9, 0.1], [0.7, 0.3])
    test = logits_of([0.5, 0.5], [0.2, 0.8])
    kwargs = {
        "unlearned_forget_logits": forget,
        "forget_labels": torch.tensor([0, 0]),
        "test_labels": torch.tensor([0, 1]),
    }
    expected = textbook_jsd([0.8, 0.2], [0.5, 0.5])
    assert rf_jsd(original_test_logits=test, **kwargs) == pytest.approx(expected)
    other_class_1 = logits_of([0.5, 0.5], [0.99, 0.01])  # only the class-1 test row changes
    assert rf_jsd(original_test_logits=other_class_1, **kwargs) == pytest.approx(expected)


def test_rf_jsd_averages_over_forget_classes():
    forget = logits_of([0.9, 0.1], [0.4, 0.6])
    test = logits_of([0.5, 0.5], [0.2, 0.8])
    value = rf_jsd(
        original_test_logits=test,
        test_labels=torch.tensor([0, 1]),
        unlearned_forget_logits=forget,
        forget_labels=torch.tensor([0, 1]),
    )
    assert value == pytest.approx((textbook_jsd([0.9, 0.1], [0.5, 0.5]) + textbook_jsd([0.4, 0.6], [0.2, 0.8])) / 2)


def test_rf_jsd_reference_compat_uses_the_stacked_class_means():
    forget = logits_of([0.9, 0.1], [0.4, 0.6], [0.8, 0.2])
    test = logits_of([0.5, 0.5], [0.2, 0.8])
    value = rf_jsd_reference_compat(
        original_test_logits=test,
        test_labels=torch.tensor([0, 1]),
        unlearned_forget_logits=forget,
        forget_labels=torch.tensor([0, 1, 0]),
    )
    assert value == pytest.approx(compat_by_hand([[0.85, 0.15], [0.4, 0.6]], [[0.5, 0.5], [0.2, 0.8]]), rel=1e-9)


def test_rf_jsd_floor_is_zero_when_every_draw_equals_the_test_mean():
    val = logits_of([0.6, 0.4], [0.6, 0.4], [0.6, 0.4], [0.3, 0.7])
    test = logits_of([0.6, 0.4], [0.3, 0.7])
    floor = rf_jsd_floor(
        original_val_logits=val,
        val_labels=torch.tensor([0, 0, 0, 1]),
        original_test_logits=test,
        test_labels=torch.tensor([0, 1]),
        forget_labels=torch.tensor([0, 0, 1]),
    )
    assert floor["mean"] == pytest.approx(0.0, abs=1e-12)
    assert floor["high"] == pytest.approx(0.0, abs=1e-12)


def test_rf_jsd_floor_bootstrap_of_a_two_row_pool():
    # one forget sample of class 0; its draws are row a or row b, each with probability ½
    a, b, t = [0.9, 0.1], [0.2, 0.8], [0.5, 0.5]
    ja, jb = textbook_jsd(a, t), textbook_jsd(b, t)
    kwargs = {
        "original_val_logits": logits_of(a, b),
        "val_labels": torch.tensor([0, 0]),
        "original_test_logits": logits_of(t),
        "test_labels": torch.tensor([0]),
        "forget_labels": torch.tensor([0]),
        "n_boot": 400,
    }
    floor = rf_jsd_floor(**kwargs, seed=3)
    assert floor["low"] == pytest.approx(min(ja, jb))
    assert floor["high"] == pytest.approx(max(ja, jb))
    assert floor["mean"] == pytest.approx((ja + jb) / 2, abs=4 * 0.5 * abs(ja - jb) / math.sqrt(400))
    assert rf_jsd_floor(**kwargs, seed=3) == floor  # seeded


# ---------------------------------------------------------------- ZRF


def test_zrf_hand_computed():
    assert zrf(logits_of([0.5, 0.5]), logits_of([0.5, 0.5])) == pytest.approx(1.0)
    assert zrf(logits_of([0.8, 0.2]), logits_of([0.5, 0.5])) == pytest.approx(1 - textbook_jsd([0.8, 0.2], [0.5, 0.5]))


def test_zrf_near_one_for_a_random_model(digits):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    a = predict(random_init_copy(net, seed=1), digits.test).logits
    b = predict(random_init_copy(net, seed=2), digits.test).logits
    assert not torch.equal(a, b)
    assert zrf(a, b) > 0.95


def test_zrf_reference_compat_is_one_minus_compat_jsd_against_gold():
    u, g = [[0.7, 0.3], [0.1, 0.9]], [[0.5, 0.5], [0.4, 0.6]]
    expected = 1 - compat_by_hand(u, g)
    assert zrf_reference_compat(logits_of(*u), logits_of(*g)) == pytest.approx(expected, rel=1e-9)


# ---------------------------------------------------------------- MIA


def confident(n: int) -> torch.Tensor:
    return torch.tensor([[8.0, 0.0, 0.0]]).repeat(n, 1)


def uniform(n: int) -> torch.Tensor:
    return torch.zeros(n, 3)


def test_entropy_closed_form():
    h = entropy(logits_of([0.5, 0.5], [1.0 - 1e-12, 1e-12]))
    assert h[0].item() == pytest.approx(LN2)
    assert h[1].item() == pytest.approx(0.0, abs=1e-9)


def test_mia_on_separable_entropies():
    retain, nonmember = confident(50), uniform(50)
    assert mia(retain, nonmember, confident(10)) == 1.0
    assert mia(retain, nonmember, uniform(10)) == 0.0
    assert mia(retain, nonmember, torch.cat([confident(3), uniform(7)])) == pytest.approx(0.3)
    assert mia_holdout_accuracy(retain, nonmember) == 1.0


def test_mia_on_unseen_forget_set_matches_the_test_member_rate(digits, digits_split, digits_gold):
    """digits_gold never saw the forget split: the attack calls forget samples members about as often as test
    samples. The test member rate comes from an independent fit of the same attack (balanced LR on entropy)."""
    forget, retain = digits_split
    logits = {
        k: predict(digits_gold, d).logits
        for k, d in [("f", forget), ("r", retain), ("t", digits.test), ("v", digits.val)]
    }
    h = {k: entropy(v).numpy().reshape(-1, 1) for k, v in logits.items()}
    x = np.concatenate([h["r"], h["t"], h["v"]])
    y = np.concatenate([np.ones(len(h["r"])), np.zeros(len(h["t"]) + len(h["v"]))])
    attack = LogisticRegression(class_weight="balanced", random_state=42).fit(x, y)
    test_rate = attack.predict(h["t"]).mean()
    score = mia(logits["r"], torch.cat([logits["t"], logits["v"]]), logits["f"])
    # 109 forget samples: a binomial share has standard error <= 0.048; allow 2.5 of them
    assert abs(score - test_rate) < 0.12
    assert score == pytest.approx(attack.predict(h["f"]).mean())


def test_attack_views_hand_ranked():
    # two classes, label 0, logits (a, 0): loss and entropy both fall as a grows. Members a = 3, 1; test a = 2, 0.
    # Ranking 3 (m) > 2 (t) > 1 (m) > 0 (t): AUC = 3/4; at FPR 0 only the a = 3 member is caught: TPR ½.
    def rows(*a: float) -> torch.Tensor:
        return torch.tensor([[v, 0.0] for v in a])

    labels = torch.zeros(2, dtype=torch.long)
    views = attack_views(rows(3.0, 1.0), labels, rows(2.0, 0.0), labels)
    assert views == pytest.approx(
        {"entropy_auc": 0.75, "entropy_tpr_at_1fpr": 0.5, "loss_auc": 0.75, "loss_tpr_at_1fpr": 0.5}
    )


# ---------------------------------------------------------------- Avg Gap

METHOD = {"mia": 0.8, "acc_forget": 0.9, "acc_retain": 1.0, "acc_test": 0.85}
GOLD = {"mia": 0.7, "acc_forget": 0.95, "acc_retain": 0.98, "acc_test": 0.86}


def test_avg_gap_hand_computed():
    # (0.1 + 0.05 + 0.02 + 0.01) / 4
    assert avg_gap(METHOD, GOLD) == pytest.approx(0.045)
    assert avg_gap({**METHOD, "zrf": 0.1}, GOLD) == pytest.approx(0.045)  # other keys do not count


def test_reference_avg_gap_reads_the_prefixed_rows_of_an_evaluate_report():
    report = {
        "avg_gap": 0.5,
        "mia": 0.0,
        **{f"original_{k}": v for k, v in METHOD.items()},
        **{f"gold_{k}": v for k, v in GOLD.items()},
        "original_rf_jsd": 0.3,
    }
    assert reference_avg_gap(report, "original_") == pytest.approx(0.045)  # the same hand-computed case
    with pytest.raises(UserError):
        reference_avg_gap({k: v for k, v in report.items() if not k.startswith("gold_")})


def test_avg_gap_seeds_both_forms():
    runs = [METHOD, {"mia": 0.6, "acc_forget": 1.0, "acc_retain": 1.0, "acc_test": 0.87}]
    golds = [GOLD, GOLD]
    # seed 1: 0.045; seed 2: (0.1 + 0.05 + 0.02 + 0.01) / 4 = 0.045
    # means: mia 0.7 (gap 0), acc_f 0.95 (0), acc_r 1.0 (0.02), acc_test 0.86 (0) -> 0.005
    out = avg_gap_seeds(runs, golds)
    assert out["per_seed"] == pytest.approx(0.045)
    assert out["per_seed_std"] == pytest.approx(0.0, abs=1e-12)
    assert out["on_means"] == pytest.approx(0.005)


# ---------------------------------------------------------------- bad input: one clear UserError

GOOD = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
Y = torch.tensor([0, 1])


def _rf(**over):
    kwargs = {"original_test_logits": GOOD, "test_labels": Y, "unlearned_forget_logits": GOOD, "forget_labels": Y}
    return rf_jsd(**{**kwargs, **over})


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: accuracy(GOOD, torch.tensor([0, 1, 2])), "rows but"),
        (lambda: accuracy(GOOD, torch.tensor([0, 3])), r"0\.\.2"),
        (lambda: accuracy(GOOD, torch.tensor([-1, 0])), r"0\.\.2"),
        (lambda: accuracy(GOOD, torch.tensor([0.0, 1.0])), "integer"),
        (lambda: accuracy(torch.tensor([[float("nan"), 0.0, 0.0], [0.0, 1.0, 0.0]]), Y), "NaN or inf"),
        (lambda: accuracy(torch.tensor([[float("inf"), 0.0, 0.0], [0.0, 1.0, 0.0]]), Y), "NaN or inf"),
        (lambda: accuracy(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), "empty"),
        (lambda: _rf(forget_labels=torch.tensor([0, 5])), r"0\.\.2"),
        (lambda: _rf(test_labels=torch.tensor([0, 7])), r"0\.\.2"),
        (
            lambda: _rf(unlearned_forget_logits=torch.zeros(0, 3), forget_labels=torch.zeros(0, dtype=torch.long)),
            "empty",
        ),
        (lambda: _rf(unlearned_forget_logits=torch.zeros(2, 4)), "same number of classes"),
        (lambda: _rf(forget_labels=torch.tensor([0, 2])), "no test samples"),
        (lambda: _rf(original_test_logits=GOOD * float("nan")), "NaN or inf"),
        (lambda: mia(GOOD, GOOD, torch.zeros(0, 3)), "empty"),
        (lambda: mia(GOOD, GOOD, torch.full((2, 3), float("nan"))), "NaN or inf"),
        (lambda: zrf(torch.zeros(0, 3), torch.zeros(0, 3)), "empty"),
        (lambda: zrf(GOOD, torch.zeros(3, 3)), "differ in shape"),
        (lambda: jsd(torch.tensor([[0.5, 0.6]]), torch.tensor([[0.5, 0.5]])), "not 1"),
        (lambda: jsd(torch.tensor([[1.5, -0.5]]), torch.tensor([[0.5, 0.5]])), "negative"),
        (lambda: jsd(torch.tensor([[2.0, 1.0]]), torch.tensor([[0.5, 0.5]])), "not 1"),
        (lambda: jsd(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.5, 0.5], [1.0, 0.0]])), "differ in shape"),
        (lambda: jsd_reference_compat(torch.tensor([[0.2, 0.2]]), torch.tensor([[0.5, 0.5]])), "not 1"),
        (lambda: class_mean_probs(GOOD, torch.tensor([0, 4]), 3), r"0\.\.2"),
        (
            lambda: rf_jsd_floor(
                original_val_logits=GOOD,
                val_labels=Y,
                original_test_logits=GOOD,
                test_labels=Y,
                forget_labels=torch.zeros(0, dtype=torch.long),
            ),
            "empty",
        ),
        (
            lambda: rf_jsd_floor(
                original_val_logits=GOOD,
                val_labels=torch.tensor([0, 0]),
                original_test_logits=GOOD,
                test_labels=Y,
                forget_labels=Y,
            ),
            "no validation samples",
        ),
        (lambda: avg_gap({"mia": 0.5}, GOLD), "missing"),
        (lambda: avg_gap_seeds([METHOD], [GOLD, GOLD]), "as many"),
    ],
)
def test_bad_input_raises_one_user_error(call, message):
    with pytest.raises(UserError, match=message):
        call()
