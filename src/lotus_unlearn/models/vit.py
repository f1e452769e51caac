"""A small Vision Transformer (patch embedding, pre-norm encoder, CLS token head) for small images."""

from __future__ import annotations

import torch
import torch.nn as nn

from lotus_unlearn.errors import UserError
from lotus_unlearn.models.registry import register_model


class ViT(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        patch: int,
        dim: int,
        depth: int,
        heads: int,
    ) -> None:
        super().__init__()
        if image_size % patch:
            raise UserError(f"vit: image_size {image_size} is not a multiple of patch {patch}; pass another patch")
        n = (image_size // patch) ** 2
        self.embed = nn.Conv2d(in_channels, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
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
