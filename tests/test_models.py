"""The model registry: shapes for every built-in, the two ResNet18 variants, widths, user factories."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import lotus_unlearn as lu
from lotus_unlearn.errors import UserError
from lotus_unlearn.models import MODELS, create_model
from lotus_unlearn.models.resnet import BasicBlock

SMALL = {
    "resnet18": {"width": 0.125},
    "resnet18_ref": {"width": 0.125},
    "vit": {"dim": 32, "depth": 1, "heads": 2},
    "vit_b16": {"patch": 4, "dim": 32, "depth": 1, "heads": 2, "mlp_dim": 64},
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_has_the_built_ins() -> None:
    assert {"cnn", "resnet18", "resnet18_ref", "vit", "vit_b16"} <= set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 28, 32])
def test_forward_shape(name: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, in_channels=channels, image_size=size, **SMALL.get(name, {})).eval()
    with torch.no_grad():
        out = model(torch.randn(2, channels, size, size))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    assert model.lotus_spec["name"] == name
    assert model.lotus_spec["kwargs"]["num_classes"] == 7


@pytest.mark.parametrize("name", ["resnet18", "resnet18_ref"])
def test_full_width_resnets_run_on_cifar_sized_input(name: str) -> None:
    model = create_model(name, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def blocks(model: nn.Module) -> list[BasicBlock]:
    return [m for m in model.modules() if isinstance(m, BasicBlock)]


def test_resnet18_has_no_max_pool_and_identity_shortcuts_where_shapes_match() -> None:
    model = create_model("resnet18", num_classes=10)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    bs = blocks(model)
    assert len(bs) == 8
    for b in bs:
        shapes_match = b.conv1.stride == (1, 1) and b.conv1.in_channels == b.conv2.out_channels
        assert isinstance(b.shortcut, nn.Identity) == shapes_match
    # the first block of stages 2-4 changes shape: exactly three projections
    assert sum(not isinstance(b.shortcut, nn.Identity) for b in bs) == 3
    assert [b.conv2.out_channels for b in bs[::2]] == [64, 128, 256, 512]


def test_resnet18_ref_has_max_pool_and_bare_conv_shortcut_everywhere() -> None:
    model = create_model("resnet18_ref", num_classes=10)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 1
    bs = blocks(model)
    assert len(bs) == 8
    for b in bs:
        assert isinstance(b.shortcut, nn.Conv2d) and b.shortcut.kernel_size == (1, 1) and b.shortcut.bias is None
    # BatchNorm: the stem's and two per block, none on a shortcut
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 1 + 2 * 8


def reference_resnet18_shapes(num_classes: int, in_channels: int = 3) -> list[tuple[int, ...]]:
    """The reference network's parameter tensors in order, written out from its description: 3x3 stem conv + BN;
    per block conv3x3 + BN, conv3x3 + BN, bare 1x1 conv shortcut; linear head."""
    shapes: list[tuple[int, ...]] = [(64, in_channels, 3, 3), (64,), (64,)]
    cin = 64
    for cout in (64, 128, 256, 512):
        for _ in range(2):
            shapes += [(cout, cin, 3, 3), (cout,), (cout,), (cout, cout, 3, 3), (cout,), (cout,), (cout, cin, 1, 1)]
            cin = cout
    return [*shapes, (num_classes, 512), (num_classes,)]


@pytest.mark.parametrize("num_classes", [10, 100])
def test_resnet18_ref_has_the_reference_parameter_tensors(num_classes: int) -> None:
    model = create_model("resnet18_ref", num_classes=num_classes)
    assert [tuple(p.shape) for p in model.parameters()] == reference_resnet18_shapes(num_classes)


def test_resnet18_ref_parameter_count_is_the_reference_one() -> None:
    """The paper's code's ResNet18 has 11,524,426 parameters for 10 classes (11,173,962 plus eight 1x1 shortcuts,
    five more than the usual net's three; 64*64 + 128*128 + 256*256 + 512*512 + 64*64 = 352,256, minus the three
    projection BatchNorms' 2 * (128 + 256 + 512) = 1,792)."""
    assert n_params(create_model("resnet18_ref", num_classes=10)) == 11_524_426


def test_max_pool_halves_the_feature_map() -> None:
    x = torch.randn(1, 3, 32, 32)
    plain = create_model("resnet18", num_classes=10, width=0.125).eval()
    ref = create_model("resnet18_ref", num_classes=10, width=0.125).eval()
    with torch.no_grad():
        assert plain.stem(x).shape[-1] == 32
        assert ref.stem(x).shape[-1] == 16


@pytest.mark.parametrize("name", ["resnet18", "resnet18_ref", "cnn"])
def test_width_changes_parameter_count(name: str) -> None:
    narrow, wide = (0.5, 1.0) if name != "cnn" else (8, 16)
    a = create_model(name, num_classes=10, in_channels=1, image_size=28, width=narrow)
    b = create_model(name, num_classes=10, in_channels=1, image_size=28, width=wide)
    assert n_params(a) < n_params(b)


def test_resnet18_parameter_count_is_the_usual_one() -> None:
    """CIFAR ResNet18 with 10 classes has 11,173,962 parameters."""
    assert n_params(create_model("resnet18", num_classes=10)) == 11_173_962


def test_unknown_model_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown model") as info:
        create_model("resnet19", num_classes=10)
    assert "resnet18" in str(info.value)


def test_bad_model_argument_is_a_user_error() -> None:
    with pytest.raises(UserError, match="does not accept"):
        create_model("cnn", num_classes=10, depth=3)


def test_user_factory_by_module_path() -> None:
    model = create_model("helpers_models:tiny_mlp", num_classes=4, in_channels=1, image_size=8, hidden=5)
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 4)
    assert model.lotus_spec == {
        "name": "helpers_models:tiny_mlp",
        "kwargs": {"num_classes": 4, "in_channels": 1, "image_size": 8, "hidden": 5},
    }
    assert isinstance(lu.create_model("helpers_models:tiny_mlp", num_classes=2), nn.Module)


@pytest.mark.parametrize("name", ["helpers_models:missing", "no_such_module_xyz:f"])
def test_user_factory_that_cannot_be_imported(name: str) -> None:
    with pytest.raises(UserError, match="cannot import"):
        create_model(name, num_classes=2)
