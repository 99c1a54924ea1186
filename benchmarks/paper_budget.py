"""The paper profile's compute budget: runs, epochs and images per network, from the profile and
the datasets' sizes, with each network's forward FLOPs per image counted here (torch's
FlopCounterMode), and GPU hours under one stated assumption, the effective training throughput
of one GPU (``--tflops``; training ~ 3x the forward FLOPs). Writes a Markdown table.

    python benchmarks/paper_budget.py [--profile pipelines/paper.yaml] [--tflops 25]
"""

from __future__ import annotations

import argparse

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from sinreq import models

TRAIN_IMAGES = {"cifar10": 50_000, "svhn": 73_257, "imagenet": 1_281_167}  # before the hold-out
EVAL_IMAGES = {"cifar10": 10_000, "svhn": 26_032, "imagenet": 50_000}  # the test split
CLASSES = {"cifar10": 10, "svhn": 10, "imagenet": 1000}


def forward_flops(model: str, dataset: str) -> int:
    """Forward FLOPs of one image (a multiply-add counts 2)."""
    size = 224 if dataset == "imagenet" else 32
    net = models.build(model, CLASSES[dataset]).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


def budget(profile: dict, tflops: float) -> list[dict]:
    """One row per network: runs, training image passes, and GPU hours."""
    tune = len(profile["seeds"]["tune"].split(","))
    final = len(profile["seeds"]["final"].split(","))
    configs = len(profile["quant"]["methods"]) * len(profile["quant"]["bits"])
    rows = []
    for net in profile["networks"]:
        lambdas = len(str(net["lambdas"]).split(","))
        train = TRAIN_IMAGES[net["dataset"]] * 0.9  # 10 % validation hold-out
        evals = TRAIN_IMAGES[net["dataset"]] * 0.1 + EVAL_IMAGES[net["dataset"]]
        fp_runs, cont_runs = tune + final, final
        quant_runs = configs * (tune * lambdas + final * 2)
        fp_epochs, q_epochs = net["fp"]["epochs"], net["quant"]["epochs"]
        passes = train * (fp_runs * fp_epochs + (cont_runs + quant_runs) * q_epochs)
        eval_passes = evals * (fp_runs + cont_runs + quant_runs) * 2  # validation and test
        flops = forward_flops(net["model"], net["dataset"])
        seconds = (3 * passes + eval_passes) * flops / (tflops * 1e12)
        rows.append(
            {
                "network": f"{net['model']} ({net['dataset']})",
                "runs": fp_runs + cont_runs + quant_runs,
                "epochs FP / quant": f"{fp_epochs} / {q_epochs}",
                "images per quant run": f"{train * q_epochs / 1e6:.2f}M",
                "GFLOPs / image": f"{flops / 1e9:.3f}",
                "GPU hours": seconds / 3600,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="pipelines/paper.yaml")
    parser.add_argument("--tflops", type=float, default=25.0, help="effective TFLOP/s per GPU")
    args = parser.parse_args()
    with open(args.profile) as f:
        rows = budget(yaml.safe_load(f), args.tflops)
    head = [k for k in rows[0] if k != "GPU hours"] + ["1 GPU (h)", "8 GPUs (h)", "64 GPUs (h)"]
    print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    total = 0.0
    for row in rows:
        hours = row.pop("GPU hours")
        total += hours
        cells = [str(v) for v in row.values()] + [f"{hours / n:.2f}" for n in (1, 8, 64)]
        print("| " + " | ".join(cells) + " |")
    runs = sum(r["runs"] for r in rows)
    print(f"| all | {runs} | | | |" + "".join(f" {total / n:.2f} |" for n in (1, 8, 64)))


if __name__ == "__main__":
    main()
