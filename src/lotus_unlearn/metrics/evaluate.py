"""`evaluate`: every metric computable from what is given, from one forward pass per (model, split)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from lotus_unlearn.data.base import as_dataset
from lotus_unlearn.errors import UserError
from lotus_unlearn.inputs import check_items, check_module, input_error
from lotus_unlearn.metrics.checks import check_logits
from lotus_unlearn.metrics.classification import accuracy, per_class_accuracy
from lotus_unlearn.metrics.divergence import (
    jsd,
    jsd_reference_compat,
    rf_jsd,
    rf_jsd_floor,
    rf_jsd_reference_compat,
    softmax,
    zrf,
    zrf_reference_compat,
)
from lotus_unlearn.metrics.mia import (
    _entropy,
    _loss,
    attack_views_from_scores,
    fit_entropy_attack,
    member_rate,
    mia_holdout_from_scores,
)
from lotus_unlearn.metrics.predict import PredictionCache, Predictions, data_fingerprint, model_fingerprint
from lotus_unlearn.metrics.rfgap import rf_gap_of
from lotus_unlearn.metrics.summary import avg_gap

SPLITS = ("forget", "retain", "test", "val")
NEEDS_GOLD = ("jsd", "avg_gap", "gold_rf_jsd", "gold_rf_gap")
NEEDS_ORIGINAL = (
    "rf_jsd",
    "original_rf_jsd",
    "gold_rf_jsd",
    "rf_jsd_floor",
    "rf_gap",
    "original_rf_gap",
    "gold_rf_gap",
)
NEEDS_BOTH = ("gold_rf_jsd", "gold_rf_gap")
ENTROPY_BINS = 30
CONFIDENCE_BINS = 20


def random_init_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A randomly initialised model of the same architecture (the "incompetent teacher" of ZRF), in eval mode
    on the model's device. Built-in models are rebuilt from their `lotus_spec` with their own initialisation;
    others are deep-copied and re-initialised. Seeded; the global RNG state is left untouched."""
    from lotus_unlearn.models.registry import MODELS, create_model, reinitialized_copy

    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    spec = getattr(model, "lotus_spec", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(spec, dict) and spec.get("name") in MODELS:
            rand = create_model(spec["name"], **spec["kwargs"])
        else:
            rand = reinitialized_copy(model, seed)
    return rand.to(device).eval()


class _Scores:
    """Per-split entropies and losses of one model's predictions, each computed once."""

    def __init__(self, preds: Mapping[str, Predictions]) -> None:
        self.preds = preds
        self._h: dict[str, np.ndarray] = {}
        self._loss: dict[str, np.ndarray] = {}
        self._attack: Any = None

    def mia_attack(self) -> Any:
        """The entropy attack of `mia`, fitted once per model."""
        if self._attack is None:
            self._attack = fit_entropy_attack(self.h("retain"), self.nonmember_h())
        return self._attack

    def h(self, split: str) -> np.ndarray:
        if split not in self._h:
            self._h[split] = _entropy(self.preds[split].logits)
        return self._h[split]

    def loss(self, split: str) -> np.ndarray:
        if split not in self._loss:
            self._loss[split] = _loss(self.preds[split].logits, self.preds[split].labels)
        return self._loss[split]

    def nonmember_h(self) -> np.ndarray:
        return np.concatenate([self.h("test")] + ([self.h("val")] if "val" in self.preds else []))

    def scalars(self) -> dict[str, float]:
        """acc_<split> for each split, then mia (members = retain, non-members = test ∪ val)."""
        out = {f"acc_{k}": accuracy(p.logits, p.labels) for k, p in self.preds.items()}
        out["mia"] = member_rate(self.mia_attack(), self.h("forget"))
        return out

    def entropy_hist(self, bins: np.ndarray) -> dict[str, dict[str, Any]]:
        out = {}
        for k in ("forget", "retain", "test"):
            h = np.clip(self.h(k), bins[0], bins[-1])
            out[k] = {
                "mean": float(h.mean()),
                "median": float(np.median(h)),
                "counts": np.histogram(h, bins)[0].tolist(),
            }
        return out

    def attack(self) -> dict[str, float]:
        return attack_views_from_scores(self.h("forget"), self.loss("forget"), self.h("test"), self.loss("test"))

    def test_member_rate(self) -> float:
        """Share of test samples the `mia` attack calls members: the level the forget set's score should match."""
        return member_rate(self.mia_attack(), self.h("test"))

    def diagnostics(self, bins: np.ndarray, prefix: str = "") -> dict[str, Any]:
        """The per-model diagnostics, keys prefixed ("", "original_", "gold_")."""
        forget = self.preds["forget"]
        out = {
            "per_class_acc": {
                k: per_class_accuracy(self.preds[k].logits, self.preds[k].labels) for k in ("forget", "test")
            },
            "entropy": self.entropy_hist(bins),
            "mia_attack_holdout_acc": mia_holdout_from_scores(self.h("retain"), self.nonmember_h()),
            "mia_test_rate": self.test_member_rate(),
            "attack": self.attack(),
            "true_class_confidence_forget": _true_class_confidence(forget),
            "true_class_confidence_forget_hist": _true_class_confidence_hist(forget),
        }
        return {prefix + k: v for k, v in out.items()}


def _true_class_confidence_hist(p: Predictions) -> list[int]:
    """Counts of softmax(logits)[true class] on CONFIDENCE_BINS equal bins of [0, 1]."""
    conf = softmax(p.logits).gather(1, p.labels.view(-1, 1)).flatten().double().numpy()
    return np.histogram(conf, np.linspace(0.0, 1.0, CONFIDENCE_BINS + 1))[0].tolist()


def _true_class_confidence(p: Predictions) -> float:
    return float(softmax(p.logits).gather(1, p.labels.view(-1, 1)).mean())


def _check_consistent(name: str, preds: Mapping[str, Predictions], reference: Mapping[str, Predictions] | None) -> None:
    """Finite logits, labels in range, one class count across splits and models."""
    for split, p in preds.items():
        check_logits(p.logits, p.labels, name=f"{name}'s logits on the {split} split")
    widths = {split: p.logits.shape[1] for split, p in preds.items()}
    if reference is not None:
        widths["reference"] = next(iter(reference.values())).logits.shape[1]
    if len(set(widths.values())) > 1:
        raise UserError(
            f"{name} gives different numbers of classes per split ({widths}); compare models with one head size"
        )


def evaluate(
    model: nn.Module,
    splits: Mapping[str, Any],
    original: nn.Module | None = None,
    gold: nn.Module | None = None,
    *,
    batch_size: int | None = None,
    device: str | torch.device | None = None,
    amp: bool | None = False,
    cache: PredictionCache | None = None,
    random_model: nn.Module | None = None,
    seed: int = 0,
    n_boot: int = 200,
) -> dict[str, Any]:
    """Evaluate `model` on the splits "forget", "retain", "test" (and optional "val").

    Scalars, always: acc_forget acc_retain acc_test [acc_val] mia zrf. With `original`: rf_jsd, rf_gap,
    original_acc_*, original_mia, original_rf_jsd, original_rf_gap. With `gold`: jsd, avg_gap, gold_acc_*,
    gold_mia, and gold_rf_jsd / gold_rf_gap when `original` is also given. Non-scalars live under "diagnostics".
    RF-Gap (`metrics.rfgap`) takes its unseen data from "val" (from "test" when there is no "val"); its terms are
    `diagnostics.rf_gap_terms`.

    Each model runs once per split (batched, no gradients), and the models share one pass over each split, so
    an image folder is decoded once per evaluation whatever the number of models; `cache` shares passes across
    calls. ZRF compares
    with `random_model`, by default a seeded random initialisation of `model`'s architecture. Inference runs in
    float32 unless `amp` is True or None (bf16 autocast on CUDA): bf16 logits can move small JSD values.
    The RF-JSD noise floor (diagnostics) needs `original` and a "val" split; `seed` seeds it and the random model.
    """
    missing = [k for k in ("forget", "retain", "test") if k not in splits]
    if missing:
        raise UserError(f"evaluate needs splits forget, retain and test; missing {', '.join(missing)}")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise UserError(f"unknown split names {', '.join(unknown)}; use forget, retain, test and val")
    data = {k: as_dataset(splits[k], f"{k} split") for k in SPLITS if k in splits}
    for k, d in data.items():
        check_items(d, f"{k} split")
    for what, m in {"model": model, "original": original, "gold": gold, "random_model": random_model}.items():
        if m is not None or what == "model":
            check_module(m, what)
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise UserError(f"n_boot must be a positive number of bootstrap draws, got {n_boot!r}")
    data_keys = {k: data_fingerprint(d) for k, d in data.items()}
    cache = cache if cache is not None else PredictionCache()
    opts = {"batch_size": batch_size, "device": device, "amp": amp}
    rand = random_model if random_model is not None else random_init_copy(model, seed)
    together = [m for m in (model, original, gold) if m is not None]
    model_keys = {id(m): model_fingerprint(m) for m in [*together, rand]}
    for k, d in data.items():  # one pass per split for every model: each batch is loaded (decoded) once
        group = [*together, rand] if k == "forget" else together
        try:
            cache.get_many(group, d, model_keys=[model_keys[id(m)] for m in group], data_key=data_keys[k], **opts)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:  # e.g. inputs of a shape it cannot take
            if isinstance(exc, UserError):
                raise
            names = "the model" if len(together) == 1 else "the model, original or gold model"
            raise input_error(exc, names, f"the {k} split's inputs") from exc

    def run(
        m: nn.Module, name: str, names: tuple[str, ...] = tuple(data), reference: dict[str, Predictions] | None = None
    ) -> dict[str, Predictions]:
        """`m`'s predictions on the named splits (from the cache filled above)."""
        key = model_keys[id(m)]
        out = {k: cache.get(m, data[k], model_key=key, data_key=data_keys[k], **opts) for k in names}
        _check_consistent(name, out, reference)
        return out

    preds = run(model, "model")
    num_classes = preds["forget"].logits.shape[1]
    scores = _Scores(preds)
    report: dict[str, Any] = scores.scalars()
    rand_forget = run(rand, "random_model", ("forget",), preds)["forget"]
    report["zrf"] = zrf(preds["forget"].logits, rand_forget.logits)

    bins = np.linspace(0.0, float(np.log(num_classes)), ENTROPY_BINS + 1)
    diag: dict[str, Any] = {
        "sizes": {k: len(d) for k, d in data.items()},
        "entropy_bins": bins.tolist(),
        **scores.diagnostics(bins),
        "rf_jsd_floor": None,
        "needs_gold": []
        if gold is not None
        else [k for k in NEEDS_GOLD if k not in NEEDS_BOTH or original is not None],
        "needs_original": [] if original is not None else list(NEEDS_ORIGINAL),
    }

    def rf(test: Predictions, forget: Predictions, compat: bool = False) -> float:
        fn = rf_jsd_reference_compat if compat else rf_jsd
        return fn(
            original_test_logits=test.logits,
            test_labels=test.labels,
            unlearned_forget_logits=forget.logits,
            forget_labels=forget.labels,
        )

    if original is not None:
        po = run(original, "original", reference=preds)
        report["rf_jsd"] = rf(po["test"], preds["forget"])
        so = _Scores(po)
        orig = so.scalars()
        orig["rf_jsd"] = rf(po["test"], po["forget"])
        report.update({f"original_{k}": v for k, v in orig.items()})
        diag["rf_jsd_reference_compat_x1e4"] = 1e4 * rf(po["test"], preds["forget"], compat=True)
        if "val" in po:
            try:
                diag["rf_jsd_floor"] = rf_jsd_floor(
                    original_val_logits=po["val"].logits,
                    val_labels=po["val"].labels,
                    original_test_logits=po["test"].logits,
                    test_labels=po["test"].labels,
                    forget_labels=preds["forget"].labels,
                    n_boot=n_boot,
                    seed=seed,
                )
            except UserError as exc:  # a diagnostic: report why it is missing instead of failing the evaluation
                diag["rf_jsd_floor_error"] = str(exc)
        diag["original_zrf"] = zrf(po["forget"].logits, rand_forget.logits)
        diag.update(so.diagnostics(bins, "original_"))
    if gold is not None:
        pg = run(gold, "gold", reference=preds)
        report["jsd"] = jsd(softmax(preds["forget"].logits), softmax(pg["forget"].logits))
        sg = _Scores(pg)
        gold_metrics = sg.scalars()
        report["avg_gap"] = avg_gap(report, gold_metrics)
        if original is not None:
            gold_metrics["rf_jsd"] = rf(po["test"], pg["forget"])
        report.update({f"gold_{k}": v for k, v in gold_metrics.items()})
        diag["jsd_reference_compat_x1e4"] = 1e4 * jsd_reference_compat(
            softmax(preds["forget"].logits), softmax(pg["forget"].logits)
        )
        diag["zrf_reference_compat"] = zrf_reference_compat(preds["forget"].logits, pg["forget"].logits)
        diag["gold_zrf"] = zrf(pg["forget"].logits, rand_forget.logits)
        diag.update(sg.diagnostics(bins, "gold_"))
    if original is not None:
        _add_rf_gap(report, diag, preds, po, pg if gold is not None else None, seed)
    report["diagnostics"] = diag
    return report


def _add_rf_gap(
    report: dict[str, Any],
    diag: dict[str, Any],
    preds: Mapping[str, Predictions],
    po: Mapping[str, Predictions],
    pg: Mapping[str, Predictions] | None,
    seed: int,
) -> None:
    """rf_gap of the model, original_rf_gap and gold_rf_gap, all against the original's targets on the same rows;
    a forget class without unseen samples leaves them out and says why in `diagnostics.rf_gap_error`."""
    unseen = "val" if "val" in preds else "test"
    retain_classes = torch.unique(preds["retain"].labels)

    def terms(p: Mapping[str, Predictions]) -> dict[str, float]:
        return rf_gap_of(p, po, unseen=unseen, retain_classes=retain_classes, seed=seed)

    diag["rf_gap_unseen"] = unseen
    try:
        diag["rf_gap_terms"] = terms(preds)
    except UserError as exc:  # e.g. a forget class without validation samples: report why instead of failing
        diag["rf_gap_error"] = str(exc)
        return
    report["rf_gap"] = diag["rf_gap_terms"]["rf_gap"]
    report["original_rf_gap"] = terms(po)["rf_gap"]
    if pg is not None:
        report["gold_rf_gap"] = terms(pg)["rf_gap"]
