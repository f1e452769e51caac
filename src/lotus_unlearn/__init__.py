"""lotus-unlearn: make a trained PyTorch classifier forget chosen training data, and show that it did.

import lotus_unlearn as lu
result = lu.unlearn(model, forget, retain, val=val, method="lotus")
report = lu.evaluate(result.model, {"forget": forget, "retain": retain, "test": test, "val": val},
                     original=model)
"""

from lotus_unlearn import data, methods, metrics, models
from lotus_unlearn._version import __version__
from lotus_unlearn.checkpoint import load_checkpoint, save_checkpoint
from lotus_unlearn.errors import UnlearningFailed, UserError
from lotus_unlearn.ids import training_ids
from lotus_unlearn.methods import METHODS, UnlearnResult, unlearn
from lotus_unlearn.metrics import evaluate
from lotus_unlearn.models import create_model
from lotus_unlearn.train import train_model
from lotus_unlearn.tune import tune
from lotus_unlearn.utils import tune_cpu_allocator

__all__ = [
    "METHODS",
    "UnlearnResult",
    "UnlearningFailed",
    "UserError",
    "__version__",
    "create_model",
    "data",
    "evaluate",
    "load_checkpoint",
    "methods",
    "metrics",
    "models",
    "save_checkpoint",
    "train_model",
    "training_ids",
    "tune",
    "tune_cpu_allocator",
    "unlearn",
]
