"""SalUn, weight saliency (Fan et al., ICLR 2024): before unlearning, rank every weight by |gradient of the
forget loss| at the original weights and keep the top `mask_density` fraction (SalUn's default: half, i.e. the
median threshold); then run a base unlearning method that may update only those weights. `base="random_label"`
is SalUn's own method ("SalUn(RL)"); `base="lotus"` gives SalUn(LoTUS) from the LoTUS paper.

The mask goes through `ctx.param_mask`, which `methods.base.step` applies to every update: masked-out weights
get no gradient and are restored after each optimizer step, so weight decay and momentum cannot move them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lotus_unlearn.errors import UserError
from lotus_unlearn.methods.base import (
    FRACTION,
    Constraint,
    Context,
    Method,
    OneOf,
    ParamMask,
    build_config,
    mean_gradients,
    register,
)
from lotus_unlearn.methods.lotus import Lotus, LotusConfig
from lotus_unlearn.methods.random_label import RandomLabelConfig, run_random_label

BASES = ("random_label", "lotus")


@dataclass
class SalunConfig(RandomLabelConfig):
    base: str = "random_label"  # or "lotus"; the base method's own hyper-parameters apply
    mask_density: float = 0.5  # fraction of weights that may change (SalUn: 0.5; the LoTUS paper used 0.1)

    constraints: ClassVar[dict[str, Constraint]] = {"base": OneOf(("random_label",)), "mask_density": FRACTION}


@dataclass
class SalunLotusConfig(LotusConfig):
    base: str = "lotus"
    mask_density: float = 0.5

    constraints: ClassVar[dict[str, Constraint]] = {"base": OneOf(("lotus",)), "mask_density": FRACTION}


def saliency_mask(ctx: Context, density: float) -> ParamMask:
    """The top-`density` weights by |mean gradient of the forget-set CE| at the current (original) weights."""
    grads = mean_gradients(ctx, ctx.model, ctx.forget)
    return ParamMask.top_fraction(list(ctx.model.parameters()), [g.abs() for g in grads], density)


@register
class Salun(Method):
    name = "salun"
    summary = "weight-saliency mask (top |forget gradient|) + random labelling or LoTUS on those weights only"
    citation = (
        "Fan et al., SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image "
        "Classification and Generation, ICLR 2024"
    )
    Config = SalunConfig
    kind_note = "with base=lotus, LoTUS's per-kind defaults"
    notes = (
        "mask of the top 10% (SalUn's default: 50%); SalUn(LoTUS) was its best method on TinyImageNet. Other "
        "hyper-parameters are the base method's (SalUn's own RL runs: SGD, batch 256, lr tuned around 1e-2..1e-1)"
    )

    def build(self, hparams: dict[str, Any]) -> Any:
        base = str(hparams.get("base", "random_label"))
        if base not in BASES:
            raise UserError(f"salun base {base!r} is unknown; pass one of {', '.join(BASES)}")
        cfg_cls = SalunLotusConfig if base == "lotus" else SalunConfig
        return build_config(cfg_cls, hparams, f"{self.name} (base={base})")

    def defaults_for(self, kind: str) -> dict[str, Any]:
        """The base method's defaults for the kind of request (SalUn(LoTUS) class-wise: LoTUS's)."""
        return dict(Lotus.kind_defaults.get(kind, {})) if self.explicit.get("base") == "lotus" else {}

    def run(self, ctx: Context) -> int:
        mask = saliency_mask(ctx, ctx.cfg.mask_density)
        ctx.param_mask = mask
        ctx.log.append({"stage": "mask", "base": ctx.cfg.base, "mask_density": mask.density})
        if ctx.cfg.base == "lotus":
            return Lotus().run(ctx)
        return run_random_label(ctx)
