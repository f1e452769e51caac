"""torchrun-style runs: 2 CPU processes with gloo train, run LoTUS and evaluate on digits, and match one process.

The job uses a training set of 701 samples and a forget set of 71 (neither divides by 2), so the training
shards are padded and the evaluation shards are uneven.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

import lotus_unlearn as lu
from lotus_unlearn import distributed
from lotus_unlearn.data import batches, ids_split, load_dataset
from lotus_unlearn.utils import state_dict_hash

WORLD = 2
TRAIN_SIZE = 701
RECIPE = {"epochs": 8, "lr": 0.1, "batch_size": 32, "augment": False, "device": "cpu", "seed": 0}
LOTUS = {"epochs": 5, "batch_size": 32, "lr": 5e-3, "alpha": 4.0, "device": "cpu", "seed": 0}


def bn_cnn() -> nn.Module:
    """A tiny CNN with BatchNorm, so buffers (running statistics) must be kept equal across ranks too."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def experiment():
    """digits with 701 training samples; forget 71 of them (odd sizes on purpose)."""
    bundle = load_dataset("digits", seed=0, train_size=TRAIN_SIZE)
    split = ids_split(bundle.train, sorted(bundle.train.ids.tolist())[::10][:71])
    forget, retain = split.apply(bundle.train)
    return bundle, forget, retain


def scalars(report: dict) -> dict[str, float]:
    return {k: v for k, v in report.items() if k != "diagnostics"}


def _worker(rank: int, port: int, out: str) -> None:
    """One rank of the job: what `torchrun --nproc-per-node 2` would start, with its environment."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        LOTUS_PROGRESS="0",
    )
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    assert distributed.init(timeout_minutes=2)
    try:
        times = {"init": time.perf_counter() - t0}
        bundle, forget, retain = experiment()
        trained = lu.train_model(bn_cnn(), bundle.train, val=bundle.val, patience=10, **RECIPE)
        times["train"] = time.perf_counter() - t0
        result = lu.unlearn(trained.model, forget, retain, val=bundle.val, method="lotus", **LOTUS)
        splits = {"forget": forget, "retain": retain, "test": bundle.test, "val": bundle.val}
        times["lotus"] = time.perf_counter() - t0
        report = lu.evaluate(result.model, splits, original=trained.model, n_boot=20)
        times["evaluate"] = time.perf_counter() - t0

        # DDP and the methods' gradient averaging give the same gradients on one batch
        model = bn_cnn()
        x, y, _ = next(batches(bundle.train, 32, shard=(rank, WORLD), pad=True))
        wrapped = distributed.ddp(bn_cnn())
        torch.nn.functional.cross_entropy(wrapped(x), y).backward()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        distributed.sync_grads(model.parameters())
        ddp_gap = max(
            float((a.grad - b.grad).abs().max())
            for a, b in zip(wrapped.module.parameters(), model.parameters(), strict=True)
        )

        record = {
            "train_log": trained.log,
            "lotus_log": result.log,
            "epochs_run": result.epochs_run,
            "trained_sha": state_dict_hash(trained.model),
            "unlearned_sha": state_dict_hash(result.model),
            "metrics": scalars(report),
            "floor": report["diagnostics"]["rf_jsd_floor"],
            "ddp_gap": ddp_gap,
            "times": times,
        }
        Path(out, f"rank{rank}.json").write_text(json.dumps(record))
        if distributed.is_main():
            lu.save_checkpoint(trained.model, Path(out, "trained.safetensors"))
            lu.save_checkpoint(result.model, Path(out, "unlearned.safetensors"))
        distributed.barrier()
    finally:
        distributed.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_worker, args=(free_port(), str(out)), nprocs=WORLD, start_method="spawn", join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)], out


def test_training_and_lotus_run_and_ranks_agree(job) -> None:
    ranks, _ = job
    first = ranks[0]
    assert len(first["train_log"]) == RECIPE["epochs"] and first["train_log"][-1]["val_acc"] > 0.5
    assert first["epochs_run"] >= 1 and first["unlearned_sha"] != first["trained_sha"]
    # this recipe trains a few epochs and then stops (forget accuracy a point below a_ref): both decisions occur
    assert first["lotus_log"][-1].get("stopped") is True and "tau" in first["lotus_log"][0]
    for other in ranks[1:]:
        # the same weights and buffers everywhere, so the same tau and the same stop decision
        assert other["trained_sha"] == first["trained_sha"]
        assert other["unlearned_sha"] == first["unlearned_sha"]
        assert other["epochs_run"] == first["epochs_run"]
        for a, b in zip(first["lotus_log"], other["lotus_log"], strict=True):
            for key in ("acc_forget", "a_ref", "acc_diff", "tau", "stopped", "loss"):
                assert a.get(key) == b.get(key), key
        assert other["metrics"] == first["metrics"] and other["floor"] == first["floor"]
        # the mean losses are over every rank's batches, so they agree too
        assert [e["loss"] for e in other["train_log"]] == [e["loss"] for e in first["train_log"]]
    assert all(r["ddp_gap"] < 1e-6 for r in ranks)


def test_metrics_equal_single_process_on_same_weights(job) -> None:
    ranks, out = job
    bundle, forget, retain = experiment()
    trained = lu.load_checkpoint(out / "trained.safetensors", bn_cnn())[0]
    unlearned = lu.load_checkpoint(out / "unlearned.safetensors", bn_cnn())[0]
    splits = {"forget": forget, "retain": retain, "test": bundle.test, "val": bundle.val}
    single = lu.evaluate(unlearned, splits, original=trained, n_boot=20)
    distributed_metrics = ranks[0]["metrics"]
    assert set(scalars(single)) == set(distributed_metrics)
    for key, value in scalars(single).items():
        if key.startswith(("acc_", "original_acc_")):
            assert value == distributed_metrics[key], key  # counts: exact, so every sample was seen once
        else:
            assert math.isclose(value, distributed_metrics[key], rel_tol=1e-6, abs_tol=1e-9), key
    floor = single["diagnostics"]["rf_jsd_floor"]
    for key in ("mean", "low", "high"):
        assert math.isclose(floor[key], ranks[0]["floor"][key], rel_tol=1e-6, abs_tol=1e-9), key
    # LoTUS's first check used the same accuracies a single process gets on these weights
    log0 = ranks[0]["lotus_log"][0]
    assert log0["a_ref"] == round(single["original_acc_val"], 2)
    assert log0["acc_forget"] == round(single["original_acc_forget"], 2)


def test_shards_cover_each_sample_once() -> None:
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    plain = [distributed.shard_positions(order, r, 3) for r in range(3)]
    assert sorted(torch.cat(plain).tolist()) == list(range(11))
    padded = [distributed.shard_positions(order, r, 3, pad=True) for r in range(3)]
    assert {len(p) for p in padded} == {4}
    assert set(torch.cat(padded).tolist()) == set(range(11))
    tiny = [distributed.shard_positions(torch.arange(2), r, 4, pad=True) for r in range(4)]
    assert [len(p) for p in tiny] == [1, 1, 1, 1]


def test_helpers_are_no_ops_in_one_process() -> None:
    t = torch.arange(5.0)
    assert not distributed.init()  # no torchrun environment
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert distributed.all_reduce_sum(t) is t
    assert distributed.gather(t)[0] is t and distributed.gather_shards(t, 5) is t
    model = nn.Linear(2, 2)
    assert distributed.ddp(model) is model
    assert distributed.shard_len(7) == 7


@pytest.mark.slow
def test_cli_under_torchrun(tmp_path: Path) -> None:
    """`torchrun -m lotus_unlearn unlearn` and the `lotus-unlearn` script: rank 0 alone prints and writes, and
    the evaluation equals a single process's on the same weights."""
    import subprocess
    import sys

    bundle, forget, _ = experiment()
    model = lu.create_model("cnn", num_classes=10, in_channels=1, image_size=8, width=8, hidden=32)
    trained = lu.train_model(model, bundle.train, epochs=6, lr=0.05, batch_size=32, augment=False, device="cpu")
    ckpt = tmp_path / "original.safetensors"
    lu.save_checkpoint(trained.model, ckpt, {"dataset": "digits", "train_size": TRAIN_SIZE})
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(i) for i in forget.ids.tolist()) + "\n")
    bindir = Path(sys.executable).parent
    env = {**os.environ, "LOTUS_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    torchrun = [str(bindir / "torchrun"), "--nproc-per-node", "2", "--master-port", str(free_port())]
    common = ["--dataset", "digits", "--forget", str(ids), "--device", "cpu"]
    run = subprocess.run(
        [*torchrun, "-m", "lotus_unlearn", "unlearn", "--checkpoint", str(ckpt), *common, "--out", str(tmp_path / "r")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("verdict:") == 1 and (tmp_path / "r" / "report.json").is_file()
    torchrun[-1] = str(free_port())
    unlearned = str(tmp_path / "r" / "model.safetensors")
    run = subprocess.run(
        [*torchrun, "--no-python", str(bindir / "lotus-unlearn"), "evaluate", "--checkpoint", unlearned,
         "--original", str(ckpt), *common, "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    shown = json.loads(run.stdout)  # printed once: rank 0's
    from lotus_unlearn.pipeline import ForgetRequest, prepare

    exp = prepare("digits", ForgetRequest(ids_file=str(ids)), seed=0, train_size=TRAIN_SIZE)
    model = lu.load_checkpoint(unlearned)[0]
    single = lu.evaluate(model, exp.splits, original=lu.load_checkpoint(ckpt)[0], device="cpu", seed=0)
    assert set(scalars(shown)) == set(scalars(single))
    for key, value in scalars(single).items():
        assert math.isclose(value, shown[key], rel_tol=1e-6, abs_tol=1e-9), key


def _methods_worker(rank: int, port: int, out: str) -> None:
    """Every registered method, one rank of 2: the unlearned weights' hash (or the refusal)."""
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )  # fmt: skip
    os.environ["LOTUS_PROGRESS"] = "0"
    torch.set_num_threads(1)
    assert distributed.init(timeout_minutes=3)
    try:
        bundle, forget, retain = experiment()
        original = lu.train_model(bn_cnn(), bundle.train, **{**RECIPE, "epochs": 3}).model
        done = {}
        for name, cls in sorted(lu.METHODS.items()):
            hp = {"epochs": 1 if name != "retrain" else 2, "device": "cpu", "seed": 0}
            try:
                result = cls(**hp).unlearn(original, forget, retain, val=bundle.val)
                done[name] = state_dict_hash(result.model)
            except lu.UserError as exc:
                done[name] = f"refused: {exc}"
        Path(out, f"methods{rank}.json").write_text(json.dumps(done))
    finally:
        distributed.shutdown()


@pytest.mark.slow
def test_every_method_runs_data_parallel_or_refuses(tmp_path: Path) -> None:
    """Under 2 ranks each method ends with the same weights on both ranks (no rank diverged or hung), except
    those marked data_parallel = False, which refuse with one line."""
    mp.start_processes(_methods_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, start_method="spawn")
    ranks = [json.loads((tmp_path / f"methods{r}.json").read_text()) for r in range(WORLD)]
    assert ranks[0] == ranks[1] and set(ranks[0]) == set(lu.METHODS)
    for name, value in ranks[0].items():
        if lu.METHODS[name].data_parallel:
            assert not value.startswith("refused"), (name, value)
        else:
            assert value == f"refused: method {name} does not run under torchrun; run it in one process"
