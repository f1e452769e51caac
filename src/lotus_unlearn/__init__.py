"""lotus-unlearn: make a trained PyTorch classifier forget chosen training data, and show that it did.

import lotus_unlearn as lu
done = lu.forget("model.safetensors", dataset="fashion-mnist", ids="ids.txt", out="runs/request-1")
print(done.verdict["status"], done.verdict["headline"])

result = lu.unlearn(model, forget, retain, val=val, method="lotus")           # the method alone, on your Datasets
metrics = lu.evaluate(result.model, {"forget": forget, "retain": retain, "test": test, "val": val}, original=model)
print(lu.verdict(metrics)["status"])
"""

# first: in the command line, Ctrl-C while the rest imports is one line and exit 130 (docs/reliability.md)
from lotus_unlearn import (
    _interrupt,  # noqa: F401  (installs that guard when imported)
    data,
    methods,
    metrics,
    models,
)
from lotus_unlearn._version import __version__
from lotus_unlearn.checkpoint import load_checkpoint, save_checkpoint
from lotus_unlearn.errors import UnlearningFailed, UserError
from lotus_unlearn.ids import training_ids
from lotus_unlearn.methods import METHODS, UnlearnResult, unlearn
from lotus_unlearn.metrics import evaluate
from lotus_unlearn.models import create_model
from lotus_unlearn.report import verdict, write_report
from lotus_unlearn.request import Forgotten, audit, forget
from lotus_unlearn.train import train_model
from lotus_unlearn.tune import tune
from lotus_unlearn.utils import tune_cpu_allocator

__all__ = [
    "METHODS",
    "Forgotten",
    "UnlearnResult",
    "UnlearningFailed",
    "UserError",
    "__version__",
    "audit",
    "create_model",
    "data",
    "evaluate",
    "forget",
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
    "verdict",
    "write_report",
]
