"""The PyTorch reference run for docs/results.md: the same architecture and recipe as
``minires train``, on the same images, so the two accuracies can be compared.

    python benchmarks/torch_reference_train.py --dataset cifar10 --data-dir ../shared/data \\
        --epochs 30 --milestones 15 22 --out runs/torch-resnet20-cifar10

Batches (order, pad-crop-flip draws, normalisation) come from minires's DataLoader
with the same seed, converted to torch tensors; the model is benchmarks/torch_resnet.py
(He et al. 2015, option A), SGD with momentum 0.9 and weight decay 1e-4, lr ÷10 at the
milestones.  PyTorch is only the reference here: minires never imports it.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_resnet import ResNetCifar  # noqa: E402

from minires import data  # noqa: E402
from minires.train import DATASETS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cifar10", choices=list(DATASETS))
    ap.add_argument("--data-dir")
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--milestones", type=int, nargs="+", default=[15, 22])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", default="runs/torch-reference")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    cls, mean, std, classes, augment_default = DATASETS[args.dataset]
    train_set, test_set = cls(args.data_dir, train=True), cls(args.data_dir, train=False)
    augment = augment_default if args.augment is None else args.augment
    train_loader = data.DataLoader(train_set, args.batch_size, shuffle=True, seed=args.seed,
                                   augment=augment, mean=mean, std=std)
    test_loader = data.DataLoader(test_set, 500, mean=mean, std=std)

    model = ResNetCifar(args.depth, num_classes=classes)
    if train_set.images.shape[1] != 3:                       # Fashion-MNIST: one input channel
        model.conv1 = torch.nn.Conv2d(train_set.images.shape[1], 16, 3, 1, 1, bias=False)
        torch.nn.init.kaiming_normal_(model.conv1.weight)
    model.to(args.device)

    def to_torch(t):                          # batches are made by minires on the CPU
        return torch.from_numpy(t.numpy()).to(args.device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    steps = len(train_loader)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [m * steps for m in args.milestones], 0.1)

    os.makedirs(args.out, exist_ok=True)
    metrics = open(os.path.join(args.out, "metrics.jsonl"), "w")
    print(f"torch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads: ResNet-{args.depth} on "
          f"{args.dataset}, {len(train_set)} train / {len(test_set)} test images, {args.epochs} epochs")
    for epoch in range(args.epochs):
        model.train()
        train_loader.set_epoch(epoch)
        started, loss_sum, wrong, seen = time.perf_counter(), 0.0, 0, 0
        for x, y in train_loader:
            x, y = to_torch(x), to_torch(y)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(y)
            wrong += (logits.argmax(1) != y).sum().item()
            seen += len(y)
        seconds = time.perf_counter() - started
        model.eval()
        t_loss, t_wrong, t_seen = 0.0, 0, 0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = to_torch(x), to_torch(y)
                logits = model(x)
                t_loss += F.cross_entropy(logits, y, reduction="sum").item()
                t_wrong += (logits.argmax(1) != y).sum().item()
                t_seen += len(y)
        row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_error": wrong / seen,
               "test_loss": t_loss / t_seen, "test_error": t_wrong / t_seen, "seconds": seconds,
               "lr": opt.param_groups[0]["lr"]}
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
        print(f"epoch {epoch + 1:>3}/{args.epochs}  train loss {row['train_loss']:.4f} error "
              f"{100 * row['train_error']:.2f}%  test loss {row['test_loss']:.4f} error "
              f"{100 * row['test_error']:.2f}%  ({seconds:.0f} s)", flush=True)
    print(f"final test accuracy {100 * (1 - row['test_error']):.2f}%")


if __name__ == "__main__":
    main()
