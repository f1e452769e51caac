"""`lu.evaluate`: exact keys, agreement with the pure metric functions, one pass per (model, split)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

import lotus_unlearn as lu
from lotus_unlearn.errors import UserError
from lotus_unlearn.metrics import (
    PredictionCache,
    accuracy,
    attack_views,
    avg_gap,
    jsd,
    mia,
    mia_holdout_accuracy,
    per_class_accuracy,
    predict,
    rf_jsd,
    rf_jsd_floor,
    zrf,
)
from lotus_unlearn.metrics.evaluate import random_init_copy
from lotus_unlearn.metrics.rfgap import rf_gap_of

BASE = ["acc_forget", "acc_retain", "acc_test", "acc_val", "mia", "zrf"]
WITH_ORIGINAL = ["rf_jsd", "original_acc_forget", "original_acc_retain", "original_acc_test", "original_acc_val"]
WITH_ORIGINAL += ["original_mia", "original_rf_jsd"]
WITH_ORIGINAL_END = ["rf_gap", "original_rf_gap"]
WITH_GOLD = ["jsd", "avg_gap", "gold_acc_forget", "gold_acc_retain", "gold_acc_test", "gold_acc_val", "gold_mia"]


class Counting(nn.Module):
    """Wraps a model and counts the samples it sees, to check that no split is predicted twice."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return self.inner(x)


def small_net(seed: int, batchnorm: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Conv2d(1, 4, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(4))  # 0-dim buffer num_batches_tracked must hash
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 10)]
    return nn.Sequential(*layers)


@pytest.fixture(scope="module")
def splits(digits, digits_split):
    forget, retain = digits_split
    return {"forget": forget, "retain": retain, "test": digits.test, "val": digits.val}


@pytest.fixture(scope="module")
def unlearned(digits_original):
    """A stand-in for an unlearned model: the original with its weights perturbed."""
    model = copy.deepcopy(digits_original)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def scalar_keys(report: dict) -> list[str]:
    return [k for k in report if k != "diagnostics"]


def test_keys_are_exactly_the_designs(splits):
    model, original, gold = small_net(0), small_net(1), small_net(2)
    assert scalar_keys(lu.evaluate(model, splits)) == BASE
    no_val = {k: v for k, v in splits.items() if k != "val"}
    assert scalar_keys(lu.evaluate(model, no_val)) == [k for k in BASE if k != "acc_val"]
    assert scalar_keys(lu.evaluate(model, splits, original=original)) == BASE + WITH_ORIGINAL + WITH_ORIGINAL_END
    assert scalar_keys(lu.evaluate(model, splits, gold=gold)) == BASE + WITH_GOLD
    full = lu.evaluate(model, splits, original=original, gold=gold)
    ends = [*WITH_ORIGINAL_END, "gold_rf_gap"]
    assert scalar_keys(full) == BASE + WITH_ORIGINAL + WITH_GOLD + ["gold_rf_jsd"] + ends
    assert all(isinstance(full[k], float) for k in scalar_keys(full))
    diag = full["diagnostics"]
    for key in ("per_class_acc", "entropy", "mia_attack_holdout_acc", "attack", "rf_jsd_floor", "needs_gold"):
        assert key in diag
    assert set(diag["entropy"]) == {"forget", "retain", "test"}
    assert sum(diag["entropy"]["retain"]["counts"]) == len(splits["retain"])
    for prefix in ("", "original_", "gold_"):  # the same per-model diagnostics for each model
        for key in ("entropy", "attack", "mia_test_rate", "per_class_acc", "true_class_confidence_forget_hist"):
            assert prefix + key in diag
    assert diag["needs_gold"] == []
    assert lu.evaluate(model, splits)["diagnostics"]["needs_gold"] == ["jsd", "avg_gap"]


def test_missing_floor_is_reported_not_fatal(splits):
    val = splits["val"]
    no_class_0 = {**splits, "val": val.subset(torch.nonzero(val.labels != 0).flatten())}
    report = lu.evaluate(small_net(10), no_class_0, original=small_net(11))
    assert report["diagnostics"]["rf_jsd_floor"] is None
    assert "class 0" in report["diagnostics"]["rf_jsd_floor_error"]
    assert "rf_gap" not in report and "class 0" in report["diagnostics"]["rf_gap_error"]


def test_evaluate_agrees_with_pure_functions_on_one_predict_pass(splits, unlearned, digits_original, digits_gold):
    report = lu.evaluate(unlearned, splits, original=digits_original, gold=digits_gold)
    u = {k: predict(unlearned, d) for k, d in splits.items()}
    o = {k: predict(digits_original, d) for k, d in splits.items()}
    g = {k: predict(digits_gold, d) for k, d in splits.items()}
    r = predict(random_init_copy(unlearned, seed=0), splits["forget"])

    def nonmember(p):
        return torch.cat([p["test"].logits, p["val"].logits])

    def rf(test, forget):
        return rf_jsd(
            original_test_logits=test.logits,
            test_labels=test.labels,
            unlearned_forget_logits=forget.logits,
            forget_labels=forget.labels,
        )

    expected = {}
    for prefix, p in (("", u), ("original_", o), ("gold_", g)):
        for k in ("forget", "retain", "test", "val"):
            expected[f"{prefix}acc_{k}"] = accuracy(p[k].logits, p[k].labels)
        expected[f"{prefix}mia"] = mia(p["retain"].logits, nonmember(p), p["forget"].logits)
    expected["zrf"] = zrf(u["forget"].logits, r.logits)
    expected["rf_jsd"] = rf(o["test"], u["forget"])
    expected["original_rf_jsd"] = rf(o["test"], o["forget"])
    expected["gold_rf_jsd"] = rf(o["test"], g["forget"])
    expected["jsd"] = jsd(u["forget"].logits.softmax(1), g["forget"].logits.softmax(1))
    method = {k: expected[k] for k in ("mia", "acc_forget", "acc_retain", "acc_test")}
    expected["avg_gap"] = avg_gap(method, {k: expected[f"gold_{k}"] for k in method})
    for prefix, p in (("", u), ("original_", o), ("gold_", g)):  # RF-Gap: unseen data = val, targets = f_o's
        expected[f"{prefix}rf_gap"] = rf_gap_of(p, o)["rf_gap"]

    assert set(scalar_keys(report)) == set(expected)
    for key, value in expected.items():
        assert report[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    diag = report["diagnostics"]
    assert diag["per_class_acc"]["forget"] == per_class_accuracy(u["forget"].logits, u["forget"].labels)
    assert diag["attack"] == pytest.approx(
        attack_views(u["forget"].logits, u["forget"].labels, u["test"].logits, u["test"].labels)
    )
    assert diag["mia_attack_holdout_acc"] == pytest.approx(mia_holdout_accuracy(u["retain"].logits, nonmember(u)))
    assert diag["mia_test_rate"] == pytest.approx(mia(u["retain"].logits, nonmember(u), u["test"].logits))
    floor = rf_jsd_floor(
        original_val_logits=o["val"].logits,
        val_labels=o["val"].labels,
        original_test_logits=o["test"].logits,
        test_labels=o["test"].labels,
        forget_labels=u["forget"].labels,
    )
    assert diag["rf_jsd_floor"] == pytest.approx(floor)
    # sanity of the numbers themselves: the memorising original is more confident on forget than the gold model
    assert report["original_acc_forget"] >= report["gold_acc_forget"]


def test_each_model_predicts_each_split_once(splits):
    model, original, gold = (Counting(small_net(s)) for s in (10, 11, 12))
    cache = PredictionCache()
    lu.evaluate(model, splits, original=original, gold=gold, cache=cache)
    total = sum(len(d) for d in splits.values())
    assert cache.misses == 3 * 4 + 1  # three models x four splits, plus the random model on forget
    assert (model.seen, original.seen, gold.seen) == (total, total, total)
    lu.evaluate(model, splits, original=original, gold=gold, cache=cache)
    assert cache.misses == 13  # a second evaluation with the same cache runs nothing
    assert model.seen == total


def test_cache_keys_on_content(splits):
    model = small_net(10)  # not seed 0: that equals evaluate's seeded random model, which the cache would reuse
    cache = PredictionCache()
    report = lu.evaluate(model, splits, original=copy.deepcopy(model), cache=cache)
    assert cache.misses == 4 + 1  # the original's weights equal the model's: reused
    assert report["rf_jsd"] == report["original_rf_jsd"]
    forget = splits["forget"]
    same_content = forget.subset(torch.arange(len(forget)))
    cache.get(model, same_content)
    assert cache.misses == 5
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed[0].weight.add_(1.0)
    cache.get(changed, forget)
    assert cache.misses == 6


def test_evaluate_leaves_the_model_alone(splits):
    model = small_net(0).train()
    before = copy.deepcopy(model.state_dict())
    rng_before = torch.random.get_rng_state()
    lu.evaluate(model, splits)
    assert model.training
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_random_init_copy_reinitialises_every_parameter():
    vit = lu.create_model("vit", num_classes=3, in_channels=1, image_size=8, dim=16, depth=1, heads=2)
    del vit.lotus_spec  # force the generic path (deep copy + re-initialisation)
    with torch.no_grad():  # stand-in for training: move every parameter away from any initial value
        for p in vit.parameters():
            p.add_(0.5)
    rand = random_init_copy(vit, seed=0)
    for (name, p), q in zip(vit.named_parameters(), rand.parameters(), strict=True):
        assert not torch.isclose(p, q).any(), name  # incl. cls / pos tokens and attention in_proj weights
    again = random_init_copy(vit, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(rand.parameters(), again.parameters(), strict=True))


def test_evaluate_accepts_dataloaders_and_plain_datasets(digits, digits_split):
    forget, retain = digits_split

    def plain(d):
        return TensorDataset(d.normalized(torch.arange(len(d))), d.labels)

    model = small_net(0)
    as_tensor_data = lu.evaluate(model, {"forget": forget, "retain": retain, "test": digits.test})
    loaders = {"forget": DataLoader(plain(forget), batch_size=7), "retain": plain(retain), "test": plain(digits.test)}
    assert scalar_keys(lu.evaluate(model, loaders)) == [k for k in BASE if k != "acc_val"]
    assert lu.evaluate(model, loaders)["acc_test"] == pytest.approx(as_tensor_data["acc_test"])


class NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1)) * float("nan")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda s: {k: v for k, v in s.items() if k != "retain"}, "missing retain"),
        (lambda s: {**s, "holdout": s["test"]}, "unknown split"),
        (lambda s: {**s, "forget": s["forget"].subset([])}, "forget split is empty"),
    ],
)
def test_bad_splits_raise_one_user_error(splits, make, message):
    with pytest.raises(UserError, match=message):
        lu.evaluate(small_net(0), make(splits))


def test_diverged_model_raises_one_user_error(splits):
    with pytest.raises(UserError, match="NaN or inf"):
        lu.evaluate(NaNModel(), splits)


def test_models_share_one_decode_per_image_with_identical_logits(tmp_path, monkeypatch):
    """On an image folder read from files, evaluating three models decodes each image once, and every model's
    logits equal its own one-model pass bit for bit."""
    from lotus_unlearn.data import folder as folder_mod
    from lotus_unlearn.data.synthetic import write_image_folder
    from lotus_unlearn.metrics.predict import predict_many

    root = write_image_folder(tmp_path, classes=3, train_per_class=6, val_per_class=4, size=8, fmt="jpeg")
    bundle = lu.data.load_dataset("imagefolder", root=root, in_memory=False)
    split = lu.data.instance_split(bundle.train, 0.34, seed=0)
    forget, retain = split.apply(bundle.train)
    data = {"forget": forget, "retain": retain, "val": bundle.val, "test": bundle.test}
    nets = [nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)) for _ in range(3)]
    for i, net in enumerate(nets):
        torch.manual_seed(i)
        for p in net.parameters():
            nn.init.normal_(p, std=0.3)
    decodes: dict[str, int] = {}
    real = folder_mod.decode

    def counting(path, *args):
        decodes[str(path)] = decodes.get(str(path), 0) + 1
        return real(path, *args)

    monkeypatch.setattr(folder_mod, "decode", counting)
    lu.evaluate(nets[0], data, original=nets[1], gold=nets[2], batch_size=5)
    assert len(decodes) == sum(len(d) for d in data.values()) and set(decodes.values()) == {1}
    for d in data.values():
        shared = predict_many(nets, d, batch_size=5)
        for net, p in zip(nets, shared, strict=True):
            alone = predict(net, d, batch_size=5)
            assert torch.equal(p.logits, alone.logits) and torch.equal(p.labels, alone.labels)
            assert torch.equal(p.ids, alone.ids)
