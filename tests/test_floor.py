"""The vectorised RF-JSD noise-floor bootstrap against direct float64 computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lotus_unlearn.errors import UserError
from lotus_unlearn.metrics import divergence, rf_jsd, rf_jsd_floor


def logits_for(labels: torch.Tensor, c: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), c, generator=g) * 2
    x[torch.arange(len(labels)), labels] += 2.0  # confident-ish on the true class
    return x


@pytest.mark.parametrize("chunk_values", [1, 1000, 1 << 18])  # one class per chunk, a few, all in one
def test_one_sample_pools_give_the_exact_rf_jsd_of_the_val_rows(chunk_values: int, monkeypatch) -> None:
    """With one validation sample per class every draw is the same, so mean = low = high = RF-JSD with the
    val rows as the forget set; uneven forget counts, an absent class and chunking exercise the bag layout."""
    monkeypatch.setattr(divergence, "_FLOOR_CHUNK_VALUES", chunk_values)
    c = 40
    val_labels = torch.arange(c)
    test_labels = torch.arange(c).repeat(2)
    val, test = logits_for(val_labels, c, 1), logits_for(test_labels, c, 2)
    forget_labels = torch.cat([torch.arange(1, c).repeat_interleave(1 + torch.arange(1, c) % 3)])  # class 0 absent
    floor = rf_jsd_floor(
        original_val_logits=val,
        val_labels=val_labels,
        original_test_logits=test,
        test_labels=test_labels,
        forget_labels=forget_labels,
        n_boot=7,
    )
    present = torch.arange(1, c)
    exact = rf_jsd(
        original_test_logits=test,
        test_labels=test_labels,
        unlearned_forget_logits=val[present],
        forget_labels=present,
    )
    assert floor["mean"] == pytest.approx(exact, rel=1e-5)
    assert floor["low"] == pytest.approx(exact, rel=1e-5) and floor["high"] == pytest.approx(exact, rel=1e-5)


def test_floor_matches_a_per_class_multinomial_bootstrap() -> None:
    """The distribution of the vectorised bootstrap equals the textbook one (a loop over draws and classes with
    multinomial counts, float64 JSD): means and quantiles agree within Monte Carlo error."""
    c, n_boot = 5, 3000
    val_labels = torch.tensor([0] * 4 + [1] * 7 + [2] * 5 + [3] * 6 + [4] * 3)
    test_labels = torch.arange(c).repeat(6)
    val, test = logits_for(val_labels, c, 3), logits_for(test_labels, c, 4)
    forget_labels = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3, 3, 3])  # class 4 absent, uneven counts
    fast = rf_jsd_floor(
        original_val_logits=val,
        val_labels=val_labels,
        original_test_logits=test,
        test_labels=test_labels,
        forget_labels=forget_labels,
        n_boot=n_boot,
        seed=5,
    )
    rng = np.random.default_rng(11)
    probs = torch.softmax(val.double(), 1)
    test_probs = torch.softmax(test.double(), 1)
    present = torch.unique(forget_labels).tolist()
    values = np.zeros(n_boot)
    for k in present:
        pool = probs[val_labels == k]
        mu_t = test_probs[test_labels == k].mean(0)
        n = int((forget_labels == k).sum())
        counts = torch.from_numpy(rng.multinomial(n, np.full(len(pool), 1 / len(pool)), size=n_boot)).double()
        mu_f = counts @ pool / n
        q = (mu_t / mu_t.sum()).expand_as(mu_f)
        m = (mu_f + q) / 2
        kl_f = (torch.xlogy(mu_f, mu_f) - torch.xlogy(mu_f, m)).sum(1)
        kl_t = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(1)
        values += (0.5 * kl_f + 0.5 * kl_t).numpy()
    values /= len(present)
    se = values.std() / np.sqrt(n_boot)
    assert abs(fast["mean"] - values.mean()) < 4 * np.sqrt(2) * se
    assert fast["low"] == pytest.approx(np.quantile(values, 0.025), rel=0.15)
    assert fast["high"] == pytest.approx(np.quantile(values, 0.975), rel=0.15)
    assert fast["n_boot"] == n_boot


def test_floor_is_seeded_and_refuses_empty_pools() -> None:
    labels = torch.arange(3).repeat(4)
    logits = logits_for(labels, 3, 0)
    args = {
        "original_val_logits": logits,
        "val_labels": labels,
        "original_test_logits": logits,
        "test_labels": labels,
        "forget_labels": torch.tensor([0, 1, 1]),
    }
    assert rf_jsd_floor(**args, seed=3) == rf_jsd_floor(**args, seed=3)
    assert rf_jsd_floor(**args, seed=3) != rf_jsd_floor(**args, seed=4)
    with pytest.raises(UserError, match=r"class 2 of the forget set has no validation samples"):
        rf_jsd_floor(**{**args, "val_labels": labels % 2, "forget_labels": torch.tensor([2])})
