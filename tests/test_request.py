"""A user's deletion request end to end: the same request through `lu.unlearn`, `lu.forget`, the command line and a
bench config gives the same weights; per-kind defaults; gold checks; the recipe's outputs."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import lotus_unlearn as lu
from lotus_unlearn.bench import runner
from lotus_unlearn.bench.config import parse_config
from lotus_unlearn.checkpoint import load_state_dict, read_meta, save_checkpoint
from lotus_unlearn.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

CLASS_WISE = {
    "name": "classwise",
    "datasets": ["digits"],
    "models": [
        {
            "model": "cnn",
            "model_kwargs": {"width": 8, "hidden": 32},
            "train": {"epochs": 3, "lr": 0.05, "batch_size": 64, "augment": False},
        }
    ],
    "forget": [{"classes": [3]}],
    "methods": {"lotus": {"epochs": 2}},
    "sweeps": [],
    "seeds": [0],
    "device": "cpu",
    "eval": {"n_boot": 10},
}


@pytest.fixture(scope="module")
def bench_group(tmp_path_factory):
    """The class-wise bench group's context (its original trained into a private cache) and the weights its LoTUS
    cell unlearned."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LOTUS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    cfg = parse_config(CLASS_WISE)
    group = cfg.groups()[0]
    ctx = runner.GroupContext(cfg, group, gold=False)
    seen: list[torch.nn.Module] = []
    evaluate = ctx.evaluate
    ctx.evaluate = lambda model: (seen.append(model), evaluate(model))[1]  # type: ignore[method-assign]
    ctx.run(next(v for v in group.variants if v.method == "lotus"))
    mp.undo()
    folder = tmp_path_factory.mktemp("original")
    ckpt = save_checkpoint(ctx.original, folder / "original.safetensors", {"role": "original", "dataset": "digits"})
    return {"ctx": ctx, "bench": seen[0].state_dict(), "checkpoint": ckpt}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_class_wise_request_is_bit_identical_everywhere(bench_group, tmp_path, capsys) -> None:
    ctx = bench_group["ctx"]
    exp = ctx.exp
    api = lu.unlearn(ctx.original, exp.forget, exp.retain, val=exp.bundle.val, epochs=2, seed=0, device="cpu")
    assert api.kind == "class" and api.kind_defaults == {"a_ref": 0.0, "alpha": 32.0}
    assert same_weights(api.model.state_dict(), bench_group["bench"])

    out = tmp_path / "cli"
    args = ["unlearn", "--checkpoint", str(bench_group["checkpoint"]), "--dataset", "digits", "--forget-class", "3"]
    assert main([*args, "--hparam", "epochs=2", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "alpha=32.0 (class-wise default)" in printed and "a_ref=0.0 (class-wise default)" in printed
    assert same_weights(load_state_dict(out / "model.safetensors"), bench_group["bench"])

    done = lu.forget(bench_group["checkpoint"], classes=[3], hparams={"epochs": 2}, device="cpu", verbose=False)
    assert done.report["request"]["dataset"] == "digits"  # from the checkpoint's sidecar
    assert done.result.kind == "class" and done.report["method"]["kind_defaults"] == {"a_ref": 0.0, "alpha": 32.0}
    assert same_weights(done.model.state_dict(), bench_group["bench"])
    assert done.verdict is done.report["verdict"] and done.files == []

    explicit = lu.unlearn(ctx.original, exp.forget, exp.retain, val=exp.bundle.val, epochs=2, alpha=4.0, device="cpu")
    assert explicit.hparams["alpha"] == 4.0 and explicit.kind_defaults == {"a_ref": 0.0}  # explicit values win
    instance = lu.unlearn(ctx.original, exp.forget, exp.retain, val=exp.bundle.val, epochs=0, kind="instance")
    assert instance.kind_defaults == {} and instance.hparams["a_ref"] is None


def test_salun_lotus_base_takes_the_class_wise_defaults(bench_group) -> None:
    exp = bench_group["ctx"].exp
    kw = {"method": "salun", "epochs": 0, "device": "cpu"}
    lotus_base = lu.unlearn(bench_group["ctx"].original, exp.forget, exp.retain, val=exp.bundle.val, base="lotus", **kw)
    assert lotus_base.kind_defaults == {"a_ref": 0.0, "alpha": 32.0}
    rl_base = lu.unlearn(bench_group["ctx"].original, exp.forget, exp.retain, **kw)
    assert rl_base.kind is None and rl_base.kind_defaults == {}


def test_methods_command_shows_the_kind_defaults(capsys) -> None:
    assert main(["methods"]) == 0
    assert "class-wise requests: a_ref=0.0, alpha=32.0" in capsys.readouterr().out


def test_unknown_kind_is_one_line(capsys) -> None:
    assert (
        main(["unlearn", "--checkpoint", "x.safetensors", "--kind", "bogus", "--forget-class", "3", "--out", "o"]) == 2
    )
    assert "request kind 'bogus' is unknown" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An original and two gold models trained with `lotus-unlearn train` (digits, 2 epochs): one for a 10% forget
    fraction, one for class 3."""
    folder = tmp_path_factory.mktemp("models")
    common = ["--dataset", "digits", "--model", "cnn", "--model-arg", "width=8", "--model-arg", "hidden=32"]
    common += ["--epochs", "2", "--device", "cpu"]
    paths = {name: folder / f"{name}.safetensors" for name in ("original", "gold", "gold_class")}
    assert main(["train", *common, "--out", str(paths["original"])]) == 0
    assert main(["train", *common, "--forget-fraction", "0.1", "--out", str(paths["gold"])]) == 0
    assert main(["train", *common, "--forget-class", "3", "--out", str(paths["gold_class"])]) == 0
    return paths


def unlearn_args(trained, out, *extra):
    return ["unlearn", "--checkpoint", str(trained["original"]), "--dataset", "digits", "--device", "cpu",
            "--hparam", "epochs=1", "--out", str(out), *extra]  # fmt: skip


def test_matching_gold_is_accepted_and_recorded(trained, tmp_path, capsys) -> None:
    out = tmp_path / "ok"
    assert main(unlearn_args(trained, out, "--forget-fraction", "0.1", "--gold", str(trained["gold"]))) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["gold_check"] == {"status": "match", "mismatches": []}
    assert "avg_gap" in report["metrics"]


def test_mismatched_gold_is_refused_unless_allowed(trained, tmp_path, capsys) -> None:
    out = tmp_path / "bad"
    code = main(unlearn_args(trained, out, "--forget-class", "3", "--gold", str(trained["gold"])))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "forget set" in err and "--allow-mismatched-gold" in err
    assert not out.exists()
    assert main(unlearn_args(trained, out, "--forget-class", "3", "--gold", str(trained["gold"]),
                             "--allow-mismatched-gold")) == 0  # fmt: skip
    assert "warning: gold model" in capsys.readouterr().err
    check = json.loads((out / "report.json").read_text())["gold_check"]
    assert check["status"] == "mismatch allowed" and check["mismatches"][0].startswith("forget set")


def test_allow_mismatched_gold_without_a_gold_is_one_line(trained, tmp_path, capsys) -> None:
    out = tmp_path / "nogold"
    assert main(unlearn_args(trained, out, "--forget-fraction", "0.1", "--allow-mismatched-gold")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none was given" in err and not out.exists()


def test_gold_mismatches_name_the_training_subset_and_dataset() -> None:
    from lotus_unlearn.history import CheckpointRecord, DeletionHistory, TrainSubset
    from lotus_unlearn.request import gold_mismatches

    ours = TrainSubset.of("digits", range(100), 100, 0)
    gold = CheckpointRecord(DeletionHistory().add([1, 2], None), TrainSubset.of("digits", range(1, 101), 100, 1), "w")
    found = gold_mismatches(gold, {}, dataset="digits", subset=ours, forgotten=[1, 2])
    assert found == ["training subset (gold: 100 samples, train size 100, seed 1; this request: 100 samples, "
                     "train size 100, seed 0)"]  # fmt: skip
    other = CheckpointRecord(DeletionHistory(), TrainSubset.of("cifar10", range(100), 100, 0), "w")
    found = gold_mismatches(other, {}, dataset="digits", subset=ours, forgotten=[1, 2])
    assert found[0].startswith("forget set (gold: none") and found[1] == "dataset (gold cifar10, this request digits)"


def test_gold_without_sidecar_warns_and_unreadable_sidecar_is_one_line(trained, tmp_path, capsys) -> None:
    bare = tmp_path / "bare.pt"  # plain torch weights: no sidecar, no history in a header
    torch.save(load_state_dict(trained["gold_class"]), bare)
    out = tmp_path / "bare-run"
    assert main(unlearn_args(trained, out, "--forget-class", "3", "--gold", str(bare), "--model", "cnn",
                             "--model-arg", "width=8", "--model-arg", "hidden=32")) == 0  # fmt: skip
    assert "has no .json sidecar" in capsys.readouterr().err
    assert json.loads((out / "report.json").read_text())["gold_check"]["status"] == "no sidecar"
    broken = tmp_path / "broken.safetensors"
    shutil.copy(trained["gold_class"], broken)
    broken.with_suffix(".json").write_text("[1, 2")
    out2 = tmp_path / "broken-run"
    assert main(unlearn_args(trained, out2, "--forget-class", "3", "--gold", str(broken))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sidecar" in err and not out2.exists()


def test_a_follow_up_request_never_retains_earlier_forgotten_samples(trained, tmp_path, capsys) -> None:
    first, second = tmp_path / "req-1", tmp_path / "req-2"
    assert main(unlearn_args(trained, first, "--forget-fraction", "0.1")) == 0
    done = lu.forget(first / "model.safetensors", classes=[5], hparams={"epochs": 1}, device="cpu", out=second)
    earlier = set(json.loads((first / "split.json").read_text())["forget_ids"])
    assert done.report["lineage"]["previously_forgotten"] == len(earlier)
    sizes = done.metrics["diagnostics"]["sizes"]
    n5 = len(done.split.forget_ids)
    assert sizes["retain"] == 1078 - len(earlier) - n5 + len(earlier & set(done.split.forget_ids))
    meta = read_meta(second / "model.safetensors")
    assert set(meta["forgotten_ids"]) == earlier | set(done.split.forget_ids)


def test_evaluate_out_writes_the_audit_of_any_model(trained, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert main(unlearn_args(trained, run, "--forget-class", "3")) == 0
    capsys.readouterr()
    audit = tmp_path / "audit"
    args = ["evaluate", "--checkpoint", str(run / "model.safetensors"), "--dataset", "digits", "--device", "cpu",
            "--split", str(run / "split.json"), "--original", str(trained["original"]),
            "--gold", str(trained["gold_class"]), "--out", str(audit)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "verdict:" in printed
    report = lu.report.load_report(audit)
    assert report["audit_only"] and report["method"]["name"] == "lotus"
    assert report["gold_check"]["status"] == "match"
    assert lu.verdict(report)["status"] == report["verdict"]["status"]
    html = (audit / "report.html").read_text()
    assert "Audit of a model unlearned elsewhere" in html
    assert main([*args[:-1], str(tmp_path / "run" / "report.json")]) == 2  # --out that is a file
    assert "is a file" in capsys.readouterr().err


def test_forget_a_model_object_on_a_loaded_dataset_by_ids(digits, digits_original) -> None:
    ids = digits.train.ids[:5].tolist()
    done = lu.forget(digits_original, dataset=digits, ids=ids, hparams={"epochs": 1}, device="cpu", verbose=False)
    assert done.split.forget_ids == sorted(ids) and done.files == [] and done.out is None
    req = done.report["request"]
    assert req["checkpoint"] is None and req["dataset"] == "digits" and req["forget_kind"] == "instance"
    assert done.report["deletion_record"]["forgotten_ids"] == sorted(ids)
    assert done.verdict["status"] in ("forgotten", "not forgotten", "nothing to forget")
    with pytest.raises(lu.UserError, match="in Python: ids=, classes=, fraction="):
        lu.forget(digits_original, dataset=digits, ids=ids, fraction=0.1)


def test_write_report_into_a_run_folder_keeps_it_whole(trained, tmp_path) -> None:
    """`lu.write_report` into a run's output folder publishes a new generation (the model and split kept, the folder
    whole, the earlier generation kept) instead of editing the published one under its manifest."""
    from lotus_unlearn.outputs import generations_dir, verify_output
    from lotus_unlearn.report import load_report

    out = tmp_path / "run"
    assert main(unlearn_args(trained, out, "--forget-class", "3")) == 0
    report = load_report(out)
    lu.write_report({**report, "created": "2027-01-01T00:00:00+00:00"}, out)
    verify_output(out)  # one line (UserError) if a file no longer matches the manifest
    assert load_report(out)["created"] == "2027-01-01T00:00:00+00:00" and (out / "model.safetensors").is_file()
    assert len(list(generations_dir(out).iterdir())) == 2
    follow_up = ["unlearn", "--checkpoint", str(out / "model.safetensors"), "--dataset", "digits", "--device", "cpu",
                 "--hparam", "epochs=1", "--forget-class", "5", "--out", str(tmp_path / "next")]  # fmt: skip
    assert main(follow_up) == 0  # the folder still reads as whole


def test_write_report_refuses_what_is_not_a_report(tmp_path) -> None:
    with pytest.raises(lu.UserError, match="the report is not a lotus-unlearn report"):
        lu.write_report({"x": 1}, tmp_path / "x")
    assert not (tmp_path / "x").exists()
