"""Datasets from folders: CIFAR python pickles (restricted unpickler) and ImageFolder trees (in memory or read
per item), their errors, and the retrain-free `unlearn` path end to end on a generated image folder."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lotus_unlearn as lu
from lotus_unlearn.cli import main
from lotus_unlearn.data import batches, load_dataset
from lotus_unlearn.data import folder as folder_mod
from lotus_unlearn.data.base import labels_of
from lotus_unlearn.data.folder import ImageFiles
from lotus_unlearn.data.normalize import NORMALIZATIONS
from lotus_unlearn.data.synthetic import py2_pickle
from lotus_unlearn.errors import UserError
from lotus_unlearn.metrics.predict import predict

ROOT = Path(__file__).resolve().parents[1]

# --- CIFAR ------------------------------------------------------------------------------------------------------


def cifar_arrays(n: int, classes: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    data[:, 0] = np.arange(n) % 256  # red pixel (0, 0) tells samples apart
    return data, [int(v) for v in rng.permutation(np.arange(n) % classes)]


@pytest.fixture
def cifar10_root(tmp_path: Path) -> Path:
    """A cifar-10-batches-py folder with 5 x 7 training and 20 test images, written as Python 2 did."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(py2_pickle({"label_names": names, "num_vis": 3072}))
    for i in range(1, 6):
        data, labels = cifar_arrays(7, 10, i)
        batch = {"batch_label": f"training batch {i} of 5", "labels": labels, "data": data, "filenames": ["a.png"] * 7}
        (folder / f"data_batch_{i}").write_bytes(py2_pickle(batch))
    data, labels = cifar_arrays(20, 10, 0)
    (folder / "test_batch").write_bytes(py2_pickle({"labels": labels, "data": data}))
    return tmp_path


def test_cifar10_python_batches(cifar10_root: Path) -> None:
    bundle = load_dataset("cifar10", root=cifar10_root, seed=0)
    assert bundle.classes[3] == "cat" and bundle.num_classes == 10
    assert len(bundle.train) == 35 and (len(bundle.val), len(bundle.test)) == (10, 10)
    assert bundle.image_shape == (3, 32, 32)
    first, _ = cifar_arrays(7, 10, 1)
    third, third_labels = cifar_arrays(7, 10, 3)
    # ids are positions in data_batch_1..5; CIFAR rows are R, G, B planes of 32 x 32
    assert torch.equal(bundle.train.ids, torch.arange(35))
    assert torch.equal(bundle.train.images[0], torch.from_numpy(first[0].reshape(3, 32, 32)))
    assert bundle.train.labels[14:21].tolist() == third_labels
    assert torch.equal(bundle.train.images[14:21], torch.from_numpy(third.reshape(7, 3, 32, 32)))
    mean, std = NORMALIZATIONS["cifar"]
    assert torch.allclose(bundle.train.mean.flatten(), torch.tensor(mean))
    assert torch.allclose(bundle.train.std.flatten(), torch.tensor(std))
    assert bundle.train.augment.crop_padding == 4 and not bundle.train.augment.flip
    held = sorted(torch.cat([bundle.val.ids, bundle.test.ids]).tolist())
    assert held == list(range(20))  # val and test partition the test batch


def test_cifar100_python3_pickles_with_bytes_keys(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    fine = [f"class{i:02d}" for i in range(100)]
    with open(folder / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": fine, b"coarse_label_names": ["c"] * 20}, f, protocol=2)
    for name, n, protocol in (("train", 300, 4), ("test", 200, 5)):
        data, labels = cifar_arrays(n, 100, n)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"fine_labels": labels, b"coarse_labels": [0] * n}, f, protocol=protocol)
    bundle = load_dataset("cifar100", root=folder, seed=1)  # the folder itself works too
    assert bundle.num_classes == 100 and len(bundle.train) == 300 and len(bundle.val) == 100
    assert bundle.train.labels.tolist() == cifar_arrays(300, 100, 300)[1]


def test_cifar_pickle_that_would_run_code_is_refused(cifar10_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    batch = cifar10_root / "cifar-10-batches-py" / "data_batch_2"
    batch.write_bytes(pickle.dumps({"data": Evil(), "labels": [0]}, protocol=2))
    with pytest.raises(UserError, match=r"refused to read .*data_batch_2: global .* is not allowed"):
        load_dataset("cifar10", root=cifar10_root)
    assert not marker.exists()


def test_cifar_errors_are_one_line(cifar10_root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"cifar-10-batches-py not found in .*--data-root"):
        load_dataset("cifar10", root=tmp_path / "nowhere")
    folder = cifar10_root / "cifar-10-batches-py"
    (folder / "data_batch_4").unlink()
    with pytest.raises(UserError, match=r"lacks data_batch_4; re-download"):
        load_dataset("cifar10", root=cifar10_root)
    (folder / "data_batch_4").write_bytes(b"\x80\x02}q\x00(U\x04data")  # truncated
    with pytest.raises(UserError, match=r"data_batch_4 is not a CIFAR python batch"):
        load_dataset("cifar10", root=cifar10_root)
    (folder / "data_batch_4").write_bytes(py2_pickle({"labels": [1], "data": np.zeros((1, 100), np.uint8)}))
    with pytest.raises(UserError, match=r"not N x 3072 uint8"):
        load_dataset("cifar10", root=cifar10_root)
    with pytest.raises(UserError, match=r"no option\(s\) crop"):
        load_dataset("cifar10", root=cifar10_root, crop=3)


# --- image folders -----------------------------------------------------------------------------------------------

CLASSES = ("cat", "dog", "eel")


def write_images(folder: Path, per_class: int, seed: int, shape: tuple[int, int] = (14, 12)) -> None:
    """`per_class` images per class; the class's colour channel is saturated so a small CNN can learn it."""
    rng = np.random.default_rng(seed)
    for k, c in enumerate(CLASSES):
        (folder / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 200, (*shape, 3)).astype(np.uint8)
            pixels[..., k] = 255
            Image.fromarray(pixels).save(folder / c / f"{i:03d}.{'png' if i % 3 else 'jpg'}")


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    write_images(root / "train", 9, 0)
    write_images(root / "val", 4, 1)
    return root


def test_imagefolder_in_memory_and_lazy_agree(image_root: Path) -> None:
    small = load_dataset("imagefolder", root=image_root, size=8)
    lazy = load_dataset("imagefolder", root=image_root, size=8, in_memory=False)
    assert isinstance(small.train, lu.data.TensorData) and isinstance(lazy.train, ImageFiles)
    assert small.classes == list(CLASSES) and small.image_shape == lazy.image_shape == (3, 8, 8)
    assert torch.equal(small.train.ids, torch.arange(27)) and small.train.labels.tolist() == [0] * 9 + [1] * 9 + [2] * 9
    # held-out val/ alone is split 50/50, stratified, as the other datasets do
    assert (len(small.val), len(small.test)) == (6, 6) and torch.equal(small.val.ids, lazy.val.ids)
    for a, b in zip(batches(small.train, 5, shuffle=True, generator=torch.Generator().manual_seed(0)),
                    batches(lazy.train, 5, shuffle=True, generator=torch.Generator().manual_seed(0)), strict=True):  # fmt: skip
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
    sub = lazy.train.select_ids([20, 3])
    assert torch.equal(sub.normalized(torch.arange(2)), small.train.select_ids([20, 3]).normalized(torch.arange(2)))


def test_imagefolder_resize_crop_matches_pillow(image_root: Path) -> None:
    bundle = load_dataset("imagefolder", root=image_root, size=8, resize=10, channels=1, mean=0.5, std=0.25)
    with Image.open(image_root / "train" / "cat" / "001.png") as im:
        gray = im.convert("L").resize((10, 11), Image.BILINEAR)  # shorter side (12 -> 10), the other in proportion
        expected = np.asarray(gray)[2:10, 1:9]  # centre crop 8 x 8: top round(1.5) = 2, left 1
    assert torch.equal(bundle.train.images[1, 0], torch.from_numpy(expected.copy()))
    assert bundle.image_shape == (1, 8, 8) and bundle.train.std.flatten().tolist() == [0.25]


def test_imagefolder_layouts(tmp_path: Path) -> None:
    root = tmp_path / "mufac"
    write_images(root / "train", 5, 0)
    write_images(root / "val", 2, 1)
    write_images(root / "test", 3, 2)
    bundle = load_dataset("imagefolder", root=root, per_class=3)
    assert (len(bundle.val), len(bundle.test)) == (6, 9)  # both folders, as given
    assert bundle.train.ids.tolist() == [0, 1, 2, 5, 6, 7, 10, 11, 12]  # first 3 per class, ids of the full list

    tiny = tmp_path / "tiny"  # TinyImageNet: train/<wnid>/images/*, val/images + val_annotations.txt, test/images
    for k, c in enumerate(CLASSES):
        write_images(tiny / "train" / c / "images", 2, k)
    (tiny / "val" / "images").mkdir(parents=True)
    (tiny / "test" / "images").mkdir(parents=True)
    lines = []
    for i, c in enumerate(["eel", "cat", "dog", "cat"]):
        Image.new("RGB", (12, 14), (i, 0, 0)).save(tiny / "val" / "images" / f"val_{i}.JPEG")
        lines.append(f"val_{i}.JPEG\t{c}\t0\t0\t10\t10")
    (tiny / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    Image.new("RGB", (12, 14)).save(tiny / "test" / "images" / "test_0.JPEG")
    bundle = load_dataset("imagefolder", root=tiny)
    assert len(bundle.train) == 18 and len(bundle.val) + len(bundle.test) == 4
    assert sorted(torch.cat([bundle.val.labels, bundle.test.labels]).tolist()) == [0, 0, 1, 2]


def test_imagefolder_errors_are_one_line(image_root: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="needs --data-root"):
        load_dataset("imagefolder")
    with pytest.raises(UserError, match="has no train/ folder"):
        load_dataset("imagefolder", root=tmp_path)
    (image_root / "val" / "fox").mkdir()
    with pytest.raises(UserError, match="class folders fox that train/ lacks"):
        load_dataset("imagefolder", root=image_root)
    (image_root / "val" / "fox").rmdir()
    Image.new("RGB", (20, 20)).save(image_root / "train" / "dog" / "big.png")
    with pytest.raises(UserError, match=r"big.png is \(3, 20, 20\).*pass --data-arg size=N"):
        load_dataset("imagefolder", root=image_root)
    (image_root / "train" / "dog" / "big.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"cannot read image .*big.png"):
        load_dataset("imagefolder", root=image_root, size=8)
    for c in CLASSES:
        for f in (image_root / "train" / c).iterdir():
            f.unlink()
    with pytest.raises(UserError, match=r"class folder .*cat holds no image files"):
        load_dataset("imagefolder", root=image_root)
    with pytest.raises(UserError, match="resize=4 is smaller than size=8"):
        load_dataset("imagefolder", root=image_root, size=8, resize=4)


def test_lazy_evaluation_streams(image_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Predicting on an ImageFiles decodes batch by batch, interleaved with the forward passes: the pixels of
    only one batch are alive at a time."""
    data = load_dataset("imagefolder", root=image_root, size=8, in_memory=False).train
    events: list[str] = []
    real = folder_mod.decode
    monkeypatch.setattr(folder_mod, "decode", lambda *a: (events.append("decode"), real(*a))[1])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))
    model.register_forward_pre_hook(lambda *_: events.append("forward"))
    out = predict(model, data, batch_size=4)
    assert out.logits.shape == (27, 3) and torch.equal(out.ids, data.ids)
    assert events.count("decode") == 27
    decoded_before_forward = [events[:i].count("decode") for i, e in enumerate(events) if e == "forward"]
    assert decoded_before_forward == [min(4 * (k + 1), 27) for k in range(7)]
    events.clear()
    assert torch.equal(labels_of(data), data.labels) and not events  # labels without decoding any image


# --- retrain-free unlearning from pretrained weights, end to end ---------------------------------------------------


def test_imagefolder_retrain_free_unlearn_end_to_end(image_root: Path, tmp_path: Path) -> None:
    original = tmp_path / "original.safetensors"
    assert main(["train", "--dataset", "imagefolder", "--data-root", str(image_root), "--data-arg", "size=8",
                 "--model", "cnn", "--model-arg", "width=4", "--model-arg", "hidden=16", "--epochs", "6",
                 "--lr", "0.1", "--batch-size", "8", "--device", "cpu", "--out", str(original)]) == 0  # fmt: skip
    assert json.loads(original.with_suffix(".json").read_text())["data_args"] == {"size": 8}
    weights = tmp_path / "pretrained.pt"  # a bare state_dict, as downloaded pretrained weights come
    torch.save(lu.load_checkpoint(original)[0].state_dict(), weights)
    ids = tmp_path / "ids.txt"
    ids.write_text("0\n4\n11\n20\n")
    out = tmp_path / "run"
    args = ["unlearn", "--weights", str(weights), "--model", "cnn", "--model-arg", "width=4", "--model-arg",
            "hidden=16", "--dataset", "imagefolder", "--data-root", str(image_root), "--data-arg", "size=8",
            "--data-arg", "in_memory=false", "--forget", str(ids), "--hparam", "epochs=2", "--device", "cpu",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    metrics = report["metrics"]
    for key in ("acc_forget", "acc_retain", "acc_val", "acc_test", "mia", "rf_jsd", "original_rf_jsd", "zrf"):
        assert isinstance(metrics[key], float), key
    assert "jsd" not in metrics and "avg_gap" not in metrics  # no gold model
    assert report["request"]["data_args"] == {"size": 8, "in_memory": False}
    floor = metrics["diagnostics"]["rf_jsd_floor"]  # the noise floor: RF-JSD of unseen data, with its interval
    assert 0.0 <= floor["low"] <= floor["mean"] <= floor["high"]
    sidecar = json.loads((out / "model.safetensors").with_suffix(".json").read_text())
    assert sidecar["data_args"] == {"size": 8, "in_memory": False} and sidecar["forgotten_ids"] == [0, 4, 11, 20]
    # evaluate re-reads the data options from the unlearned model's sidecar
    assert main(["evaluate", "--checkpoint", str(out / "model.safetensors"), "--dataset", "imagefolder",
                 "--data-root", str(image_root), "--split", str(out / "split.json"), "--original", str(original),
                 "--device", "cpu", "--json"]) == 0  # fmt: skip


def test_train_from_pretrained_weights_keeps_a_fresh_head(image_root: Path, tmp_path: Path) -> None:
    """--weights from a model with another number of classes: every tensor is loaded except the head."""
    donor = lu.create_model("cnn", num_classes=7, in_channels=3, image_size=8, width=4, hidden=16)
    weights = tmp_path / "donor.pt"
    torch.save(donor.state_dict(), weights)
    out = tmp_path / "finetuned.safetensors"
    assert main(["train", "--dataset", "imagefolder", "--data-root", str(image_root), "--data-arg", "size=8",
                 "--model", "cnn", "--model-arg", "width=4", "--model-arg", "hidden=16", "--epochs", "0",
                 "--weights", str(weights), "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    model = lu.load_checkpoint(out)[0]
    assert torch.equal(model[0].weight, donor[0].weight) and model[-1].out_features == 3
    bad = tmp_path / "bad.pt"
    torch.save({"0.weight": torch.zeros(1)}, bad)
    code = main(["train", "--dataset", "imagefolder", "--data-root", str(image_root), "--data-arg", "size=8",
                 "--weights", str(bad), "--epochs", "0", "--out", str(tmp_path / "x.safetensors")])  # fmt: skip
    assert code == 2


def test_imagenet_config_matches_the_library() -> None:
    """configs/paper/imagenet_vit_rf.yaml: the paper's recipe, in names the library accepts (a retrain-free bench)."""
    from lotus_unlearn.bench import load_config

    cfg = load_config(ROOT / "configs" / "paper" / "imagenet_vit_rf.yaml")
    lotus = next(v for v in cfg.groups()[0].variants if v.method == "lotus")
    hp = lu.METHODS["lotus"](**lotus.hparams).cfg
    assert (hp.epochs, hp.batch_size, hp.lr, hp.alpha) == (3, 256, 1e-6, 2.0)
    import inspect

    accepted = inspect.signature(folder_mod.imagefolder).parameters
    assert cfg.datasets == ["imagefolder"] and set(cfg.data_args) <= set(accepted)
    assert cfg.data_args["per_class"] == 50 and (cfg.forget[0].fraction, cfg.forget[0].mode) == (0.1, "first_k")
    assert not cfg.gold and cfg.models[0].original
