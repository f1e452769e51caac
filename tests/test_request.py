"""A user's deletion request end to end: the same request through `lu.unlearn`, `lu.forget`, the command line and a
bench config gives the same weights; per-kind defaults; gold checks; the recipe's outputs."""

from __future__ import annotations

import pytest
import torch

import lotus_unlearn as lu
from lotus_unlearn.bench import runner
from lotus_unlearn.bench.config import parse_config
from lotus_unlearn.checkpoint import load_state_dict, save_checkpoint
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
