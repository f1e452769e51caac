"""Vision Transformers: a small patch ViT for small images (`vit`) and ViT-B/16 (`vit_b16`), which starts from
pretrained weights in a local file (`models/vit_weights.py`: the Hugging Face `google/vit-base-patch16-224` layout or
torchvision's `vit_b_16`) with a fresh linear head on the CLS token, as in the LoTUS paper."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from lotus_unlearn.errors import UserError
from lotus_unlearn.models.registry import register_model


class ViT(nn.Module):
    """Patch embedding (a stride-`patch` conv), a CLS token, learned position embeddings, a pre-norm encoder
    (attention and a GELU MLP of width `mlp_dim`, each behind a LayerNorm with a residual), a final LayerNorm and
    a linear head on the CLS token."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        patch: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int | None = None,
        eps: float = 1e-5,
        name: str = "vit",
    ) -> None:
        super().__init__()
        if image_size % patch:
            raise UserError(
                f"{name}: image_size {image_size} is not a multiple of the patch size {patch}; "
                f"resize the images to a multiple of {patch} or pass another patch"
            )
        if dim % heads:
            raise UserError(f"{name}: dim {dim} is not a multiple of heads {heads}; pass another heads or dim")
        n = (image_size // patch) ** 2
        self.embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            mlp_dim or 4 * dim,
            dropout=0.0,
            activation="gelu",
            layer_norm_eps=eps,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.pos
        return self.head(self.norm(self.encoder(tokens)[:, 0]))


@register_model("vit")
def vit_small(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    patch: int | None = None,
    dim: int = 128,
    depth: int = 4,
    heads: int = 4,
) -> nn.Module:
    """Small patch ViT; the patch defaults to 4 (2 for images under 16 px)."""
    return ViT(num_classes, in_channels, image_size, patch or (2 if image_size < 16 else 4), dim, depth, heads)


@register_model("vit_b16")
def vit_b16(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 224,
    weights: str | Path | None = None,
    patch: int = 16,
    dim: int = 768,
    depth: int = 12,
    heads: int = 12,
    mlp_dim: int = 3072,
    layer_norm_eps: float | None = None,
) -> nn.Module:
    """ViT-B/16 (86.6M parameters with 1000 classes). `weights`: a local file or folder in the Hugging Face layout
    (`model.safetensors` or `pytorch_model.bin`, optional `config.json`) or torchvision's `vit_b_16` state_dict;
    the checkpoint's classifier is kept when it has `num_classes` outputs, else the head starts fresh. The file
    must match the architecture arguments and `image_size`; it is checked before the model is built. LayerNorm
    eps: the weights' (Hugging Face 1e-12 or its config's, torchvision 1e-6), else 1e-12."""
    from lotus_unlearn.models.vit_weights import read_vit_weights

    arch = {"patch": patch, "dim": dim, "depth": depth, "heads": heads, "mlp_dim": mlp_dim}
    found = None
    if weights is not None:
        found = read_vit_weights(
            weights, num_classes=num_classes, in_channels=in_channels, image_size=image_size, **arch
        )
    eps = layer_norm_eps if layer_norm_eps is not None else (found.eps if found else 1e-12)
    model = ViT(num_classes, in_channels, image_size, patch, dim, depth, heads, mlp_dim, eps, name="vit_b16")
    if found is not None and not model.cls.is_meta:  # on the meta device (`check_model`) nothing is read
        found.load_into(model)
    # a checkpoint of this model rebuilds the architecture without re-reading the pretrained file
    model.lotus_rebuild = {"weights": None, "layer_norm_eps": eps}  # type: ignore[assignment]
    return model
