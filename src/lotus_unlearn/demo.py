"""The embedded default end to end: train -> forget 10% per class -> retrain gold -> LoTUS -> evaluate -> report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from lotus_unlearn.checkpoint import save_checkpoint
from lotus_unlearn.data import save_split
from lotus_unlearn.history import DeletionHistory, TrainSubset, report_record
from lotus_unlearn.methods import unlearn
from lotus_unlearn.metrics import evaluate, reference_avg_gap
from lotus_unlearn.outputs import check_output, new_generation
from lotus_unlearn.pipeline import ForgetRequest, prepare, train_cached
from lotus_unlearn.report import build_report, rich_table, write_report
from lotus_unlearn.utils import state_dict_hash

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
    result = unlearn(
        original, exp.forget, exp.retain, val=exp.bundle.val, method="lotus", seed=seed, device=device, **cfg["lotus"]
    )
    console.print(f"LoTUS ran {result.epochs_run} epochs in {result.seconds:.1f} s; evaluating ...")
    metrics = evaluate(result.model, exp.splits, original=original, gold=gold, seed=seed)

    table = rich_table(metrics, "LoTUS", title="Fashion-MNIST demo: forget 10% of each class")
    table.add_row("time (s)", f"{o_meta['seconds']:.1f}", f"{g_meta['seconds']:.1f}", f"{result.seconds:.1f}")
    console.print(table)
    gap = metrics["original_acc_retain"] - metrics["original_acc_test"]
    original_gap = reference_avg_gap(metrics, "original_")
    console.print(
        f"original memorisation: retain acc − test acc = {gap:+.4f}; "
        f"Avg Gap to gold: original {original_gap:.4f}, LoTUS {metrics['avg_gap']:.4f}"
    )

    out = Path(out)
    history = DeletionHistory().add(exp.split.forget_ids, state_dict_hash(original))
    subset = TrainSubset.of(exp.bundle.name, exp.bundle.train.ids.tolist(), cfg["train_size"], seed)
    report = build_report(
        request={"dataset": cfg["dataset"], "train_size": cfg["train_size"], "seed": seed, "demo_config": cfg},
        split=exp.split,
        result=result,
        input_model=original,
        metrics=metrics,
        extra={
            "training": {"original": _strip_log(o_meta), "gold": _strip_log(g_meta)},
            "original_avg_gap": original_gap,
            **report_record(history, subset, "none"),
        },
    )
    with new_generation(out, overwrite) as gen:  # all files appear together, or none
        folder = gen.path
        save_checkpoint(
            result.model,
            folder / "model.safetensors",
            {
                "role": "unlearned",
                "method": "lotus",
                "dataset": cfg["dataset"],
                "train_size": cfg["train_size"],
                "forget_ids_sha256": exp.split.sha256,
            },
            history=history,
            train_subset=subset,
        )
        save_split(exp.split, folder / "split.json")
        write_report(report, folder)
    console.print(f"wrote {out}/model.safetensors, split.json, report.json, report.md, report.html")
    return report


def _strip_log(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in ("log", "versions")}
