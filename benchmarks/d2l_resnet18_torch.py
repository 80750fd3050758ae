"""The PyTorch side of demos/d2l_resnet18.py: d2l's ResNet-18 and train_ch6 recipe, on the same batches.

The network is the book's code ("Residual Networks", d2l.ai) line for line; training
is train_ch6's: Xavier-uniform weights, plain SGD (no momentum, no weight decay) at a
constant lr, cross-entropy, evaluation in eval mode after each epoch.  The batches
(order, resize to 96x96, normalisation) come from minires's DataLoader with the same
seed, so both frameworks see the same images in the same order.  Writes FOLDER/config.json
and FOLDER/metrics.jsonl in minires train's row format, which the demo reads.

    python benchmarks/d2l_resnet18_torch.py --out runs/d2l-torch            # the book's recipe
    python benchmarks/d2l_resnet18_torch.py --lr 0.01 --batch-size 128      # the English edition's
"""
import argparse
import json
import os
import time

import torch
from torch import nn
from torch.nn import functional as F

from minires import data
from minires.train import DATASETS


class Residual(nn.Module):
    """d2l's Residual, verbatim but for names."""

    def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
        super().__init__()
        self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
        self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
        self.conv3 = (nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides)
                      if use_1x1conv else None)
        self.bn1 = nn.BatchNorm2d(num_channels)
        self.bn2 = nn.BatchNorm2d(num_channels)

    def forward(self, X):
        Y = F.relu(self.bn1(self.conv1(X)))
        Y = self.bn2(self.conv2(Y))
        if self.conv3:
            X = self.conv3(X)
        return F.relu(Y + X)


def resnet_block(input_channels, num_channels, num_residuals, first_block=False):
    return [Residual(input_channels, num_channels, use_1x1conv=True, strides=2)
            if i == 0 and not first_block else Residual(num_channels, num_channels)
            for i in range(num_residuals)]


def d2l_resnet18(in_channels=1, num_classes=10):
    b1 = nn.Sequential(nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3),
                       nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(*resnet_block(64, 64, 2, first_block=True))
    b3 = nn.Sequential(*resnet_block(64, 128, 2))
    b4 = nn.Sequential(*resnet_block(128, 256, 2))
    b5 = nn.Sequential(*resnet_block(256, 512, 2))
    net = nn.Sequential(b1, b2, b3, b4, b5, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                        nn.Linear(512, num_classes))

    def init_weights(m):                         # train_ch6's initialisation
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
    net.apply(init_weights)
    return net


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", help="folder holding Fashion-MNIST (default: minires's search, "
                    "/usr/share/datasets/fashion-mnist included)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--resize", type=int, default=96)
    ap.add_argument("--limit-train", type=int, help="use only the first N training images")
    ap.add_argument("--limit-test", type=int, help="use only the first N test images")
    ap.add_argument("--iterations", type=int, help="stop after this many steps (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--out", default="runs/d2l-resnet18-torch")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    _, mean, std, classes, _ = DATASETS["fashion-mnist"]
    train_set = data.FashionMNIST(args.data_dir, train=True)
    test_set = data.FashionMNIST(args.data_dir, train=False)
    train_arrays = (train_set.images[:args.limit_train], train_set.labels[:args.limit_train])
    test_arrays = (test_set.images[:args.limit_test], test_set.labels[:args.limit_test])
    # minires train's loaders for the same TrainConfig: same seed, same order, same resize
    train_loader = data.DataLoader(train_arrays, args.batch_size, shuffle=True, seed=args.seed,
                                   augment=False, mean=mean, std=std, resize=args.resize)
    test_loader = data.DataLoader(test_arrays, 500, mean=mean, std=std, resize=args.resize)
    net = d2l_resnet18(train_arrays[0].shape[1], classes).to(args.device)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)

    def to_torch(t):
        return torch.from_numpy(t.numpy()).to(args.device)

    os.makedirs(args.out, exist_ok=True)
    settings = {"model": "d2l_resnet18 (PyTorch)", "framework": f"torch {torch.__version__}",
                "dataset": "fashion-mnist", "epochs": None if args.iterations else args.epochs,
                "iterations": args.iterations,
                "batch_size": args.batch_size, "lr": args.lr, "momentum": 0.0, "weight_decay": 0.0,
                "schedule": "constant", "milestones": None, "warmup": 0, "augment": False,
                "resize": args.resize, "limit_train": args.limit_train, "limit_test": args.limit_test,
                "seed": args.seed, "device": args.device}
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(settings, f, indent=2, sort_keys=True)
    print(f"torch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads: d2l ResNet-18 "
          f"on {len(train_arrays[1])} train / {len(test_arrays[1])} test Fashion-MNIST images at "
          f"{args.resize}x{args.resize}, {args.epochs} epochs, lr {args.lr}, batch {args.batch_size}")
    rows, step = [], 0
    for epoch in range(args.epochs):
        net.train()
        train_loader.set_epoch(epoch)
        started, loss_sum, wrong, seen = time.perf_counter(), 0.0, 0, 0
        for x, y in train_loader:
            if args.iterations is not None and step >= args.iterations:
                break
            x, y = to_torch(x), to_torch(y)
            logits = net(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(y)
            wrong += (logits.argmax(1) != y).sum().item()
            seen += len(y)
        seconds = time.perf_counter() - started
        net.eval()
        t_loss, t_wrong, t_seen = 0.0, 0, 0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = to_torch(x), to_torch(y)
                logits = net(x)
                t_loss += F.cross_entropy(logits, y, reduction="sum").item()
                t_wrong += (logits.argmax(1) != y).sum().item()
                t_seen += len(y)
        rows.append({"epoch": epoch + 1, "iteration": step, "lr": args.lr,
                     "train_loss": loss_sum / seen, "train_error": wrong / seen,
                     "test_loss": t_loss / t_seen, "test_error": t_wrong / t_seen, "seconds": seconds})
        with open(os.path.join(args.out, "metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(row, sort_keys=True) + "\n" for row in rows)
        last = rows[-1]
        print(f"epoch {epoch + 1:>3}/{args.epochs}  train loss {last['train_loss']:.4f} acc "
              f"{100 * (1 - last['train_error']):.2f}%  test acc {100 * (1 - last['test_error']):.2f}%"
              f"  ({seconds:.0f} s)", flush=True)
        if args.iterations is not None and step >= args.iterations:
            break
    print(f"final test accuracy {100 * (1 - rows[-1]['test_error']):.2f}%")


if __name__ == "__main__":
    main()
