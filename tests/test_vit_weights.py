"""vit_b16 from local weights: the Hugging Face and torchvision layouts, written here from random tensors, give the
forward pass of a ViT computed from the equations in this file (and, when `transformers` is installed, its own);
every wrong file or size is one line naming the file; nothing large is built before the shapes are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import lotus_unlearn as lu
from lotus_unlearn.checkpoint import load_checkpoint, save_checkpoint
from lotus_unlearn.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

# a tiny ViT: 16-px images, 4-px patches (a 4x4 grid), 2 layers of width 32, 2 heads, MLP 64
ARCH = {"patch": 4, "dim": 32, "depth": 2, "heads": 2, "mlp_dim": 64}
SIZE, GRID = 16, 4


def canonical(seed: int = 0, classes: int = 5) -> dict:
    """Random ViT weights, one tensor per quantity of the equations (LayerNorm scales near 1)."""
    g = torch.Generator().manual_seed(seed)
    d, m, p = ARCH["dim"], ARCH["mlp_dim"], ARCH["patch"]

    def r(*shape: int, scale: float = 0.2, base: float = 0.0) -> torch.Tensor:
        return base + scale * torch.randn(*shape, generator=g)

    layers = [
        {
            **{f"{n}_w": r(d, d) for n in "qkvo"},
            **{f"{n}_b": r(d) for n in "qkvo"},
            "ln1_w": r(d, base=1.0),
            "ln1_b": r(d),
            "ln2_w": r(d, base=1.0),
            "ln2_b": r(d),
            "fc1_w": r(m, d),
            "fc1_b": r(m),
            "fc2_w": r(d, m),
            "fc2_b": r(d),
        }
        for _ in range(ARCH["depth"])
    ]
    return {
        "patch_w": r(d, 3, p, p), "patch_b": r(d), "cls": r(1, 1, d), "pos": r(1, GRID * GRID + 1, d),
        "layers": layers, "ln_w": r(d, base=1.0), "ln_b": r(d), "head_w": r(classes, d), "head_b": r(classes),
    }  # fmt: skip


def reference_features(x: torch.Tensor, t: dict, eps: float) -> torch.Tensor:
    """The CLS token after the final LayerNorm, from the ViT equations: patches (a stride-p conv) + CLS + position;
    per layer h += Attn(LN1(h)), h += W2 gelu(W1 LN2(h)); softmax(q k^T / sqrt(d_head)) per head."""
    b, d, heads = len(x), ARCH["dim"], ARCH["heads"]
    dh = d // heads
    tokens = F.conv2d(x, t["patch_w"], t["patch_b"], stride=ARCH["patch"]).flatten(2).transpose(1, 2)
    h = torch.cat([t["cls"].expand(b, -1, -1), tokens], 1) + t["pos"]
    n = h.shape[1]
    for lay in t["layers"]:
        y = F.layer_norm(h, (d,), lay["ln1_w"], lay["ln1_b"], eps)
        q, k, v = (F.linear(y, lay[f"{c}_w"], lay[f"{c}_b"]).view(b, n, heads, dh).transpose(1, 2) for c in "qkv")
        att = torch.softmax(q @ k.transpose(-1, -2) / dh**0.5, dim=-1) @ v
        h = h + F.linear(att.transpose(1, 2).reshape(b, n, d), lay["o_w"], lay["o_b"])
        y = F.layer_norm(h, (d,), lay["ln2_w"], lay["ln2_b"], eps)
        h = h + F.linear(F.gelu(F.linear(y, lay["fc1_w"], lay["fc1_b"])), lay["fc2_w"], lay["fc2_b"])
    return F.layer_norm(h[:, 0], (d,), t["ln_w"], t["ln_b"], eps)


def hf_state(t: dict, prefix: str = "vit.", classifier: bool = True, pooler: bool = False) -> dict:
    """The Hugging Face ViTForImageClassification / ViTModel file layout."""
    s = {
        f"{prefix}embeddings.cls_token": t["cls"],
        f"{prefix}embeddings.position_embeddings": t["pos"],
        f"{prefix}embeddings.patch_embeddings.projection.weight": t["patch_w"],
        f"{prefix}embeddings.patch_embeddings.projection.bias": t["patch_b"],
        f"{prefix}layernorm.weight": t["ln_w"],
        f"{prefix}layernorm.bias": t["ln_b"],
    }
    names = {"q": "attention.attention.query", "k": "attention.attention.key", "v": "attention.attention.value",
             "o": "attention.output.dense", "fc1": "intermediate.dense", "fc2": "output.dense",
             "ln1": "layernorm_before", "ln2": "layernorm_after"}  # fmt: skip
    for i, lay in enumerate(t["layers"]):
        for ours, theirs in names.items():
            s[f"{prefix}encoder.layer.{i}.{theirs}.weight"] = lay[f"{ours}_w"]
            s[f"{prefix}encoder.layer.{i}.{theirs}.bias"] = lay[f"{ours}_b"]
    if classifier:
        s.update({"classifier.weight": t["head_w"], "classifier.bias": t["head_b"]})
    if pooler:
        d = ARCH["dim"]
        s.update({f"{prefix}pooler.dense.weight": torch.randn(d, d), f"{prefix}pooler.dense.bias": torch.randn(d)})
    return {k: v.contiguous() for k, v in s.items()}


def tv_state(t: dict, old_mlp: bool = False) -> dict:
    """torchvision's vit_b_16 state_dict layout (older files name the MLP linear_1 / linear_2)."""
    s = {
        "class_token": t["cls"], "conv_proj.weight": t["patch_w"], "conv_proj.bias": t["patch_b"],
        "encoder.pos_embedding": t["pos"], "encoder.ln.weight": t["ln_w"], "encoder.ln.bias": t["ln_b"],
        "heads.head.weight": t["head_w"], "heads.head.bias": t["head_b"],
    }  # fmt: skip
    fc1, fc2 = ("mlp.linear_1", "mlp.linear_2") if old_mlp else ("mlp.0", "mlp.3")
    for i, lay in enumerate(t["layers"]):
        p = f"encoder.layers.encoder_layer_{i}."
        s[p + "self_attention.in_proj_weight"] = torch.cat([lay["q_w"], lay["k_w"], lay["v_w"]])
        s[p + "self_attention.in_proj_bias"] = torch.cat([lay["q_b"], lay["k_b"], lay["v_b"]])
        s[p + "self_attention.out_proj.weight"], s[p + "self_attention.out_proj.bias"] = lay["o_w"], lay["o_b"]
        s[p + f"{fc1}.weight"], s[p + f"{fc1}.bias"] = lay["fc1_w"], lay["fc1_b"]
        s[p + f"{fc2}.weight"], s[p + f"{fc2}.bias"] = lay["fc2_w"], lay["fc2_b"]
        s[p + "ln_1.weight"], s[p + "ln_1.bias"] = lay["ln1_w"], lay["ln1_b"]
        s[p + "ln_2.weight"], s[p + "ln_2.bias"] = lay["ln2_w"], lay["ln2_b"]
    return s


def hf_config(**changes: object) -> dict:
    return {
        "model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": SIZE,
        "patch_size": 4, "num_channels": 3, "qkv_bias": True, "id2label": {str(i): f"c{i}" for i in range(5)},
        **changes,
    }  # fmt: skip


def hf_folder(root: Path, t: dict, *, bin: bool = False, config: dict | None = None, **kw) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    state = hf_state(t, **kw)
    if bin:
        torch.save(state, root / "pytorch_model.bin")
    else:
        save_file(state, str(root / "model.safetensors"))
    if config is not None:
        (root / "config.json").write_text(json.dumps(config))
    return root


def build(weights: object, num_classes: int = 5, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    args = {**ARCH, "image_size": SIZE, **kw}
    return lu.create_model("vit_b16", num_classes=num_classes, weights=weights, **args).eval()


X = torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def features(model: torch.nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return model.norm(
            model.encoder(torch.cat([model.cls.expand(len(x), -1, -1), model.embed(x).flatten(2).mT], 1) + model.pos)[
                :, 0
            ]
        )


def test_huggingface_folder_gives_the_equations_forward_with_a_fresh_head(tmp_path: Path) -> None:
    t = canonical()
    model = build(hf_folder(tmp_path / "hf", t, config=hf_config()), num_classes=10)  # 10 != the file's 5 classes
    want = reference_features(X, t, 1e-12)
    torch.testing.assert_close(features(model), want, atol=2e-5, rtol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(model(X), F.linear(want, model.head.weight, model.head.bias), atol=2e-5, rtol=1e-4)
    assert model.head.weight.shape == (10, ARCH["dim"])


@pytest.mark.parametrize("eps", [1e-12, 1e-6])
def test_huggingface_bin_without_prefix_with_pooler_and_its_config_eps(tmp_path: Path, eps: float) -> None:
    t = canonical(seed=2)
    folder = hf_folder(
        tmp_path, t, bin=True, prefix="", classifier=False, pooler=True, config=hf_config(layer_norm_eps=eps)
    )
    model = build(folder)
    assert model.norm.eps == eps and model.lotus_spec["kwargs"]["layer_norm_eps"] == eps
    torch.testing.assert_close(features(model), reference_features(X, t, eps), atol=2e-5, rtol=1e-4)


def test_huggingface_classifier_is_kept_when_the_classes_match(tmp_path: Path) -> None:
    t = canonical(seed=3)
    model = build(hf_folder(tmp_path, t) / "model.safetensors", num_classes=5)  # the file itself, no config.json
    want = F.linear(reference_features(X, t, 1e-12), t["head_w"], t["head_b"])
    with torch.no_grad():
        torch.testing.assert_close(model(X), want, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("old_mlp", [False, True])
def test_torchvision_state_dict_keeps_its_head_with_the_same_classes(tmp_path: Path, old_mlp: bool) -> None:
    t = canonical(seed=4, classes=7)
    torch.save(tv_state(t, old_mlp), tmp_path / "vit_b_16.pth")
    model = build(tmp_path / "vit_b_16.pth", num_classes=7)
    assert model.norm.eps == 1e-6  # torchvision's LayerNorm eps
    want = F.linear(reference_features(X, t, 1e-6), t["head_w"], t["head_b"])
    with torch.no_grad():
        torch.testing.assert_close(model(X), want, atol=2e-5, rtol=1e-4)
    assert not torch.equal(build(tmp_path / "vit_b_16.pth", num_classes=3).head.weight[:3], t["head_w"][:3])


def test_forward_equals_transformers_on_the_same_file(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    t = canonical(seed=5)
    folder = hf_folder(tmp_path, t, config=hf_config())
    theirs = transformers.ViTForImageClassification.from_pretrained(str(folder), local_files_only=True).eval()
    backbone = transformers.ViTModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False)
    ours = build(folder, num_classes=5)
    with torch.no_grad():
        torch.testing.assert_close(ours(X), theirs(pixel_values=X).logits, atol=2e-5, rtol=1e-4)
        hidden = backbone.eval()(pixel_values=X).last_hidden_state[:, 0]
    torch.testing.assert_close(features(ours), hidden, atol=2e-5, rtol=1e-4)


def test_checkpoint_of_a_pretrained_vit_rebuilds_without_the_weights_file(tmp_path: Path) -> None:
    folder = hf_folder(tmp_path / "hf", canonical(seed=6), config=hf_config(layer_norm_eps=1e-6))
    model = build(folder, num_classes=10)
    path = save_checkpoint(model, tmp_path / "ckpt" / "vit.safetensors")
    for f in folder.iterdir():
        f.unlink()
    loaded, _ = load_checkpoint(path)
    assert loaded.norm.eps == 1e-6
    with torch.no_grad():
        assert torch.equal(loaded.eval()(X), model(X))


def test_full_size_vit_b16_has_the_usual_parameter_count() -> None:
    """ViT-B/16 with 1000 classes: 86,567,656 parameters (768-wide, 12 layers, MLP 3072, 14x14 + 1 tokens)."""
    model = lu.create_model("vit_b16", num_classes=1000, image_size=224)
    assert sum(p.numel() for p in model.parameters()) == 86_567_656


def _drop(state: dict, key: str) -> dict:
    return {k: v for k, v in state.items() if k != key}


def _edit(state: dict, key: str, value: torch.Tensor) -> dict:
    return {**state, key: value}


L0 = "vit.encoder.layer.0."
BAD_FILES = {
    "missing tensor": (lambda s: _drop(s, L0 + "attention.attention.key.bias"), {}, "lack tensor 'vit.encoder.layer.0.attention.attention.key.bias'"),
    "wrong MLP shape": (lambda s: _edit(s, L0 + "intermediate.dense.weight", torch.zeros(48, 32)), {}, r"intermediate.dense.weight' has shape \(48, 32\), the model needs \(64, 32\)"),
    "wrong patch": (lambda s: _edit(s, "vit.embeddings.patch_embeddings.projection.weight", torch.zeros(32, 3, 8, 8)), {}, "patch size 8, the model 4; pass patch=8"),
    "wrong hidden size": (lambda s: _edit(s, "vit.embeddings.patch_embeddings.projection.weight", torch.zeros(48, 3, 4, 4)), {}, "hidden size 48, the model 32; pass dim=48"),
    "fewer layers": (lambda s: {k: v for k, v in s.items() if ".layer.1." not in k}, {}, "have 1 encoder layers, the model 2; pass depth=1"),
    "extra tensor": (lambda s: {**s, "vit.extra.weight": torch.zeros(2)}, {}, "have tensor 'vit.extra.weight' \\(1 unexpected"),
    "other image size": (lambda s: s, {"image_size": 32}, "position embeddings for 4x4 patches, i.e. 16-pixel images; the data is 32 px: resize the images to 16"),
    "grayscale data": (lambda s: s, {"in_channels": 1}, "take 3-channel images, the data has 1 channels"),
    "not a ViT": (lambda s: {"conv1.weight": torch.zeros(4, 3, 3, 3)}, {}, "are not a ViT in the Hugging Face layout"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_wrong_weights_file_is_one_line_naming_it_before_the_model_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    edit, args, message = BAD_FILES[case]
    path = tmp_path / "bad.safetensors"
    save_file(edit(hf_state(canonical())), str(path))

    def never(*a: object, **k: object) -> None:
        raise AssertionError("the model was built before the weights were checked")

    monkeypatch.setattr("lotus_unlearn.models.vit.ViT", never)
    with pytest.raises(UserError, match=message) as info:
        build(path, **args)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (hf_config(num_attention_heads=4), "says num_attention_heads 4, the model has heads 2; pass heads=4"),
        (hf_config(hidden_act="gelu_new"), "asks for hidden_act 'gelu_new'"),
        ("{not json", "is not readable JSON"),
    ],
)
def test_a_config_that_disagrees_is_one_line(tmp_path: Path, config: object, message: str) -> None:
    folder = hf_folder(tmp_path, canonical())
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    with pytest.raises(UserError, match=message) as info:
        build(folder)
    assert "config.json" in str(info.value) and "\n" not in str(info.value)


def test_missing_or_empty_locations_and_pickles_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"do not exist.*nothing is downloaded"):
        build(tmp_path / "google" / "vit-base-patch16-224")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"has neither model\.safetensors nor pytorch_model\.bin"):
        build(tmp_path / "empty")
    torch.save({"w": torch.zeros(1), "payload": Path("x")}, tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match="refused to load"):
        build(tmp_path)


@pytest.mark.parametrize("size", [20, 100])
def test_an_image_size_that_is_not_a_multiple_of_the_patch_is_one_line(size: int) -> None:
    with pytest.raises(UserError, match=f"image_size {size} is not a multiple of the patch size 16"):
        lu.create_model("vit_b16", num_classes=10, image_size=size)


def test_check_model_reads_only_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """check_model: the same one-line errors as create_model, with no tensor data read and no memory allocated."""
    from lotus_unlearn.models import check_model
    from lotus_unlearn.models.vit_weights import VitWeights

    folder = hf_folder(tmp_path, canonical(), config=hf_config())
    monkeypatch.setattr(VitWeights, "load_into", lambda *a: pytest.fail("tensor data was read"))
    check_model("vit_b16", num_classes=10, weights=folder, image_size=SIZE, **ARCH)
    check_model("vit_b16", num_classes=1000, image_size=224)  # full size, on the meta device
    with pytest.raises(UserError, match="resize the images to 16"):
        check_model("vit_b16", num_classes=10, weights=folder, image_size=32, **ARCH)
    with pytest.raises(UserError, match="not a multiple of the patch size 16"):
        check_model("vit_b16", num_classes=10, image_size=32 + 8)
    with pytest.raises(UserError, match="unknown model"):
        check_model("vit_b17", num_classes=10)


def test_the_model_cache_keys_on_the_pretrained_weights_not_the_path(tmp_path: Path, monkeypatch) -> None:
    """Another file at the same path is another original: trained again, not served from the cache."""
    from lotus_unlearn.data import DatasetBundle, TensorData
    from lotus_unlearn.pipeline import train_cached

    monkeypatch.setenv("LOTUS_CACHE_DIR", str(tmp_path / "cache"))
    g = torch.Generator().manual_seed(0)
    split = {k: TensorData(torch.rand(8, 3, SIZE, SIZE, generator=g), torch.arange(8) % 2) for k in ("tr", "va", "te")}
    bundle = DatasetBundle("tiny-rgb", split["tr"], split["va"], split["te"], ["a", "b"])
    args = {"model": "vit_b16", "model_kwargs": {**ARCH, "weights": str(tmp_path / "w")}, "seed": 0, "role": "original"}
    train = {"epochs": 1, "batch_size": 8, "device": "cpu", "augment": False}
    hf_folder(tmp_path / "w", canonical(seed=7))
    runs = [train_cached(bundle, bundle.train, train=train, **args)[1]["cached"] for _ in range(2)]
    hf_folder(tmp_path / "w", canonical(seed=8))  # same path, other weights
    runs.append(train_cached(bundle, bundle.train, train=train, **args)[1]["cached"])
    assert runs == [False, True, False]


@pytest.mark.parametrize(
    ("model_args", "message"),
    [
        (["weights=WEIGHTS", "patch=4", "dim=32", "depth=2", "heads=2", "mlp_dim=64"], "take 3-channel images"),
        ([], "image_size 8 is not a multiple of the patch size 16"),
    ],
)
def test_cli_train_with_a_model_that_cannot_take_the_data_exits_2_before_training(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch, model_args: list[str], message: str
) -> None:
    from lotus_unlearn.cli import main

    monkeypatch.setattr("lotus_unlearn.train.train_model", lambda *a, **k: pytest.fail("training started"))
    folder = hf_folder(tmp_path / "hf", canonical())
    args = [a.replace("WEIGHTS", str(folder)) for a in model_args]
    out = tmp_path / "m.safetensors"
    cmd = ["train", "--dataset", "digits", "--model", "vit_b16", "--device", "cpu", "--out", str(out)]
    assert main([*cmd, *(x for a in args for x in ("--model-arg", a))]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not out.exists()
