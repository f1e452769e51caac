"""Method-specific invariants of the baselines, the shared building blocks they use, and hand-checked formulas."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import lotus_unlearn as lu
from lotus_unlearn.data import class_split, concat
from lotus_unlearn.errors import UserError
from lotus_unlearn.methods import bad_teacher as bad_teacher_mod
from lotus_unlearn.methods import base
from lotus_unlearn.methods import finetune as finetune_mod
from lotus_unlearn.methods import neggrad_plus as neggrad_plus_mod
from lotus_unlearn.methods import salun as salun_mod
from lotus_unlearn.methods.base import (
    Config,
    ParamMask,
    distill_kl,
    make_context,
    mean_gradients,
    random_wrong_labels,
)
from lotus_unlearn.methods.ssd import SSDConfig, dampen, dampening_factors
from lotus_unlearn.metrics.predict import predict
from lotus_unlearn.models import reinitialized_copy

FAST: dict[str, Any] = {"device": "cpu", "seed": 0, "augment": False}


pytestmark = pytest.mark.usefixtures("one_thread")


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def equal_states(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- SSD ---------------------------------------------------------------------------------------------------------


def test_ssd_dampening_formula_by_hand():
    """alpha = 10, lambda = 1: select where I_f > 10 I_D, scale by min(1, I_D / I_f)."""
    i_f = torch.tensor([1.0, 5.0, 20.0, 30.0, 0.0, 10.0])
    i_d = torch.tensor([1.0, 1.0, 1.0, 2.0, 0.0, 1.0])
    # 1 > 10? no; 5 > 10? no; 20 > 10: 1/20; 30 > 20: 2/30; 0 > 0? no; 10 > 10? no (strict)
    expected = torch.tensor([1.0, 1.0, 0.05, 2.0 / 30.0, 1.0, 1.0])
    assert torch.allclose(dampening_factors(i_f, i_d, 10.0, 1.0), expected)
    # lambda = 15: 15/20 = 0.75 dampens; 15 * 2/30 = 1.0 is capped at 1 (never amplifies)
    expected_15 = torch.tensor([1.0, 1.0, 0.75, 1.0, 1.0, 1.0])
    assert torch.allclose(dampening_factors(i_f, i_d, 10.0, 15.0), expected_15)

    p = nn.Parameter(torch.tensor([2.0, -3.0, 4.0, 6.0, 1.0, 7.0]))
    n = dampen([p], [i_f], [i_d], 10.0, 1.0)
    assert n == 2
    assert torch.allclose(p.detach(), torch.tensor([2.0, -3.0, 0.2, 0.4, 1.0, 7.0]))


def test_ssd_leaves_unselected_weights_bit_identical(digits_split, digits_original):
    forget, retain = digits_split
    result = lu.unlearn(digits_original, forget, retain, method="ssd", **FAST)
    # The same importances, recomputed with SSD's seed and batch order: forget first, then the full train set.
    cfg = SSDConfig(**FAST)
    ctx = make_context(digits_original, forget, retain, None, cfg)
    i_f = mean_gradients(ctx, ctx.model, forget, square=True)
    i_d = mean_gradients(ctx, ctx.model, concat([forget, retain]), square=True)
    before, after = params_of(digits_original), dict(result.model.named_parameters())
    n_selected, n_changed = 0, 0
    for (name, p0), f, d in zip(before.items(), i_f, i_d, strict=True):
        selected = f > cfg.alpha * d
        n_selected += int(selected.sum())
        p1 = after[name].detach()
        assert torch.equal(p1[~selected], p0[~selected]), name  # below the threshold: untouched, bit for bit
        factor = (cfg.dampening * d / f).clamp(max=1.0)
        assert torch.allclose(p1[selected], p0[selected] * factor[selected]), name
        n_changed += int((p1 != p0).sum())
    assert 0 < n_changed <= n_selected == result.log[-1]["selected"]
    assert result.epochs_run == 1  # one-shot, whatever `epochs` says


def test_ssd_is_one_shot(digits_split, digits_original):
    forget, retain = digits_split
    a = lu.unlearn(digits_original, forget, retain, method="ssd", **FAST)
    b = lu.unlearn(digits_original, forget, retain, method="ssd", epochs=10, **FAST)
    assert equal_states(a.model, b.model)


# --- SalUn and the generic mask hook -----------------------------------------------------------------------------


def test_param_mask_top_fraction_by_hand():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2, 2))
    scores = [torch.tensor([0.1, 0.9]), torch.tensor([[0.5, 0.0], [0.3, 0.7]])]
    mask = ParamMask.top_fraction([a, b], scores, 0.5)  # 6 entries -> the 3 largest: 0.9, 0.7, 0.5
    (_, keep_a, _), (_, keep_b, _) = mask.entries
    assert keep_a.tolist() == [False, True]
    assert keep_b.tolist() == [[True, False], [False, True]]
    assert mask.density == 0.5
    with pytest.raises(UserError, match="mask_density"):
        ParamMask.top_fraction([a], [scores[0]], 0.0)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_mask_hook_freezes_masked_out_weights_under_weight_decay_and_momentum(digits_split, digits_original, optimizer):
    """base.step + ctx.param_mask: nothing moves a masked-out weight, not even decay or momentum from the past."""
    forget, retain = digits_split
    cfg = Config(**FAST, optimizer=optimizer, lr=0.05, momentum=0.9, weight_decay=0.1, batch_size=64)
    ctx = make_context(digits_original, forget, retain, None, cfg)
    params = list(ctx.model.parameters())
    gen = torch.Generator().manual_seed(1)
    ctx.param_mask = ParamMask.top_fraction(params, [torch.rand(p.shape, generator=gen) for p in params], 0.3)
    start = [p.detach().clone() for p in params]
    opt = base.make_optimizer(params, cfg)
    base.run_epoch(ctx, retain, base.cross_entropy(ctx), opt, "test")
    for p, p0, (_, keep, _) in zip(params, start, ctx.param_mask.entries, strict=True):
        assert torch.equal(p.detach()[~keep], p0[~keep])
        assert (p.detach()[keep] != p0[keep]).any()
        for value in opt.state[p].values():
            if isinstance(value, torch.Tensor) and value.shape == p.shape:
                assert not value[~keep].any()  # momentum / moments of masked-out entries stay zero


@pytest.mark.parametrize(
    ("base_method", "extra"),
    [
        ("random_label", {"weight_decay": 0.05, "momentum": 0.9, "lr": 0.02}),
        ("lotus", {"weight_decay": 0.05, "lr": 1e-3}),  # AdamW: decoupled decay on every weight it updates
    ],
)
def test_salun_mask_density_and_frozen_weights(monkeypatch, digits, digits_split, digits_original, base_method, extra):
    forget, retain = digits_split
    captured = []
    real_mask = salun_mod.saliency_mask

    def spy(ctx, density):
        captured.append(real_mask(ctx, density))
        return captured[-1]

    monkeypatch.setattr(salun_mod, "saliency_mask", spy)
    density = 0.3
    result = lu.unlearn(
        digits_original, forget, retain, val=digits.val, method="salun", base=base_method,
        mask_density=density, epochs=2, batch_size=64, **extra, **FAST,
    )  # fmt: skip
    (mask,) = captured
    n = sum(p.numel() for p in digits_original.parameters())
    assert mask.density == round(density * n) / n
    assert result.log[0]["mask_density"] == mask.density
    before, after = params_of(digits_original), dict(result.model.named_parameters())
    changed = 0
    for (name, p0), (_, keep, _) in zip(before.items(), mask.entries, strict=True):
        p1 = after[name].detach()
        assert torch.equal(p1[~keep], p0[~keep]), name
        changed += int((p1[keep] != p0[keep]).sum())
    assert changed > 0


def test_salun_mask_ranks_by_forget_gradient(digits_split, digits_original):
    """Every kept weight has |gradient of the forget loss| >= every dropped one."""
    forget, retain = digits_split
    ctx = make_context(digits_original, forget, retain, None, salun_mod.SalunConfig(**FAST))
    grads = [g.abs() for g in mean_gradients(ctx, ctx.model, forget)]
    ctx = make_context(digits_original, forget, retain, None, salun_mod.SalunConfig(**FAST))
    mask = salun_mod.saliency_mask(ctx, 0.5)
    kept = torch.cat([g[k] for g, (_, k, _) in zip(grads, mask.entries, strict=True)])
    dropped = torch.cat([g[~k] for g, (_, k, _) in zip(grads, mask.entries, strict=True)])
    assert kept.min() >= dropped.max()


def test_salun_refuses_unknown_base_and_hparams_of_the_other_base():
    with pytest.raises(UserError, match="base"):
        lu.METHODS["salun"](base="scrub")
    with pytest.raises(ValueError, match="alpha"):  # a LoTUS knob, not accepted with base=random_label
        lu.METHODS["salun"](alpha=4.0)
    assert lu.METHODS["salun"](base="lotus", alpha=4.0).cfg.alpha == 4.0


# --- Bad Teacher -------------------------------------------------------------------------------------------------


def test_bad_teacher_incompetent_teacher_is_random_and_never_updated(monkeypatch, digits_split, digits_original):
    forget, retain = digits_split
    made = []

    def spy(model, seed, device):
        teacher = original_factory(model, seed, device)
        made.append((teacher, {k: v.clone() for k, v in teacher.state_dict().items()}))
        return teacher

    original_factory = bad_teacher_mod.incompetent_teacher
    monkeypatch.setattr(bad_teacher_mod, "incompetent_teacher", spy)
    result = lu.unlearn(digits_original, forget, retain, method="bad_teacher", lr=1e-3, batch_size=64, **FAST)
    ((teacher, snapshot),) = made
    assert all(torch.equal(v, snapshot[k]) for k, v in teacher.state_dict().items())  # never updated
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    trained = dict(digits_original.named_parameters())
    for name, p in teacher.named_parameters():
        assert not torch.equal(p, trained[name]), f"{name} kept the trained weights"
    assert not equal_states(result.model, digits_original)


# --- NegGrad+ and NegGrad ----------------------------------------------------------------------------------------


def test_neggrad_plus_with_beta_1_is_finetuning_step_for_step(monkeypatch, digits_split, digits_original):
    forget, retain = digits_split
    real_step = base.step
    losses: dict[str, list[float]] = {"finetune": [], "neggrad_plus": []}

    def recording(key):
        def spy(ctx, optimizer, loss, where, clip=None):
            losses[key].append(float(loss.detach()))
            return real_step(ctx, optimizer, loss, where, clip)

        return spy

    hp = {"epochs": 2, "lr": 0.05, "batch_size": 64, **FAST}
    monkeypatch.setattr(base, "step", recording("finetune"))  # finetune steps through base.run_epoch
    ft = lu.unlearn(digits_original, forget, retain, method="finetune", **hp)
    monkeypatch.setattr(base, "step", recording("neggrad_plus"))  # so does neggrad_plus
    ngp = lu.unlearn(digits_original, forget, retain, method="neggrad_plus", beta=1.0, **hp)

    assert len(losses["finetune"]) == len(losses["neggrad_plus"]) == 2 * math.ceil(len(retain) / 64)
    assert torch.allclose(torch.tensor(losses["finetune"]), torch.tensor(losses["neggrad_plus"]))
    a, b = ft.model.state_dict(), ngp.model.state_dict()
    assert all(torch.allclose(a[k], b[k]) for k in a)
    # beta < 1 really adds the ascent term
    other = lu.unlearn(digits_original, forget, retain, method="neggrad_plus", beta=0.9, **hp).model.state_dict()
    assert not all(torch.allclose(a[k], other[k]) for k in a)
    # the two methods share their default recipe, so the equivalence holds for defaults too
    ft_cfg, ngp_cfg = finetune_mod.FinetuneConfig(), neggrad_plus_mod.NegGradPlusConfig()
    for k in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "optimizer"):
        assert getattr(ft_cfg, k) == getattr(ngp_cfg, k), k


def test_neggrad_ascends_and_stops_once_forget_loss_passes_chance(digits_split, digits_original):
    forget, retain = digits_split
    result = lu.unlearn(digits_original, forget, retain, method="neggrad", lr=0.5, epochs=50, batch_size=32, **FAST)
    assert result.log[-1]["stopped"] and result.epochs_run < 50
    p = predict(result.model, forget, device="cpu")
    assert float(F.cross_entropy(p.logits, p.labels)) > 0.5  # it ascended, far from the original's ~0.004


def test_nan_loss_raises_unlearning_failed(digits_split, digits_original):
    _, retain = digits_split
    bad = [(torch.full((1, 8, 8), float("nan")), 0)] * 4  # a plain Dataset (list) whose inputs are NaN
    with pytest.raises(lu.UnlearningFailed, match="NegGrad"):
        lu.unlearn(digits_original, bad, retain, method="neggrad", **FAST)


# --- SCRUB -------------------------------------------------------------------------------------------------------


def test_scrub_updates_the_student_it_returns(digits_split, digits_original):
    """The reference's optimizer updated another module, so its SCRUB returned the original. With SCRUB's own
    defaults (SGD 5e-4, 3 epochs) ours must move the weights and the outputs on the forget set."""
    forget, retain = digits_split
    result = lu.unlearn(digits_original, forget, retain, method="scrub", **FAST)
    assert not equal_states(result.model, digits_original)
    before = predict(digits_original, forget, device="cpu").logits
    after = predict(result.model, forget, device="cpu").logits
    assert (after - before).abs().max() > 1e-3
    assert [e.get("forget_kl") is not None for e in result.log] == [True, True, False]  # msteps = 2 of 3 epochs


def test_scrub_max_step_raises_forget_kl(digits_split, digits_original):
    forget, retain = digits_split
    result = lu.unlearn(digits_original, forget, retain, method="scrub", lr=5e-3, epochs=2, batch_size=64, **FAST)
    t = predict(digits_original, forget, device="cpu").logits
    s = predict(result.model, forget, device="cpu").logits
    assert float(distill_kl(s, t, 4.0)) > 1e-3


# --- UNSIR -------------------------------------------------------------------------------------------------------


def test_unsir_class_wise_forgets_the_class(digits, digits_original):
    forget, retain = class_split(digits.train, [3]).apply(digits.train)
    result = lu.unlearn(digits_original, forget, retain, method="unsir", batch_size=64, noise_steps=20, **FAST)
    assert result.log[0]["kind"] == "class-wise" and result.log[0]["forget_classes"] == [3]
    assert result.log[0]["noise_samples"] == len(forget)  # as many noise samples as forget samples
    f, r = predict(result.model, forget, device="cpu"), predict(result.model, retain, device="cpu")
    acc_f = float((f.logits.argmax(1) == f.labels).float().mean())
    acc_r = float((r.logits.argmax(1) == r.labels).float().mean())
    assert acc_f < 0.5 and acc_r > 0.9


def test_unsir_instance_wise_runs_the_per_class_variant(digits_split, digits_original):
    forget, retain = digits_split
    result = lu.unlearn(digits_original, forget, retain, method="unsir", batch_size=64, noise_steps=5, **FAST)
    assert result.log[0]["kind"] == "instance-wise (per-class variant)"
    assert result.log[0]["forget_classes"] == list(range(10))


# --- Retrain -----------------------------------------------------------------------------------------------------


def test_retrain_reproduces_training_a_fresh_model_on_retain(digits_split, digits_original):
    """Re-initialising the original's architecture with the seed that built it gives the same initial weights as
    building it fresh, so retrain equals `train_model(fresh model, retain)` with the same recipe, bit for bit.
    (Compared in-test rather than with the `digits_gold` fixture: summation order, hence the last bits, depends
    on the torch thread count the fixture was built under.)"""
    forget, retain = digits_split
    recipe = {"epochs": 15, "lr": 0.05, "batch_size": 64, **FAST}
    result = lu.unlearn(digits_original, forget, retain, method="retrain", **recipe)
    torch.manual_seed(0)  # how the fixtures build the architecture
    fresh = lu.create_model("cnn", num_classes=10, in_channels=1, image_size=8, width=16, hidden=128)
    assert equal_states(result.model, lu.train_model(fresh, retain, **recipe).model)
    assert result.epochs_run == 15 and len(result.log) == 15


# --- shared building blocks --------------------------------------------------------------------------------------


def test_reinitialized_copy_is_fresh_seeded_and_leaves_global_rng_alone(digits_original):
    state = torch.random.get_rng_state()
    a, b = reinitialized_copy(digits_original, 3), reinitialized_copy(digits_original, 3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert equal_states(a, b)
    assert not equal_states(a, reinitialized_copy(digits_original, 4))
    trained = dict(digits_original.named_parameters())
    assert all(not torch.equal(p, trained[k]) for k, p in a.named_parameters())


def test_reinitialized_copy_covers_parameters_without_reset(digits_original):
    vit = lu.create_model("vit", num_classes=10, in_channels=1, image_size=8, dim=16, depth=1, heads=2)
    with torch.no_grad():
        for p in vit.parameters():
            p.fill_(3.0)  # pretend-trained
    fresh = reinitialized_copy(vit, 0)
    for name, p in fresh.named_parameters():
        assert not torch.all(p == 3.0), name  # class token, position embedding and MHA projections included


def test_distill_kl_by_hand():
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])  # p_t = (3/4, 1/4), p_s = (1/2, 1/2)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert math.isclose(float(distill_kl(s, t, 1.0)), kl, rel_tol=1e-6)
    # T = 2: p_t = softmax((ln 3, 0) / 2) = (sqrt3, 1) / (sqrt3 + 1), times T^2 = 4
    q = math.sqrt(3.0) / (math.sqrt(3.0) + 1.0)
    kl2 = q * math.log(q / 0.5) + (1 - q) * math.log((1 - q) / 0.5)
    assert math.isclose(float(distill_kl(s, t, 2.0)), 4.0 * kl2, rel_tol=1e-6)
    assert float(distill_kl(t, t, 4.0)) == pytest.approx(0.0, abs=1e-7)


def test_random_wrong_labels_are_wrong_and_cover_the_other_classes():
    y = torch.arange(5).repeat(2000)
    z = random_wrong_labels(y, 5, torch.Generator().manual_seed(0))
    assert not (z == y).any()
    counts = torch.bincount(z[y == 2], minlength=5)
    assert counts[2] == 0 and (counts[[0, 1, 3, 4]] > 400).all()  # ~500 each of the 4 others
