"""`evaluate`: every metric computable from what is given, from one forward pass per (model, split)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from lotus_unlearn.data.base import as_dataset
from lotus_unlearn.errors import UserError
from lotus_unlearn.metrics.classification import accuracy, per_class_accuracy
from lotus_unlearn.metrics.divergence import jsd, rf_jsd, rf_jsd_floor, rf_jsd_reference_compat, softmax, zrf
from lotus_unlearn.metrics.mia import attack_views, entropy, mia, mia_holdout_accuracy
from lotus_unlearn.metrics.predict import PredictionCache, Predictions
from lotus_unlearn.metrics.summary import avg_gap

NEEDS_GOLD = ("jsd", "avg_gap")
NEEDS_ORIGINAL = ("rf_jsd",)


def random_init_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of `model` with every layer re-initialised (seeded): the "incompetent teacher" of ZRF."""
    rand = copy.deepcopy(model)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    for m in rand.modules():
        if hasattr(m, "reset_parameters") and m is not rand:
            m.reset_parameters()
    torch.random.set_rng_state(state)
    return rand


def _scalars(p: Mapping[str, Predictions], nonmember: torch.Tensor) -> dict[str, float]:
    out = {f"acc_{name}": accuracy(pred.logits, pred.labels) for name, pred in p.items()}
    out["mia"] = mia(p["retain"].logits, nonmember, p["forget"].logits)
    return out


def _nonmember(p: Mapping[str, Predictions]) -> torch.Tensor:
    return torch.cat([p["test"].logits] + ([p["val"].logits] if "val" in p else []))


def _entropy_hist(logits: torch.Tensor, bins: np.ndarray) -> dict[str, Any]:
    h = entropy(logits).numpy()
    return {
        "mean": float(h.mean()),
        "median": float(np.median(h)),
        "counts": np.histogram(h, bins)[0].tolist(),
    }


def evaluate(
    model: nn.Module,
    splits: Mapping[str, Any],
    original: nn.Module | None = None,
    gold: nn.Module | None = None,
    *,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    cache: PredictionCache | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of `model` on splits "forget", "retain", "test" (+ optional "val"); with `original`, RF-JSD
    and the original's own metrics; with `gold`, JSD and Avg Gap. Non-scalars live under "diagnostics"."""
    missing = [k for k in ("forget", "retain", "test") if k not in splits]
    if missing:
        raise UserError(f"evaluate needs splits forget, retain and test; missing {', '.join(missing)}")
    unknown = sorted(set(splits) - {"forget", "retain", "test", "val"})
    if unknown:
        raise UserError(f"unknown split names {', '.join(unknown)}; use forget, retain, test and val")
    data = {k: as_dataset(v, f"{k} split") for k, v in splits.items()}
    cache = cache or PredictionCache()

    def run(m: nn.Module) -> dict[str, Predictions]:
        return {k: cache.get(m, d, batch_size=batch_size, device=device) for k, d in data.items()}

    preds = run(model)
    num_classes = preds["forget"].logits.shape[1]
    nonmember = _nonmember(preds)
    report: dict[str, Any] = _scalars(preds, nonmember)
    rand_forget = cache.get(random_init_copy(model, seed), data["forget"], batch_size=batch_size, device=device)
    report["zrf"] = zrf(preds["forget"].logits, rand_forget.logits)

    bins = np.linspace(0.0, float(np.log(num_classes)), 31)
    diag: dict[str, Any] = {
        "per_class_acc": {
            k: per_class_accuracy(preds[k].logits, preds[k].labels, num_classes) for k in ("forget", "test")
        },
        "entropy_bins": bins.tolist(),
        "entropy": {k: _entropy_hist(preds[k].logits, bins) for k in ("forget", "retain", "test")},
        "mia_attack_holdout_acc": mia_holdout_accuracy(preds["retain"].logits, nonmember),
        "attack": attack_views(
            preds["forget"].logits, preds["forget"].labels, preds["test"].logits, preds["test"].labels
        ),
        "true_class_confidence_forget": softmax(preds["forget"].logits)
        .gather(1, preds["forget"].labels.view(-1, 1))
        .squeeze(1)
        .mean()
        .item(),
        "needs_gold": [] if gold is not None else list(NEEDS_GOLD),
        "needs_original": [] if original is not None else list(NEEDS_ORIGINAL),
        "sizes": {k: len(d) for k, d in data.items()},
    }

    def rf(p_test: Predictions, p_forget: Predictions, compat: bool = False) -> float:
        fn = rf_jsd_reference_compat if compat else rf_jsd
        return fn(
            original_test_logits=p_test.logits,
            test_labels=p_test.labels,
            unlearned_forget_logits=p_forget.logits,
            forget_labels=p_forget.labels,
        )

    if original is not None:
        po = run(original)
        report["rf_jsd"] = rf(po["test"], preds["forget"])
        diag["rf_jsd_reference_compat_x1e4"] = 1e4 * rf(po["test"], preds["forget"], compat=True)
        orig = _scalars(po, _nonmember(po))
        orig["rf_jsd"] = rf(po["test"], po["forget"])
        report.update({f"original_{k}": v for k, v in orig.items()})
        if "val" in po:
            diag["rf_jsd_floor"] = rf_jsd_floor(
                original_val_logits=po["val"].logits,
                val_labels=po["val"].labels,
                original_test_logits=po["test"].logits,
                test_labels=po["test"].labels,
                forget_labels=preds["forget"].labels,
                seed=seed,
            )
        diag["original_entropy"] = {k: _entropy_hist(po[k].logits, bins) for k in ("forget", "retain", "test")}
        diag["original_true_class_confidence_forget"] = (
            softmax(po["forget"].logits).gather(1, po["forget"].labels.view(-1, 1)).squeeze(1).mean().item()
        )
    if gold is not None:
        pg = run(gold)
        report["jsd"] = jsd(softmax(preds["forget"].logits), softmax(pg["forget"].logits))
        gold_metrics = _scalars(pg, _nonmember(pg))
        report["avg_gap"] = avg_gap(report, gold_metrics)
        if original is not None:
            gold_metrics["rf_jsd"] = rf(po["test"], pg["forget"])
        report.update({f"gold_{k}": v for k, v in gold_metrics.items()})
    report["diagnostics"] = diag
    return report
