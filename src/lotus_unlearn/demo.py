"""The embedded default end to end: train -> forget 10% per class -> retrain gold -> LoTUS -> evaluate -> report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from lotus_unlearn.metrics import reference_avg_gap
from lotus_unlearn.outputs import check_output
from lotus_unlearn.pipeline import ForgetRequest, prepare, train_cached
from lotus_unlearn.report import rich_table
from lotus_unlearn.request import forget

# A small CNN on a 10k-sample subset, trained without augmentation long enough to memorise its training set
# (train - test accuracy >= 5 points), so that there is something to forget.
DEMO = {
    "dataset": "fashion-mnist",
    "train_size": 10_000,
    "forget_fraction": 0.1,
    "seed": 0,
    "model": "cnn",
    "model_kwargs": {"width": 16, "hidden": 128},
    "train": {"epochs": 20, "lr": 0.05, "batch_size": 128, "augment": False, "warmup_epochs": 1.0},
    "lotus": {},
}


def run_demo(
    out: str | Path = "runs/demo",
    *,
    device: str = "auto",
    data_root: str | None = None,
    use_cache: bool = True,
    console: Console | None = None,
    config: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the demo, print its table and write `out` (an existing run there only with `overwrite`, which keeps
    it as an earlier generation); returns the report."""
    cfg = {**DEMO, **(config or {})}
    console = console or Console()
    check_output(out, overwrite)
    seed = cfg["seed"]
    exp = prepare(
        cfg["dataset"],
        ForgetRequest(fraction=cfg["forget_fraction"]),
        seed=seed,
        data_root=data_root,
        train_size=cfg["train_size"],
    )
    console.print(
        f"[bold]{cfg['dataset']}[/]: {len(exp.bundle.train)} training samples, forgetting "
        f"{len(exp.forget)} ({exp.split.description}); val {len(exp.bundle.val)}, test {len(exp.bundle.test)}"
    )
    common = {
        "model": cfg["model"],
        "model_kwargs": cfg["model_kwargs"],
        "seed": seed,
        "train_size": cfg["train_size"],
        "use_cache": use_cache,
    }
    train = {**cfg["train"], "device": device}
    console.print("training the original model (cached after the first run) ...")
    original, o_meta = train_cached(exp.bundle, exp.bundle.train, train=train, role="original", **common)
    console.print("retraining the gold model on the retain set only (the costly reference a user never has) ...")
    gold, g_meta = train_cached(exp.bundle, exp.retain, train=train, role="gold", **common)
    console.print("unlearning with LoTUS ...")
    done = forget(
        original,
        dataset=exp.bundle,
        fraction=cfg["forget_fraction"],
        hparams=cfg["lotus"],
        gold=gold,
        out=out,
        overwrite=overwrite,
        train_size=cfg["train_size"],
        seed=seed,
        device=device,
        echo=lambda text: console.print(text, highlight=False, markup=False, soft_wrap=True),
        report_extra={
            "demo_config": cfg,
            "training": {"original": _strip_log(o_meta), "gold": _strip_log(g_meta)},
        },
    )
    metrics = done.metrics
    table = rich_table(metrics, "LoTUS", title="Fashion-MNIST demo: forget 10% of each class")
    table.add_row("time (s)", f"{o_meta['seconds']:.1f}", f"{g_meta['seconds']:.1f}", f"{done.result.seconds:.1f}")
    console.print(table)
    gap = metrics["original_acc_retain"] - metrics["original_acc_test"]
    original_gap = reference_avg_gap(metrics, "original_")
    console.print(
        f"original memorisation: retain acc − test acc = {gap:+.4f}; "
        f"Avg Gap to gold: original {original_gap:.4f}, LoTUS {metrics['avg_gap']:.4f}"
    )
    v = done.verdict
    console.print(f"verdict: {v['status']}. {v['headline']}", highlight=False, markup=False)
    console.print(f"wrote {out}/" + ", ".join(f.name for f in done.files))
    return done.report


def _strip_log(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in ("log", "versions")}
