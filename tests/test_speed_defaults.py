"""The speed settings of docs/performance.md: the device's inference batch size, fused optimizers, the allocator,
bf16 on CPU and torch.compile."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from lotus_unlearn.data import DatasetBundle
from lotus_unlearn.data.base import TensorData
from lotus_unlearn.errors import UserError
from lotus_unlearn.methods import base
from lotus_unlearn.methods.base import Config, build_config
from lotus_unlearn.metrics.classification import accuracy
from lotus_unlearn.metrics.predict import predict
from lotus_unlearn.utils import compile_in_place, eval_batch_size, glibc, state_dict_hash


def test_eval_batch_size_is_small_on_cpu_large_on_accelerators_and_a_request_wins() -> None:
    assert eval_batch_size(torch.device("cpu")) == 128
    assert eval_batch_size(torch.device("cuda")) == 1024
    assert eval_batch_size(torch.device("mps")) == 1024
    assert eval_batch_size(torch.device("cpu"), 300) == 300
    assert eval_batch_size(torch.device("cuda"), 64) == 64


def test_predict_default_batch_runs_in_cpu_sized_batches_and_matches_one_big_batch() -> None:
    torch.manual_seed(0)
    data = TensorData(torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 3, (300,)))
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3))
    sizes: list[int] = []
    hook = net.register_forward_hook(lambda _m, inputs, _out: sizes.append(len(inputs[0])))
    default = predict(net, data, device="cpu")
    assert sizes == [128, 128, 44]
    sizes.clear()
    whole = predict(net, data, device="cpu", batch_size=1024)
    hook.remove()
    assert sizes == [300]
    torch.testing.assert_close(default.logits, whole.logits, rtol=1e-5, atol=1e-6)
    assert torch.equal(default.labels, data.labels)


def test_eval_batch_size_hparam_accepts_none_and_refuses_zero() -> None:
    assert build_config(Config, {}, "x").eval_batch_size is None
    assert build_config(Config, {"eval_batch_size": "none"}, "x").eval_batch_size is None
    assert build_config(Config, {"eval_batch_size": "256"}, "x").eval_batch_size == 256
    with pytest.raises(UserError, match="eval_batch_size must be >= 1"):
        build_config(Config, {"eval_batch_size": 0}, "x")


@pytest.mark.parametrize(
    ("name", "cls"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)]
)
def test_optimizers_are_fused_where_torch_has_the_kernel_and_step(name: str, cls: type) -> None:
    params = [torch.nn.Parameter(torch.randn(3, 2))]
    opt = base.make_optimizer(params, Config(optimizer=name, lr=0.1, weight_decay=0.01))
    assert type(opt) is cls
    assert opt.defaults["lr"] == 0.1 and opt.defaults["weight_decay"] == 0.01
    if tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4):  # CPU kernels for all three since 2.4
        assert opt.defaults["fused"] is True
    before = params[0].detach().clone()
    params[0].grad = torch.ones_like(before)
    opt.step()  # torch checks fused support only here
    assert not torch.equal(params[0].detach(), before)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_library_optimizer_takes_the_loops_step(name: str) -> None:
    """Same update rule: make_optimizer's (fused) optimizer and torch's per-tensor loop agree to float rounding
    over a few steps with momentum / moments and weight decay."""
    torch.manual_seed(0)
    start, grads = torch.randn(5, 4), [torch.randn(5, 4) for _ in range(3)]
    cfg = Config(optimizer=name, lr=0.01, weight_decay=0.1, momentum=0.9)
    loop = {"lr": 0.01, "weight_decay": 0.1, "foreach": False}
    out = []
    for library in (True, False):
        p = torch.nn.Parameter(start.clone())
        if library:
            opt = base.make_optimizer([p], cfg)
        elif name == "sgd":
            opt = torch.optim.SGD([p], momentum=0.9, **loop)
        else:
            opt = torch.optim.AdamW([p], **loop)
        for g in grads:
            p.grad = g.clone()
            opt.step()
        out.append(p.detach())
    torch.testing.assert_close(out[0], out[1], rtol=1e-6, atol=1e-7)


def test_optimizer_uses_the_loop_where_there_is_no_fused_kernel() -> None:
    """Complex weights have no fused kernel: torch would accept fused=True and fail at the first step."""
    p = torch.nn.Parameter(torch.randn(3, dtype=torch.complex64))
    opt = base.make_optimizer([p], Config(optimizer="adamw", lr=0.1))
    assert not opt.defaults.get("fused")
    p.grad = torch.ones_like(p)
    opt.step()


def test_eval_batch_size_refuses_zero() -> None:
    with pytest.raises(UserError, match="batch size must be >= 1"):
        eval_batch_size(torch.device("cpu"), 0)


def test_model_cache_keys_on_the_cpu_thread_count(monkeypatch, tmp_path) -> None:
    """A cached model is reused for the same recipe and threads, and retrained for another thread count (CPU
    rounding depends on it: docs/performance.md)."""
    from lotus_unlearn.pipeline import ForgetRequest, prepare, train_cached

    monkeypatch.setenv("LOTUS_CACHE_DIR", str(tmp_path))
    exp = prepare("digits", ForgetRequest(fraction=0.1), seed=0)
    args = {"model": "cnn", "model_kwargs": {"width": 4, "hidden": 8}, "seed": 0, "role": "original"}
    train = {"epochs": 1, "device": "cpu"}
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        first, meta1 = train_cached(exp.bundle, exp.retain, train=train, **args)
        again, meta2 = train_cached(exp.bundle, exp.retain, train=train, **args)
        torch.set_num_threads(2)
        _, meta3 = train_cached(exp.bundle, exp.retain, train=train, **args)
    finally:
        torch.set_num_threads(threads)
    assert (meta1["cached"], meta2["cached"], meta3["cached"]) == (False, True, False)
    assert state_dict_hash(again) == state_dict_hash(first)
    assert len(list((tmp_path / "models").glob("original-*.safetensors"))) == 2


CHURN = """
import resource, sys, torch
from lotus_unlearn.utils import tune_cpu_allocator
applied = tune_cpu_allocator()
def step():  # 48 MiB of 8 MiB buffers, freed together: the heap top a default glibc may hand back every time
    x = [torch.ones(2 << 20) for _ in range(6)]
    del x
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _churn(**env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LOTUS_TUNE_MALLOC"}
    out = subprocess.run(
        [sys.executable, "-c", CHURN], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.skipif(not glibc(), reason="mallopt tuning is glibc-only")
def test_tuned_allocator_reuses_freed_buffers_without_page_faults() -> None:
    applied, faults = _churn()
    assert applied == "True"
    assert faults < 12288  # one refault of the 48 MiB would be 12288 pages; the tuned heap keeps them resident


@pytest.mark.skipif(not glibc(), reason="mallopt tuning is glibc-only")
def test_tune_cpu_allocator_leaves_a_user_choice_alone() -> None:
    assert _churn(LOTUS_TUNE_MALLOC="0")[0] == "False"
    assert _churn(MALLOC_TRIM_THRESHOLD_="1000000")[0] == "False"


def test_cli_tunes_the_allocator_before_running_a_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from lotus_unlearn import cli

    calls: list[int] = []
    monkeypatch.setattr(cli, "tune_cpu_allocator", lambda: calls.append(1) or True)
    assert cli.main(["--help"]) == 0
    assert calls == [1]


def test_amp_runs_lotus_in_bf16_on_cpu_and_keeps_float32_weights_and_logits(
    digits: DatasetBundle, digits_original: torch.nn.Module, digits_split: tuple[TensorData, TensorData]
) -> None:
    """The bf16 autocast path (CUDA's default, opt-in on CPU): forwards in bf16, float32 master weights, logits
    handed back in float32, and the run still unlearns like the float32 one."""
    import lotus_unlearn as lu

    forget, retain = digits_split
    kw = {"device": "cpu", "augment": True, "epochs": 2, "lr": 1e-3, "a_ref": 0.5, "seed": 0}
    dtypes: list[torch.dtype] = []
    first_conv = next(m for m in digits_original.modules() if isinstance(m, torch.nn.Conv2d))
    hook = first_conv.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    try:
        bf16 = lu.unlearn(digits_original, forget, retain, amp=True, **kw)
    finally:
        hook.remove()
    fp32 = lu.unlearn(digits_original, forget, retain, amp=False, **kw)
    assert dtypes and set(dtypes) == {torch.bfloat16}  # the copies share the hook: teacher, student, checks
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert all(e["loss"] == e["loss"] for e in bf16.log)  # finite (NaN != NaN)
    logits = predict(bf16.model, digits.test, device="cpu", amp=True).logits
    assert logits.dtype == torch.float32
    acc = [accuracy(predict(r.model, digits.test, device="cpu").logits, digits.test.labels) for r in (bf16, fp32)]
    assert abs(acc[0] - acc[1]) < 0.05


def _graph_recorder(graphs: list) -> Any:
    """A torch.compile backend that records each captured graph and runs it as it is."""

    def backend(gm: torch.fx.GraphModule, _example_inputs: list) -> Any:
        graphs.append(gm)
        return gm.forward

    return backend


def test_compile_in_place_captures_a_sequential_model_and_keeps_its_state_dict() -> None:
    """nn.Sequential's forward lives in torch's own files, where nn.Module.compile captures nothing; ours must
    capture it, keep the state_dict keys, and leave copies eager on their own weights."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3))
    x = torch.randn(5, 1, 8, 8)
    eager, keys = net(x).detach(), list(net.state_dict())
    graphs: list = []
    assert compile_in_place(net, backend=_graph_recorder(graphs)) is net
    torch.testing.assert_close(net(x), eager)
    assert len(graphs) == 1
    assert list(net.state_dict()) == keys
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for p in twin.parameters():
            p.zero_()
    assert torch.equal(twin(x), torch.zeros(5, 3)) and len(graphs) == 1  # eager, and its own weights


def test_speed_setup_compiles_through_compile_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    from lotus_unlearn import utils

    seen: list[torch.nn.Module] = []
    monkeypatch.setattr(utils, "compile_in_place", lambda m: seen.append(m) or m)
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    utils.speed_setup(net, torch.device("cpu"))
    assert seen == []
    utils.speed_setup(net, torch.device("cpu"), compile=True)
    assert seen == [net]


@pytest.mark.slow
def test_lotus_with_compile_trains_compiled_and_matches_eager(
    digits: DatasetBundle, digits_original: torch.nn.Module, digits_split: tuple[TensorData, TensorData]
) -> None:
    """`compile=True` end to end with torch's default backend (inductor: a C++ compiler, tens of seconds): the
    demo's model (an nn.Sequential) is really compiled, and LoTUS's weights match the eager run's to rounding."""
    from torch._dynamo.utils import counters

    import lotus_unlearn as lu

    forget, retain = digits_split
    kw = {"device": "cpu", "augment": True, "epochs": 2, "lr": 1e-3, "a_ref": 0.5, "seed": 0}
    counters.clear()
    compiled = lu.unlearn(digits_original, forget, retain, compile=True, **kw)
    assert counters["frames"]["ok"] >= 2  # at least the training and the evaluation-mode forwards
    eager = lu.unlearn(digits_original, forget, retain, compile=False, **kw)
    assert compiled.epochs_run == eager.epochs_run == 2
    for a, b in zip(compiled.model.state_dict().values(), eager.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cli_compile_flag_compiles_the_trained_and_the_unlearned_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--compile` on train and unlearn reaches speed_setup (compilation itself recorded, not run: it is slow and
    tested above) and is recorded with the run's hyper-parameters."""
    from lotus_unlearn import utils
    from lotus_unlearn.cli import main

    compiled: list[torch.nn.Module] = []
    monkeypatch.setattr(utils, "compile_in_place", lambda m: compiled.append(m) or m)
    tiny = ["--dataset", "digits", "--model", "cnn", "--model-arg", "width=4", "--model-arg", "hidden=8"]
    ckpt = tmp_path / "m.safetensors"
    assert main(["train", *tiny, "--epochs", "1", "--device", "cpu", "--compile", "--out", str(ckpt)]) == 0
    assert len(compiled) == 2  # make_context's working copy and frozen original (compiling is lazy: unused, free)
    out = tmp_path / "run"
    args = ["unlearn", "--checkpoint", str(ckpt), "--dataset", "digits", "--forget-class", "3", "--device", "cpu"]
    assert main([*args, "--hparam", "epochs=1", "--compile", "--out", str(out)]) == 0
    assert len(compiled) == 4  # the method's working copy and frozen original
    assert json.loads((out / "report.json").read_text())["method"]["hparams"]["compile"] is True
