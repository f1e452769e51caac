"""Property tests: ranges, symmetry and identities that must hold for any input."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lotus_unlearn.metrics import (
    accuracy,
    avg_gap,
    avg_gap_seeds,
    class_mean_probs,
    jsd,
    jsd_reference_compat,
    mia,
    rf_jsd,
    zrf,
)

LN2 = math.log(2)
FAST = settings(max_examples=40, deadline=None)


@st.composite
def logit_pairs(draw, low: float = -8.0, high: float = 8.0, max_rows: int = 6, max_classes: int = 4):
    """Two (N, C) logit matrices of the same shape and N labels in 0..C-1."""
    n = draw(st.integers(1, max_rows))
    c = draw(st.integers(2, max_classes))
    elems = st.floats(low, high, allow_nan=False, allow_infinity=False, width=64)
    a = torch.from_numpy(draw(arrays(np.float64, (n, c), elements=elems)))
    b = torch.from_numpy(draw(arrays(np.float64, (n, c), elements=elems)))
    labels = torch.tensor(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    return a, b, labels


def probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits, dim=1)


@FAST
@given(logit_pairs())
def test_jsd_range_and_symmetry(pair):
    a, b, _ = pair
    p, q = probs(a), probs(b)
    value = jsd(p, q)
    assert -1e-12 <= value <= LN2 + 1e-12
    assert math.isclose(value, jsd(q, p), rel_tol=1e-9, abs_tol=1e-12)
    assert jsd(p, p) <= 1e-12


@FAST
@given(logit_pairs(low=-4.0, high=4.0))
def test_compat_times_n_is_reversed_kl_mean(pair):
    """With entries above the 1e-8 clamp, N · compat = mean_i ½[KL(m_i‖p_i) + KL(m_i‖q_i)]."""
    a, b, _ = pair
    p, q = probs(a), probs(b)
    m = (p + q) / 2
    reversed_form = 0.5 * ((m * (m / p).log()).sum(1) + (m * (m / q).log()).sum(1))
    value = jsd_reference_compat(p, q)
    assert value >= -1e-15
    assert math.isclose(value * len(p), float(reversed_form.mean()), rel_tol=1e-6, abs_tol=1e-12)


@FAST
@given(logit_pairs())
def test_rf_jsd_range_zero_on_self_and_row_order(pair):
    a, b, labels = pair
    kwargs = {"original_test_logits": a, "test_labels": labels, "forget_labels": labels}
    value = rf_jsd(unlearned_forget_logits=b, **kwargs)
    assert -1e-12 <= value <= LN2 + 1e-12
    assert rf_jsd(unlearned_forget_logits=a, **kwargs) <= 1e-12
    perm = torch.randperm(len(b), generator=torch.Generator().manual_seed(0))
    shuffled = rf_jsd(
        original_test_logits=a, test_labels=labels, unlearned_forget_logits=b[perm], forget_labels=labels[perm]
    )
    assert math.isclose(value, shuffled, rel_tol=1e-9, abs_tol=1e-12)


@FAST
@given(logit_pairs())
def test_zrf_range(pair):
    a, b, _ = pair
    assert 1 - LN2 - 1e-12 <= zrf(a, b) <= 1 + 1e-12
    assert math.isclose(zrf(a, a), 1.0)


@FAST
@given(logit_pairs())
def test_accuracy_is_a_share_of_rows(pair):
    a, _, labels = pair
    value = accuracy(a, labels)
    assert 0.0 <= value <= 1.0
    assert math.isclose(value * len(a), round(value * len(a)), abs_tol=1e-9)


@FAST
@given(logit_pairs())
def test_class_mean_probs_rows(pair):
    a, _, labels = pair
    c = a.shape[1]
    means = class_mean_probs(a, labels, c)
    present = torch.bincount(labels, minlength=c) > 0
    assert torch.allclose(means[present].sum(1), torch.ones(int(present.sum()), dtype=means.dtype))
    assert torch.isnan(means[~present]).all()


@st.composite
def three_logit_sets(draw):
    """(retain, non-member, forget) logits with one class count and their own row counts."""
    c = draw(st.integers(2, 4))
    elems = st.floats(-8.0, 8.0, allow_nan=False, allow_infinity=False, width=64)
    return [torch.from_numpy(draw(arrays(np.float64, (draw(st.integers(1, 12)), c), elements=elems))) for _ in range(3)]


@settings(max_examples=15, deadline=None)
@given(three_logit_sets())
def test_mia_is_a_share(sets):
    retain, nonmember, forget = sets
    value = mia(retain, nonmember, forget)
    assert 0.0 <= value <= 1.0
    assert math.isclose(value * len(forget), round(value * len(forget)), abs_tol=1e-9)


share = st.floats(0.0, 1.0, allow_nan=False)
rows = st.fixed_dictionaries({"mia": share, "acc_forget": share, "acc_retain": share, "acc_test": share})


@FAST
@given(rows, rows)
def test_avg_gap_is_a_symmetric_distance(a, b):
    value = avg_gap(a, b)
    assert 0.0 <= value <= 1.0
    assert math.isclose(value, avg_gap(b, a))
    assert avg_gap(a, a) == 0.0


@FAST
@given(st.lists(st.tuples(rows, rows), min_size=1, max_size=4))
def test_gap_of_means_never_exceeds_mean_of_gaps(pairs):
    """|mean(x − g)| ≤ mean |x − g| per metric (triangle inequality), so on_means ≤ per_seed."""
    runs, golds = [p[0] for p in pairs], [p[1] for p in pairs]
    out = avg_gap_seeds(runs, golds)
    assert out["on_means"] <= out["per_seed"] + 1e-12
