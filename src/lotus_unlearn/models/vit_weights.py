"""Pretrained ViT weights from a local file, mapped onto `models.vit.ViT`; nothing is ever downloaded.

Two layouts are read:
- Hugging Face (`google/vit-base-patch16-224`): a folder with `model.safetensors` or `pytorch_model.bin` and an
  optional `config.json`, or one of those files. Keys `[vit.]embeddings.*`, `[vit.]encoder.layer.N.*`,
  `[vit.]layernorm.*`, optional `classifier.*` and `[vit.]pooler.*` (unused: the head reads the CLS token).
- torchvision's `vit_b_16` state_dict (e.g. IMAGENET1K_V1): `conv_proj`, `class_token`, `encoder.pos_embedding`,
  `encoder.layers.encoder_layer_N.*`, `encoder.ln`, `heads.head`.

Only tensor shapes are read first (the safetensors header, or a memory-mapped torch file): every shape is checked
against the requested architecture and image size before the model is built. Torch files are read with
`weights_only=True`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from lotus_unlearn.errors import UserError

HF_FILES = ("model.safetensors", "pytorch_model.bin")
HF_PATCH_KEY = "embeddings.patch_embeddings.projection.weight"
# (our name inside encoder layer N, Hugging Face name(s) inside `encoder.layer.N.`, concatenated along dim 0)
HF_LAYER = [
    ("self_attn.in_proj_weight", [f"attention.attention.{x}.weight" for x in ("query", "key", "value")]),
    ("self_attn.in_proj_bias", [f"attention.attention.{x}.bias" for x in ("query", "key", "value")]),
    ("self_attn.out_proj.weight", ["attention.output.dense.weight"]),
    ("self_attn.out_proj.bias", ["attention.output.dense.bias"]),
    ("linear1.weight", ["intermediate.dense.weight"]),
    ("linear1.bias", ["intermediate.dense.bias"]),
    ("linear2.weight", ["output.dense.weight"]),
    ("linear2.bias", ["output.dense.bias"]),
    ("norm1.weight", ["layernorm_before.weight"]),
    ("norm1.bias", ["layernorm_before.bias"]),
    ("norm2.weight", ["layernorm_after.weight"]),
    ("norm2.bias", ["layernorm_after.bias"]),
]
# torchvision: the same, inside `encoder.layers.encoder_layer_N.`; its MLP is `mlp.0` / `mlp.3` (older files:
# `mlp.linear_1` / `mlp.linear_2`)
TV_LAYER = [
    ("self_attn.in_proj_weight", ["self_attention.in_proj_weight"]),
    ("self_attn.in_proj_bias", ["self_attention.in_proj_bias"]),
    ("self_attn.out_proj.weight", ["self_attention.out_proj.weight"]),
    ("self_attn.out_proj.bias", ["self_attention.out_proj.bias"]),
    ("linear1.weight", ["mlp.0.weight"]),
    ("linear1.bias", ["mlp.0.bias"]),
    ("linear2.weight", ["mlp.3.weight"]),
    ("linear2.bias", ["mlp.3.bias"]),
    ("norm1.weight", ["ln_1.weight"]),
    ("norm1.bias", ["ln_1.bias"]),
    ("norm2.weight", ["ln_2.weight"]),
    ("norm2.bias", ["ln_2.bias"]),
]
TV_OLD_MLP = {"mlp.0.": "mlp.linear_1.", "mlp.3.": "mlp.linear_2."}
# config.json fields that must agree with the architecture arguments
HF_CONFIG = {
    "patch_size": "patch",
    "hidden_size": "dim",
    "num_hidden_layers": "depth",
    "num_attention_heads": "heads",
    "intermediate_size": "mlp_dim",
    "num_channels": "in_channels",
}


@dataclass
class VitWeights:
    """A checked weights file: which file tensors make each of the model's tensors, ready to load."""

    path: Path
    layout: str  # "huggingface" | "torchvision"
    eps: float  # the LayerNorm eps the weights were trained with
    mapping: dict[str, list[str]]  # model tensor -> file tensors (concatenated along dim 0)
    read: Callable[[list[str]], dict[str, torch.Tensor]]

    def load_into(self, model: nn.Module) -> nn.Module:
        """Copy the weights into `model` (built with the checked architecture); tensors not mapped (a fresh
        head) keep their initialisation."""
        tensors = self.read(sorted({k for keys in self.mapping.values() for k in keys}))
        state = model.state_dict()
        for ours, keys in self.mapping.items():
            state[ours] = torch.cat([tensors[k] for k in keys]) if len(keys) > 1 else tensors[keys[0]]
        model.load_state_dict(state)
        return model


def read_vit_weights(
    weights: str | Path,
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    patch: int,
    dim: int,
    depth: int,
    heads: int,
    mlp_dim: int,
) -> VitWeights:
    """Find, open and check a ViT weights file or Hugging Face folder against the architecture; one-line
    `UserError` naming the file and the problem for anything that does not fit."""
    arch = {"patch": patch, "dim": dim, "depth": depth, "heads": heads, "mlp_dim": mlp_dim, "in_channels": in_channels}
    file, config = _locate(Path(str(weights)))
    shapes, read = _open(file)
    if any(k.endswith(HF_PATCH_KEY) for k in shapes):
        layout, eps = "huggingface", _check_config(config, arch) if config else 1e-12
        prefix = next(k for k in shapes if k.endswith(HF_PATCH_KEY))[: -len(HF_PATCH_KEY)]
        mapping = _hf_mapping(prefix, depth)
        head, ignored = ["classifier.weight", "classifier.bias"], (f"{prefix}pooler.",)
    elif "conv_proj.weight" in shapes:
        layout, eps, ignored = "torchvision", 1e-6, ()
        mapping = _tv_mapping(depth, shapes)
        head = ["heads.head.weight", "heads.head.bias"]
    else:
        raise UserError(
            f"weights {file} are not a ViT in the Hugging Face layout (…{HF_PATCH_KEY}) or torchvision's "
            "(conv_proj.weight, encoder.layers…); pass a google/vit-base-patch16-224 folder or a vit_b_16 state_dict"
        )
    _check_stem(file, shapes[mapping["embed.weight"][0]], arch)
    grid = _check_grid(file, shapes[mapping["pos"][0]], patch, image_size)
    layers = _layer_count(shapes, layout)
    if layers != depth:
        raise UserError(f"weights {file} have {layers} encoder layers, the model {depth}; pass depth={layers}")
    if head[0] in shapes and shapes[head[0]][0] == num_classes:
        mapping.update({"head.weight": [head[0]], "head.bias": [head[1]]})  # same classes: keep the classifier
    expected = _expected_shapes(arch, grid, num_classes)
    for ours, keys in mapping.items():
        missing = [k for k in keys if k not in shapes]
        if missing:
            raise UserError(
                f"weights {file} lack tensor {missing[0]!r} ({layout} layout); is the file complete and a ViT?"
            )
        part = (expected[ours][0] // len(keys), *expected[ours][1:])  # q, k, v: a third of in_proj each
        bad = next((k for k in keys if shapes[k] != part), None)
        if bad is not None:
            raise UserError(
                f"weights {file}: tensor {bad!r} has shape {shapes[bad]}, the model needs {part} for {_describe(arch)}"
            )
    used = {k for keys in mapping.values() for k in keys} | set(head)
    extra = sorted(k for k in shapes if k not in used and not k.startswith(ignored))
    if extra:
        raise UserError(
            f"weights {file} have tensor {extra[0]!r} ({len(extra)} unexpected in all) that a plain {layout} ViT "
            "does not; pass the backbone's weights file"
        )
    return VitWeights(file, layout, eps, mapping, read)


def _describe(arch: dict[str, int]) -> str:
    return "a ViT with patch {patch}, dim {dim}, depth {depth}, mlp_dim {mlp_dim}".format(**arch)


def _locate(path: Path) -> tuple[Path, Path | None]:
    """The weights file and the config.json beside it (if any) for a file or a Hugging Face folder."""
    if path.is_dir():
        found = [path / name for name in HF_FILES if (path / name).is_file()]
        if not found:
            raise UserError(
                f"weights folder {path} has neither {' nor '.join(HF_FILES)}; pass a Hugging Face model folder "
                "or a weights file"
            )
        file = found[0]
    elif path.is_file():
        file = path
    else:
        raise UserError(
            f"weights {path} do not exist; pass a local file or Hugging Face folder (nothing is downloaded)"
        )
    config = file.parent / "config.json"
    return file, config if config.is_file() else None


def _open(file: Path) -> tuple[dict[str, tuple[int, ...]], Callable[[list[str]], dict[str, torch.Tensor]]]:
    """Tensor shapes without reading the data, and a reader for chosen tensors."""
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(file), framework="pt") as f:
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"weights {file} are not a readable safetensors file ({exc}); is it corrupt?") from exc

        def read(keys: list[str]) -> dict[str, torch.Tensor]:
            with safe_open(str(file), framework="pt") as f:
                return {k: f.get_tensor(k) for k in keys}

        return shapes, read
    from lotus_unlearn.checkpoint import load_state_dict

    state = load_state_dict(file, mmap=True)  # weights only; the data stays on disk until copied
    return {k: tuple(v.shape) for k, v in state.items()}, lambda keys: {k: state[k] for k in keys}


def _hf_mapping(prefix: str, depth: int) -> dict[str, list[str]]:
    mapping = {
        "embed.weight": [f"{prefix}{HF_PATCH_KEY}"],
        "embed.bias": [f"{prefix}embeddings.patch_embeddings.projection.bias"],
        "cls": [f"{prefix}embeddings.cls_token"],
        "pos": [f"{prefix}embeddings.position_embeddings"],
        "norm.weight": [f"{prefix}layernorm.weight"],
        "norm.bias": [f"{prefix}layernorm.bias"],
    }
    for i in range(depth):
        for ours, theirs in HF_LAYER:
            mapping[f"encoder.layers.{i}.{ours}"] = [f"{prefix}encoder.layer.{i}.{t}" for t in theirs]
    return mapping


def _tv_mapping(depth: int, shapes: dict[str, tuple[int, ...]]) -> dict[str, list[str]]:
    mapping = {
        "embed.weight": ["conv_proj.weight"],
        "embed.bias": ["conv_proj.bias"],
        "cls": ["class_token"],
        "pos": ["encoder.pos_embedding"],
        "norm.weight": ["encoder.ln.weight"],
        "norm.bias": ["encoder.ln.bias"],
    }
    for i in range(depth):
        for ours, (theirs,) in TV_LAYER:
            key = f"encoder.layers.encoder_layer_{i}.{theirs}"
            for new, old in TV_OLD_MLP.items():
                if key not in shapes and new in key:
                    key = key.replace(new, old)
            mapping[f"encoder.layers.{i}.{ours}"] = [key]
    return mapping


def _layer_count(shapes: dict[str, tuple[int, ...]], layout: str) -> int:
    marker = ".encoder.layer." if layout == "huggingface" else ".encoder.layers.encoder_layer_"
    found = set()
    for k in shapes:
        _, sep, tail = f".{k}".partition(marker)
        if sep:
            found.add(tail.split(".")[0])
    return len(found)


def _check_config(config: Path, arch: dict[str, int]) -> float:
    """config.json must describe the requested architecture; returns its LayerNorm eps."""
    try:
        cfg = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"weights config {config} is not readable JSON ({exc}); fix or delete it") from exc
    if not isinstance(cfg, dict):
        raise UserError(f"weights config {config} is not a JSON object; fix or delete it")
    for field, ours in HF_CONFIG.items():
        if field in cfg and cfg[field] != arch[ours]:
            raise UserError(
                f"weights config {config} says {field} {cfg[field]}, the model has {ours} {arch[ours]}; "
                f"pass {ours}={cfg[field]} or other weights"
            )
    if cfg.get("hidden_act", "gelu") != "gelu" or not cfg.get("qkv_bias", True):
        raise UserError(
            f"weights config {config} asks for hidden_act {cfg.get('hidden_act')!r}, qkv_bias "
            f"{cfg.get('qkv_bias', True)}; this ViT has exact GELU and query/key/value biases"
        )
    return float(cfg.get("layer_norm_eps", 1e-12))


def _check_stem(file: Path, shape: tuple[int, ...], arch: dict[str, int]) -> None:
    if len(shape) != 4 or shape[2] != shape[3]:
        raise UserError(f"weights {file}: the patch embedding has shape {shape}, not (dim, channels, patch, patch)")
    dim, channels, patch = shape[0], shape[1], shape[2]
    if patch != arch["patch"]:
        raise UserError(f"weights {file} have patch size {patch}, the model {arch['patch']}; pass patch={patch}")
    if dim != arch["dim"]:
        raise UserError(f"weights {file} have hidden size {dim}, the model {arch['dim']}; pass dim={dim}")
    if channels != arch["in_channels"]:
        raise UserError(
            f"weights {file} take {channels}-channel images, the data has {arch['in_channels']} channels; "
            f"use {channels}-channel data"
        )


def _check_grid(file: Path, shape: tuple[int, ...], patch: int, image_size: int) -> int:
    """The position embeddings' patch grid side; it fixes the image size the model can take."""
    grid = math.isqrt(max(0, shape[1] - 1)) if len(shape) == 3 else 0
    if len(shape) != 3 or shape[0] != 1 or grid * grid != shape[1] - 1:
        raise UserError(f"weights {file}: position embeddings of shape {shape} are not a CLS token plus a square grid")
    if grid * patch != image_size:
        raise UserError(
            f"weights {file} have position embeddings for {grid}x{grid} patches, i.e. {grid * patch}-pixel images; "
            f"the data is {image_size} px: resize the images to {grid * patch}"
        )
    return grid


def _expected_shapes(arch: dict[str, int], grid: int, num_classes: int) -> dict[str, tuple[int, ...]]:
    d, m = arch["dim"], arch["mlp_dim"]
    shapes: dict[str, tuple[int, ...]] = {
        "embed.weight": (d, arch["in_channels"], arch["patch"], arch["patch"]),
        "embed.bias": (d,),
        "cls": (1, 1, d),
        "pos": (1, grid * grid + 1, d),
        "norm.weight": (d,),
        "norm.bias": (d,),
        "head.weight": (num_classes, d),
        "head.bias": (num_classes,),
    }
    layer = {
        "self_attn.in_proj_weight": (3 * d, d),
        "self_attn.in_proj_bias": (3 * d,),
        "self_attn.out_proj.weight": (d, d),
        "self_attn.out_proj.bias": (d,),
        "linear1.weight": (m, d),
        "linear1.bias": (m,),
        "linear2.weight": (d, m),
        "linear2.bias": (d,),
        "norm1.weight": (d,),
        "norm1.bias": (d,),
        "norm2.weight": (d,),
        "norm2.bias": (d,),
    }
    for i in range(arch["depth"]):
        shapes.update({f"encoder.layers.{i}.{k}": v for k, v in layer.items()})
    return shapes
