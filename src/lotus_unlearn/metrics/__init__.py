"""Metrics as pure functions on logits, plus `evaluate` on top of one batched pass per (model, split)."""

from lotus_unlearn.metrics.classification import accuracy, per_class_accuracy
from lotus_unlearn.metrics.divergence import (
    class_mean_probs,
    jsd,
    jsd_reference_compat,
    rf_jsd,
    rf_jsd_floor,
    rf_jsd_reference_compat,
    zrf,
    zrf_reference_compat,
)
from lotus_unlearn.metrics.evaluate import evaluate, random_init_copy
from lotus_unlearn.metrics.mia import attack_views, cross_entropy_loss, entropy, mia, mia_holdout_accuracy
from lotus_unlearn.metrics.predict import (
    PredictionCache,
    Predictions,
    data_fingerprint,
    model_fingerprint,
    predict,
    predict_many,
)
from lotus_unlearn.metrics.rfgap import rf_gap, rf_gap_terms, unseen_accuracy, val_halves
from lotus_unlearn.metrics.summary import avg_gap, avg_gap_seeds, reference_avg_gap

__all__ = [
    "PredictionCache",
    "Predictions",
    "accuracy",
    "attack_views",
    "avg_gap",
    "avg_gap_seeds",
    "class_mean_probs",
    "cross_entropy_loss",
    "data_fingerprint",
    "entropy",
    "evaluate",
    "jsd",
    "jsd_reference_compat",
    "mia",
    "mia_holdout_accuracy",
    "model_fingerprint",
    "per_class_accuracy",
    "predict",
    "predict_many",
    "random_init_copy",
    "reference_avg_gap",
    "rf_gap",
    "rf_gap_terms",
    "rf_jsd",
    "rf_jsd_floor",
    "rf_jsd_reference_compat",
    "unseen_accuracy",
    "val_halves",
    "zrf",
    "zrf_reference_compat",
]
