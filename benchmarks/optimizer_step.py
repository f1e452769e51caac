"""One optimizer step, fused kernel against torch's per-tensor loop, for the models the CPU benchmarks train.

`make_optimizer` (every method and training) asks torch for the fused kernel (CPU from torch 2.4, CUDA) and falls
back to the loop. Here both variants of SGD (momentum 0.9) and AdamW step the same parameters with fixed
gradients, interleaved `--repeats` times; the median milliseconds per step and the ratio are printed.

    .venv/bin/python benchmarks/optimizer_step.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import lotus_unlearn as lu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    models = {
        "cnn (demo)": lu.create_model("cnn", num_classes=10, in_channels=1, image_size=28, width=16, hidden=128),
        "resnet18 w0.25": lu.create_model("resnet18", num_classes=10, in_channels=3, image_size=32, width=0.25),
    }
    for label, model in models.items():
        model.to(memory_format=torch.channels_last)  # the layout the library trains conv models in
        params = list(model.parameters())
        for p in params:
            p.grad = torch.randn_like(p)
        times: dict[tuple[str, bool], list[float]] = {}
        for _ in range(args.repeats):
            for name in ("sgd", "adamw"):
                for fused in (False, True):
                    kw = {"lr": 1e-3, "weight_decay": 5e-4, "fused": fused}
                    opt = (
                        torch.optim.SGD(params, momentum=0.9, **kw)
                        if name == "sgd"
                        else torch.optim.AdamW(params, **kw)
                    )
                    opt.step()  # state allocation outside the timing
                    start = time.perf_counter()
                    for _ in range(args.steps):
                        opt.step()
                    times.setdefault((name, fused), []).append((time.perf_counter() - start) / args.steps)
        n = sum(p.numel() for p in params)
        print(f"{label}: {n} parameters in {len(params)} tensors")
        for name in ("sgd", "adamw"):
            loop, fused = (1e3 * statistics.median(times[(name, f)]) for f in (False, True))
            print(f"  {name:6s} loop {loop:6.3f} ms   fused {fused:6.3f} ms   ({loop / fused:.1f}x)")


if __name__ == "__main__":
    main()
