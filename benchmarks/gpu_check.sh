#!/usr/bin/env bash
# One training epoch of ResNet-20 on a CUDA device, FP32 against DoReFa W4A4 + SinReQ.
#
# Usage (from the repository root, on a machine with a CUDA GPU):
#
#     bash benchmarks/gpu_check.sh
#
# For each configuration it builds the model and optimizer as `sinreq train` does (build_training:
# with first_last="quantize", SinReQ lambda 1, SGD momentum 0.9, weight decay 1e-4, the model in
# channels_last on CUDA) and runs `sinreq.train.train_epoch`, the real training loop: channels_last
# inputs, bf16 autocast around the forward (the quantizers compute in FP32 there, see
# sinreq/train.py), cross-entropy + SinReQ, backward, SGD step, a device synchronisation at the end.
# The data is a TensorDataset of random CIFAR-shaped images (3x32x32, labels 0..9) behind a
# DataLoader (batch 256, shuffled, pinned memory on CUDA), so no dataset files are needed. One
# short warm-up epoch (8 batches: cuDNN autotuning, allocator) precedes the timed ones. Each
# configuration is timed twice: one epoch through the DataLoader (what training sees; the
# per-image loading runs on the CPU between steps) and one epoch over the same batches already
# on the device (the training steps alone). It prints images/s of each and the ratios; it
# finishes within a few minutes on any recent GPU (four epochs of 50,000 images by default).
#
# Exits 2 with a message when no CUDA device is present. Settings (environment variables):
#
#   SINREQ_GPU_CHECK_DEVICE   cuda (default) or cpu; cpu only to test this script's code path
#   SINREQ_GPU_CHECK_IMAGES   images per epoch (default 50000, a CIFAR-10 training epoch)
#   SINREQ_GPU_CHECK_BATCH    batch size (default 256)
#   SINREQ_GPU_CHECK_PYTHON   interpreter (default .venv/bin/python if present, else python3)
#
# CPU smoke test (here, without a GPU):
#   SINREQ_GPU_CHECK_DEVICE=cpu SINREQ_GPU_CHECK_IMAGES=512 bash benchmarks/gpu_check.sh
set -euo pipefail

cd "$(dirname "$0")/.."
if [[ -n "${SINREQ_GPU_CHECK_PYTHON:-}" ]]; then
    PYTHON="$SINREQ_GPU_CHECK_PYTHON"
elif [[ -x .venv/bin/python ]]; then
    PYTHON=.venv/bin/python
else
    PYTHON=python3
fi

exec "$PYTHON" - <<'PY'
import os
import sys
import tempfile
import time

import torch

device_name = os.environ.get("SINREQ_GPU_CHECK_DEVICE", "cuda")
images = int(os.environ.get("SINREQ_GPU_CHECK_IMAGES", "50000"))
batch = int(os.environ.get("SINREQ_GPU_CHECK_BATCH", "256"))
if device_name not in ("cuda", "cpu"):
    sys.exit(f"gpu_check: SINREQ_GPU_CHECK_DEVICE={device_name!r}; allowed: cuda, cpu")
if device_name == "cuda" and not torch.cuda.is_available():
    print(
        "gpu_check: no CUDA device is available (torch.cuda.is_available() is False, "
        f"torch {torch.__version__}, CUDA build {torch.version.cuda}); run this on a machine "
        "with an NVIDIA GPU, or set SINREQ_GPU_CHECK_DEVICE=cpu to test the script itself",
        file=sys.stderr,
    )
    sys.exit(2)

from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from sinreq.train import Run, TrainConfig, build_training, memory_format, train_epoch  # noqa: E402

device = torch.device(device_name)
generator = torch.Generator().manual_seed(0)
data = TensorDataset(
    torch.randn(images, 3, 32, 32, generator=generator),
    torch.randint(0, 10, (images,), generator=generator),
)
warm = TensorDataset(*(t[: 8 * batch] for t in data.tensors))
out = tempfile.mkdtemp(prefix="sinreq-gpu-check-")


def loader(dataset):
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        pin_memory=device.type == "cuda",
    )


class Preloaded:
    """The batches of a seeded shuffle, already on the device in the training memory format:
    what ``train_epoch`` needs of a loader (``generator``, ``len``, iteration), no loading."""

    def __init__(self, dataset) -> None:
        self.generator = torch.Generator().manual_seed(0)
        fmt = memory_format(device, compile=False)
        self.batches = [
            (x.to(device).contiguous(memory_format=fmt), y.to(device)) for x, y in loader(dataset)
        ]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def run(method: str, lam: float, preloaded: Preloaded) -> tuple[dict, dict]:
    """(epoch through the DataLoader, epoch over preloaded batches) for one configuration."""
    cfg = TrainConfig(
        model="resnet20", out=out, method=method, bits=4,
        act_bits=None if method == "fp" else 4, first_last="quantize", lam=lam,
        epochs=1, batch_size=batch, lr=0.01, device=device_name,
    )  # fmt: skip
    torch.manual_seed(cfg.seed)
    model, regularizer, optimizer = build_training(cfg, 10, device)
    amp = cfg.amp and device.type == "cuda"
    layout = memory_format(device, cfg.compile)

    def epoch(batches) -> dict:
        run = Run(cfg, device, model, model, regularizer, optimizer, None, (batches, None, None),
                  batches, amp, layout)  # fmt: skip
        return train_epoch(run, 0)

    epoch(loader(warm))  # warm-up
    return epoch(loader(data)), epoch(preloaded)


where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
print(f"gpu_check: ResNet-20, {images} random 3x32x32 images, batch {batch}, on {where}")
start = time.perf_counter()
preloaded = Preloaded(data)
results = {}
configs = (("FP32", "fp", 0.0), ("DoReFa W4A4 + SinReQ", "dorefa", 1.0))
kinds = ("epoch with DataLoader", "steps only (preloaded)")
for label, method, lam in configs:
    results[label] = run(method, lam, preloaded)
    for kind, row in zip(kinds, results[label], strict=True):
        print(
            f"  {label:21s} {kind:23s} {row['images_per_s']:9.0f} images/s  "
            f"({row['train_time_s']:6.1f} s, train CE {row['train_ce']:.3f}, "
            f"reg {row['train_reg']:.3f})",
            flush=True,
        )
for i, kind in enumerate(kinds):
    ratio = results["FP32"][i]["images_per_s"] / results["DoReFa W4A4 + SinReQ"][i]["images_per_s"]
    print(f"  DoReFa W4A4 + SinReQ time / FP32 time, {kind}: {ratio:.2f}x")
print(f"gpu_check: done in {time.perf_counter() - start:.0f} s")
PY
