"""LoTUS as docs/methods.md describes it: temperature, stop rule, Gumbel targets and run behaviour."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch
import torch.nn as nn
from scipy.stats import chi2

import lotus_unlearn as lu
from lotus_unlearn.data import DatasetBundle, TensorData, class_split
from lotus_unlearn.errors import UserError
from lotus_unlearn.methods import base as base_mod
from lotus_unlearn.methods import lotus as lotus_mod
from lotus_unlearn.methods.lotus import Lotus, should_stop, targets, temperature
from lotus_unlearn.metrics.predict import predict

Pair = tuple[TensorData, TensorData]  # (forget, retain)
FAST: dict[str, Any] = {"device": "cpu", "augment": False, "batch_size": 128, "seed": 0}
LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])  # a hand-picked teacher output, K = 5


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def argmax_counts(rows: torch.Tensor) -> torch.Tensor:
    return torch.bincount(rows.argmax(1), minlength=rows.shape[1]).double()


def assert_matches(counts: torch.Tensor, probs: torch.Tensor) -> None:
    """Chi-square goodness of fit at level 1e-4, plus a 5-sigma binomial bound per class."""
    n = counts.sum()
    expected = n * probs.double()
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert stat < chi2.ppf(1 - 1e-4, len(probs) - 1), (counts, expected)
    sigma = (n * probs.double() * (1 - probs.double())).sqrt()
    assert torch.all((counts - expected).abs() <= 5 * sigma), (counts, expected)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


# --- temperature and stop rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(("d", "alpha"), [(0.0, 8.0), (0.05, 2.0), (0.3, 32.0), (-0.005, 8.0), (1.0, 0.0)])
def test_temperature_is_exp_alpha_d(d: float, alpha: float) -> None:
    assert temperature(d, alpha) == pytest.approx(math.exp(alpha * d), rel=1e-12)


def test_temperature_is_one_at_reference_and_above_one_above_it() -> None:
    assert temperature(0.0, 8.0) == 1.0
    assert temperature(0.02, 8.0) > 1.0
    assert temperature(-0.005, 8.0) < 1.0  # the unrounded -0.01 < d < 0 case sharpens


def test_stop_rule_with_tolerance() -> None:
    assert 0.10 - 0.11 > -0.01  # the floating-point trap the tolerance exists for
    assert should_stop(0.10 - 0.11)
    assert should_stop(-0.01)
    assert should_stop(-0.2)
    assert not should_stop(-0.009)
    assert not should_stop(0.0)
    assert not should_stop(0.05)


def test_stop_rule_one_point_cases_all_stop() -> None:
    """Every rounded one-point drop stops (the reference keeps training in 18 of 100 of these)."""
    for a in range(100):
        a_f, a_ref = round(a / 100, 2), round((a + 1) / 100, 2)
        assert should_stop(a_f - a_ref), (a_f, a_ref)


# --- Gumbel targets ------------------------------------------------------------------------------------------


def test_forget_rows_positive_and_normalised() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(500, 10, generator=gen) * 5
    for tau in (0.5, 1.0, 4.0, 100.0):
        t = targets(z, torch.ones(500, dtype=torch.bool), tau, gen)
        assert t.shape == z.shape
        assert torch.all(t > 0)
        torch.testing.assert_close(t.sum(1), torch.ones(500), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["gumbel", "argmax"])
def test_retain_rows_are_one_hot(mode: str) -> None:
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(300, 7, generator=gen) * 3
    t = targets(z, torch.zeros(300, dtype=torch.bool), 2.0, gen, retain_target=mode)
    assert set(t.unique().tolist()) <= {0.0, 1.0}
    assert torch.all(t.sum(1) == 1)
    if mode == "argmax":
        assert torch.equal(t, torch.nn.functional.one_hot(z.argmax(1), 7).float())


def test_mixed_batch_routes_rows_by_flag() -> None:
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(8, 4, generator=gen)
    flags = torch.tensor([1, 0, 1, 0, 0, 1, 1, 0])
    t = targets(z, flags, 1.0, gen, retain_target="argmax")
    retain = flags == 0
    assert torch.equal(t[retain], torch.nn.functional.one_hot(z[retain].argmax(1), 4).float())
    assert torch.all(t[~retain] > 0) and torch.all(t[~retain] < 1)


@pytest.mark.parametrize("tau", [0.5, 1.0, 4.0])
def test_forget_argmax_frequency_is_softmax_of_teacher(tau: float) -> None:
    """Gumbel-max: argmax softmax((z+g)/tau) = argmax(z+g) ~ Categorical(softmax(z)), whatever tau > 0."""
    n = 20_000
    gen = torch.Generator().manual_seed(3)
    t = targets(LOGITS.expand(n, -1), torch.ones(n, dtype=torch.bool), tau, gen)
    assert_matches(argmax_counts(t), LOGITS.softmax(0))


def test_retain_gumbel_sample_frequency_is_softmax_of_teacher() -> None:
    n = 20_000
    gen = torch.Generator().manual_seed(4)
    t = targets(LOGITS.expand(n, -1), torch.zeros(n, dtype=torch.bool), 1.0, gen, retain_target="gumbel")
    assert_matches(argmax_counts(t), LOGITS.softmax(0))


def test_forget_and_retain_noise_are_independent() -> None:
    """Same seed, same rows: the soft and hard samples agree with probability sum_k p_k^2, not always."""
    n = 20_000
    z = LOGITS.expand(n, -1)
    soft = targets(z, torch.ones(n), 1.0, torch.Generator().manual_seed(5))
    hard = targets(z, torch.zeros(n), 1.0, torch.Generator().manual_seed(5))
    agree = (soft.argmax(1) == hard.argmax(1)).double().mean().item()
    p2 = float((LOGITS.softmax(0) ** 2).sum())
    assert agree == pytest.approx(p2, abs=5 * math.sqrt(p2 * (1 - p2) / n))


def test_forget_rows_approach_uniform_as_tau_grows() -> None:
    z = torch.tensor([[8.0, 0.0, -3.0, 1.0], [0.0, 5.0, 5.0, -5.0]]).repeat(50, 1)
    flags = torch.ones(len(z), dtype=torch.bool)
    entropies = []
    for tau in (0.5, 1.0, 4.0, 32.0, 1e3, 1e5):
        t = targets(z, flags, tau, torch.Generator().manual_seed(6))  # same noise for every tau
        entropies.append(-(t * t.log()).sum(1))
    for lower, higher in itertools.pairwise(entropies):
        assert torch.all(higher >= lower - 1e-6)
    assert torch.all(entropies[1] < math.log(4) - 0.1)
    last = targets(z, flags, 1e5, torch.Generator().manual_seed(6))
    torch.testing.assert_close(last, torch.full_like(last, 0.25), atol=1e-3, rtol=0)


def test_targets_are_reproducible_for_a_seeded_generator() -> None:
    z = torch.randn(64, 10, generator=torch.Generator().manual_seed(7))
    flags = torch.arange(64) % 2
    a = targets(z, flags, 1.5, torch.Generator().manual_seed(8))
    b = targets(z, flags, 1.5, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)


def test_targets_reject_bad_arguments() -> None:
    z = torch.zeros(2, 3)
    with pytest.raises(UserError, match="tau"):
        targets(z, torch.ones(2), 0.0)
    with pytest.raises(UserError, match="retain_target"):
        targets(z, torch.ones(2), 1.0, retain_target="soft")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_targets_accept_cpu_flags_for_cuda_logits() -> None:
    """The run passes CPU batch positions as flags while the logits live on the GPU."""
    z = torch.randn(16, 5, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    t = targets(z, torch.arange(16) < 8, 2.0, gen)
    assert t.device.type == "cuda"
    torch.testing.assert_close(t.sum(1), torch.ones(16, device="cuda"))


# --- the run -------------------------------------------------------------------------------------------------


def rounded_acc(model: torch.nn.Module, data: TensorData, digits: int | None = 2) -> float:
    p = predict(model, data, device="cpu")
    acc = int((p.logits.argmax(1) == p.labels).sum()) / len(p.labels)
    return acc if digits is None else round(acc, digits)


@pytest.fixture(scope="module")
def untrained() -> torch.nn.Module:
    """A random-init CNN: accuracy near chance."""
    torch.manual_seed(123)
    return lu.create_model("cnn", num_classes=10, in_channels=1, image_size=8, width=8, hidden=32)


def test_stops_before_training_when_already_below_reference(untrained: nn.Module, digits_split: Pair) -> None:
    forget, retain = digits_split
    before = state(untrained)
    result = lu.unlearn(untrained, forget, retain, a_ref=1.0, epochs=3, **FAST)
    assert result.epochs_run == 0
    assert same_weights(state(result.model), before)
    assert result.log[0]["stopped"] is True


def test_one_point_drop_stops_and_half_point_does_not(untrained: nn.Module, digits_split: Pair) -> None:
    forget, retain = digits_split
    a_f = rounded_acc(untrained, forget)
    stopped = lu.unlearn(untrained, forget, retain, a_ref=a_f + 0.01, epochs=1, **FAST)
    assert stopped.epochs_run == 0  # a_f - (a_f + 0.01) is a hair above -0.01 in floating point
    ran = lu.unlearn(untrained, forget, retain, a_ref=a_f, epochs=1, **FAST)
    assert ran.epochs_run == 1


def test_missing_a_ref_without_val_is_one_clear_error(digits_original: nn.Module, digits_split: Pair) -> None:
    forget, retain = digits_split
    with pytest.raises(UserError, match="a_ref") as info:
        lu.unlearn(digits_original, forget, retain, epochs=1, **FAST)
    assert "\n" not in str(info.value)


def test_a_ref_is_measured_on_val_and_rounded(
    digits: DatasetBundle, digits_original: nn.Module, digits_split: Pair
) -> None:
    forget, retain = digits_split
    exact = rounded_acc(digits_original, digits.val, None)
    r2 = lu.unlearn(digits_original, forget, retain, val=digits.val, epochs=1, **FAST)
    assert r2.log[0]["a_ref"] == round(exact, 2)
    assert r2.log[0]["acc_forget"] == round(r2.log[0]["acc_forget"], 2)
    exact_run = lu.unlearn(digits_original, forget, retain, val=digits.val, epochs=1, round_acc=None, **FAST)
    entry = exact_run.log[0]
    assert entry["a_ref"] == pytest.approx(exact, abs=1e-12)
    assert entry["acc_forget"] == pytest.approx(rounded_acc(digits_original, forget, None), abs=1e-12)
    assert entry["tau"] == pytest.approx(temperature(entry["acc_diff"], 2.0))


def test_teacher_is_frozen_and_input_untouched(
    digits_original: nn.Module, digits_split: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    forget, retain = digits_split
    seen: dict[str, Any] = {}
    run = Lotus.run

    def spy(self: Lotus, ctx: Any) -> int:
        seen["ctx"], seen["teacher_before"] = ctx, state(ctx.original)
        return run(self, ctx)

    monkeypatch.setattr(Lotus, "run", spy)
    before = state(digits_original)
    training = digits_original.training
    flags = [p.requires_grad for p in digits_original.parameters()]
    result = lu.unlearn(digits_original, forget, retain, a_ref=0.5, epochs=2, lr=1e-3, cache_teacher=False, **FAST)
    assert result.epochs_run == 2
    teacher = seen["ctx"].original
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    assert same_weights(state(teacher), seen["teacher_before"])
    assert same_weights(state(digits_original), before)
    assert digits_original.training == training
    assert [p.requires_grad for p in digits_original.parameters()] == flags
    assert not same_weights(state(result.model), before)  # the copy did train


def test_first_forget_check_reuses_the_cached_teacher_logits(
    untrained: nn.Module, digits_split: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    forget, retain = digits_split
    calls: list[int] = []
    measure = lotus_mod.accuracy

    def spy(ctx: Any, model: nn.Module, data: Any) -> float:
        calls.append(len(data))
        return measure(ctx, model, data)

    monkeypatch.setattr(lotus_mod, "accuracy", spy)
    kw = {**FAST, "epochs": 3, "lr": 1e-3, "a_ref": 0.0, "round_acc": None}
    cached = lu.unlearn(untrained, forget, retain, **kw)
    assert calls == [len(forget)] * 2  # epochs 1 and 2 measure the trained copy; epoch 0 reads the cache
    calls.clear()
    fresh = lu.unlearn(untrained, forget, retain, **kw, cache_teacher=False)
    assert calls == [len(forget)] * 3
    assert cached.log[0]["acc_forget"] == fresh.log[0]["acc_forget"] == rounded_acc(untrained, forget, None)
    assert 0.0 < cached.log[0]["acc_forget"] < 1.0  # a value that a wrong row or label would move
    assert all(0.0 <= e["check_seconds"] <= e["seconds"] for e in cached.log + fresh.log)


def test_retain_subset_size_and_reproducibility(
    digits_original: nn.Module, digits_split: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    forget, retain = digits_split
    subsets: list[TensorData] = []
    original = base_mod.random_subset  # LoTUS draws its subset through base.forget_and_retain_subset

    def spy(data: Any, fraction: float, generator: torch.Generator) -> Any:
        out = original(data, fraction, generator)
        subsets.append(out)
        return out

    monkeypatch.setattr(base_mod, "random_subset", spy)
    for seed in (0, 0, 1):
        lu.unlearn(digits_original, forget, retain, a_ref=1.0, epochs=0, **{**FAST, "seed": seed})
    assert [len(s) for s in subsets] == [math.floor(0.3 * len(retain))] * 3
    ids = [set(s.ids.tolist()) for s in subsets]
    assert ids[0] <= set(retain.ids.tolist())
    assert ids[0] == ids[1]
    assert ids[0] != ids[2]


def test_deterministic_for_a_fixed_seed(digits_original: nn.Module, digits_split: Pair) -> None:
    forget, retain = digits_split
    kw = {**FAST, "augment": True, "epochs": 2, "lr": 1e-3, "a_ref": 0.5}
    a = lu.unlearn(digits_original, forget, retain, **kw)
    b = lu.unlearn(digits_original, forget, retain, **kw)
    c = lu.unlearn(digits_original, forget, retain, **{**kw, "seed": 1})
    assert same_weights(state(a.model), state(b.model))
    assert [e["loss"] for e in a.log] == [e["loss"] for e in b.log]
    assert not same_weights(state(a.model), state(c.model))


def test_round_acc_none_runs(digits: DatasetBundle, digits_original: nn.Module, digits_split: Pair) -> None:
    forget, retain = digits_split
    result = lu.unlearn(digits_original, forget, retain, val=digits.val, epochs=1, round_acc=None, **FAST)
    assert result.epochs_run == 1
    assert result.hparams["round_acc"] is None


def test_class_wise_runs_all_epochs(digits: DatasetBundle, digits_original: nn.Module) -> None:
    forget, retain = class_split(digits.train, [3]).apply(digits.train)
    result = lu.unlearn(digits_original, forget, retain, a_ref=0.0, alpha=32.0, epochs=3, lr=1e-3, **FAST)
    assert result.epochs_run == 3
    assert not any(e.get("stopped") for e in result.log)
    assert all(e["tau"] == pytest.approx(math.exp(32.0 * e["acc_forget"])) for e in result.log)


def test_plain_datasets_and_dataloaders_work(digits_original: nn.Module, digits_split: Pair) -> None:
    """The generic (non-TensorData) path: a plain Dataset and a DataLoader over one."""
    forget, retain = digits_split

    class Plain(torch.utils.data.Dataset):
        def __init__(self, data: TensorData) -> None:
            self.data = data

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            x, y = self.data[i]
            return x, int(y)

    loader = torch.utils.data.DataLoader(Plain(retain), batch_size=32)
    result = lu.unlearn(digits_original, Plain(forget), loader, a_ref=0.5, epochs=1, lr=1e-3, **FAST)
    assert result.epochs_run == 1
    assert math.isfinite(result.log[0]["loss"])


def test_unknown_hparam_is_a_value_error_naming_it(digits_original: nn.Module, digits_split: Pair) -> None:
    forget, retain = digits_split
    with pytest.raises(ValueError, match="alhpa"):
        lu.unlearn(digits_original, forget, retain, a_ref=0.9, alhpa=2.0)


def test_ill_typed_hparams_are_user_errors(digits_original: nn.Module, digits_split: Pair) -> None:
    forget, retain = digits_split
    with pytest.raises(UserError, match="alpha"):
        lu.unlearn(digits_original, forget, retain, a_ref=0.9, alpha="abc")
    with pytest.raises(UserError, match="epochs"):
        lu.unlearn(digits_original, forget, retain, a_ref=0.9, epochs=1.5)
    assert Lotus(alpha="8", round_acc="none").cfg.alpha == 8.0  # CLI strings are coerced


def test_forgets_on_a_memorising_model(digits: DatasetBundle, digits_original: nn.Module, digits_split: Pair) -> None:
    """The forget predictions become less confident and higher in entropy than the original's."""
    forget, retain = digits_split
    result = lu.unlearn(digits_original, forget, retain, val=digits.val, alpha=8.0, lr=1e-3, epochs=5, **FAST)
    before = predict(digits_original, forget, device="cpu").logits
    after = predict(result.model, forget, device="cpu").logits
    assert result.epochs_run >= 1
    assert after.softmax(1).max(1).values.mean() < before.softmax(1).max(1).values.mean()
    assert entropy(after).mean() > 1.2 * entropy(before).mean()
