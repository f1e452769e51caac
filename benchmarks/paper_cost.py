"""What each config in configs/paper/ would cost: counted image passes, measured CPU throughput, GPU estimates.

For every config it counts the training image passes of the whole grid (originals, gold models, every method and
sweep point, evaluation), from the config itself (epochs, forget settings, seeds, methods) and the public sizes of
the datasets. One pass = one image through forward + backward + step; a forward alone counts 1/3. Early stopping
is ignored (an upper bound). Per-method passes (per epoch, F = forget, R = retain, V = validation samples):
LoTUS (F + 0.3R) x 4/3 plus V/3 once and F/3 per epoch; Finetune R; NegGrad F; NegGrad+ 2R; RndLabel F + R;
Bad Teacher (F + 0.3R) x 5/3; SCRUB F (max epochs) + R x 4/3; SSD N + F once; UNSIR 2 x its retain subset; SalUn
F + R plus F once; evaluation (N + val + test) / 3 per cell and per reference model.

Two estimates per config, both marked as estimates in docs/paper.md:
* CPU: passes / the images per second measured here (`--measure`, a few training steps of each model at the
  config's image size, on this machine's CPU);
* one GPU: passes / the rate implied by the paper's own reported times (its gold models' training time on an
  RTX 4080, from lotus_unlearn/bench/paper_values.yaml: epochs x |D_r| / time), per model and dataset.

    .venv/bin/python benchmarks/paper_cost.py --measure --threads 2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("LOTUS_PROGRESS", "0")

import torch

from lotus_unlearn.bench.config import BenchConfig, load_config
from lotus_unlearn.bench.paper import FAMILIES, published
from lotus_unlearn.methods import get_method
from lotus_unlearn.models import create_model

ROOT = Path(__file__).resolve().parents[1]
# public sizes: train, validation, test (held-out data split as the loaders do), classes, native image size
SIZES = {
    "cifar10": (50_000, 5_000, 5_000, 10, 32),
    "cifar100": (50_000, 5_000, 5_000, 100, 32),
    "tinyimagenet": (100_000, 5_000, 5_000, 200, 64),
    "mufac": (10_025, 1_539, 1_504, 8, 128),  # the uncleaned release's CSV rows (the cleaned one has fewer)
    "imagefolder": (50_000, 25_000, 25_000, 1000, 224),  # ImageNet-1k: 50 per class, val 50k split 25k / 25k
}
PAPER_NAME = {"imagefolder": "imagenet"}


def method_passes(method: str, hp: dict, n: int, f: int, v: int, k: int) -> float:
    cfg = get_method(method)(**hp).cfg
    e, r = cfg.epochs, n - f
    retain_subset = min(r, k * (100 if k >= 100 else 1000))
    return {
        "lotus": e * (f + 0.3 * r) * 4 / 3 + v / 3 + e * f / 3,
        "finetune": e * r,
        "neggrad": e * f,
        "neggrad_plus": 2 * e * r,
        "random_label": e * (f + r),
        "bad_teacher": e * (f + 0.3 * r) * 5 / 3,
        "scrub": min(getattr(cfg, "msteps", e), e) * f + e * r * 4 / 3,
        "ssd": n + f,
        "unsir": 2 * retain_subset,
        "salun": e * (f + r) + f,
    }.get(method, e * (f + r))


def forget_size(forget, n: int, k: int) -> int:
    if forget.classes:
        return n // k * len(forget.classes)
    if forget.first is not None:
        return forget.first
    return round(forget.fraction * n)


def config_passes(cfg: BenchConfig) -> dict[str, float]:
    """Training image passes of the whole grid, split into reference models, methods and evaluation."""
    out = {"references": 0.0, "methods": 0.0, "evaluation": 0.0}
    originals = set()
    for g in cfg.groups():
        n, v, t, k, _ = SIZES[g.dataset]
        f = forget_size(g.forget, n, k)
        epochs = int(g.model.train.get("epochs", 0))
        if not g.model.original and (g.dataset, g.model.label, g.seed) not in originals:
            originals.add((g.dataset, g.model.label, g.seed))
            out["references"] += epochs * n + (n + v + t) / 3
        if g.gold:
            out["references"] += epochs * (n - f) + (n + v + t) / 3
        for variant in g.variants:
            out["methods"] += method_passes(variant.method, variant.hparams, n, f, v, k)
            out["evaluation"] += (n + v + t) / 3
    return out


def image_size(cfg: BenchConfig) -> int:
    return int(cfg.data_args.get("size") or SIZES[cfg.datasets[0]][4])


def gpu_rate(cfg: BenchConfig) -> tuple[float, str]:
    """Images per second of training on the paper's GPU: epochs x |D_r| / its gold model's reported time, for
    this model family and dataset in its instance-wise benchmark, |D_r| ~ 90% of the training set (ImageNet-1k, with no gold model: ViT-B/16 on CIFAR-10, the
    same 224-pixel input)."""
    family = FAMILIES[cfg.models[0].model]
    dataset = PAPER_NAME.get(cfg.datasets[0], cfg.datasets[0])
    if dataset == "imagenet":
        dataset = "cifar10"
    entry = next(
        e
        for e in published()
        if (e["benchmark"]["dataset"], e["benchmark"]["model"]) == (dataset, family)
        and "minutes" in e["values"].get("retrain", {})
    )
    n, _, _, _, _ = SIZES[dataset]
    epochs = 150 if family == "resnet18" else 30
    minutes = entry["values"]["retrain"]["minutes"]
    return epochs * 0.9 * n / (minutes * 60), f"{family} {dataset}: gold {minutes} min"


def measure(model: str, size: int, classes: int, batch: int, steps: int) -> float:
    """Training images per second on this CPU: `steps` SGD steps after one warm-up step."""
    torch.manual_seed(0)
    net = create_model(model, num_classes=classes, in_channels=3, image_size=size)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, classes, (batch,))

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true", help="measure CPU throughput (else only count passes)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    configs = [load_config(p) for p in sorted((ROOT / "configs" / "paper").glob("*.yaml"))]
    cpu: dict[tuple[str, int], float] = {}
    if args.measure:
        for cfg in configs:
            key = (cfg.models[0].model, image_size(cfg))
            if key not in cpu:
                vit = key[0] == "vit_b16"
                cpu[key] = measure(*key, 10, batch=4 if vit else 32, steps=2 if vit else 5)
                print(f"CPU training throughput {key[0]} at {key[1]} px: {cpu[key]:.3g} images/s")
        load = os.getloadavg()[0]
        print(f"torch {torch.__version__}, {args.threads} thread(s), load average {load:.1f}")
    print()
    print("| config | cells | passes (M): references / methods / evaluation | CPU (days) | one GPU (h) | GPU rate |")
    print("|---|---:|---|---:|---:|---|")
    for cfg in configs:
        p = config_passes(cfg)
        total = sum(p.values())
        rate, why = gpu_rate(cfg)
        key = (cfg.models[0].model, image_size(cfg))
        cpu_days = f"{total / cpu[key] / 86400:,.0f}" if key in cpu else "–"
        cells = sum(len(g.cell_ids()) for g in cfg.groups())
        print(
            f"| {Path(cfg.path or '').name} | {cells} | {p['references'] / 1e6:.1f} / {p['methods'] / 1e6:.1f} / "
            f"{p['evaluation'] / 1e6:.1f} | {cpu_days} | {total / rate / 3600:.1f} | {rate:,.0f} img/s ({why}) |"
        )


if __name__ == "__main__":
    main()
