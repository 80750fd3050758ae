"""The PyTorch reference run for docs/results.md: the same architecture and recipe as
``minires train``, on the same images, so the two accuracies can be compared.

    python benchmarks/torch_reference_train.py --dataset cifar10 --data-dir ../shared/data \\
        --epochs 30 --milestones 15 22 --out runs/torch-resnet20-cifar10

Batches (order, pad-crop-flip draws, normalisation) come from minires's DataLoader
with the same seed, converted to torch tensors; the model is benchmarks/torch_resnet.py
(He et al. 2015, option A), SGD with momentum 0.9 and weight decay 1e-4, lr ÷10 at the
milestones.  PyTorch is only the reference here: minires never imports it.

The data sets are read by minires.train.load_datasets, so ``--dataset imagefolder
--data-dir ROOT`` (e.g. the extracted CIFAR-10 JPEG copy, ROOT/train and ROOT/test)
gets the same per-channel normalisation and class count as ``minires train``.
``--data-device cuda`` keeps minires's loader on the GPU (CuPy): the uint8 images live on
the device, each batch is gathered, augmented and normalised there and handed to torch
through DLPack (no copy) -- the batches of ``minires train --device gpu`` with the same
seed, draw for draw.  Loss and errors are summed on the device and read once per epoch.
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_resnet import ResNetCifar  # noqa: E402

from minires import data  # noqa: E402
from minires.train import DATASETS, load_datasets  # noqa: E402


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
    ap.add_argument("--data-device", default="cpu", choices=["cpu", "cuda"],
                    help="where minires's loader gathers and augments the batches (default: cpu; "
                         "cuda: on the GPU through CuPy, handed over by DLPack)")
    ap.add_argument("--tf32", action="store_true",
                    help="allow TF32 in cuBLAS and cuDNN (default: off, float32 as minires)")
    ap.add_argument("--out", default="runs/torch-reference")
    args = ap.parse_args()
    if args.data_device == "cuda" and args.device != "cuda":
        ap.error("--data-device cuda needs --device cuda")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32      # explicit both ways (cuDNN's default
    torch.backends.cudnn.allow_tf32 = args.tf32            # on Hopper is TF32 for convolutions)

    # the data sets exactly as minires train reads them (an image folder's mean/std, classes)
    settings = argparse.Namespace(dataset=args.dataset, data_dir=args.data_dir, download=True,
                                  resize=None, progress=False, limit_train=None, limit_test=None,
                                  augment=args.augment)
    (train_x, train_y), test_arrays, mean, std, classes, augment = load_datasets(settings)
    train_arrays = (train_x, train_y)
    loader_device = "gpu" if args.data_device == "cuda" else "cpu"
    train_loader = data.DataLoader(train_arrays, args.batch_size, shuffle=True, seed=args.seed,
                                   augment=augment, mean=mean, std=std, device=loader_device)
    test_loader = data.DataLoader(test_arrays, 500, mean=mean, std=std, device=loader_device)

    model = ResNetCifar(args.depth, num_classes=classes)
    if train_x.shape[1] != 3:                                # Fashion-MNIST: one input channel
        model.conv1 = torch.nn.Conv2d(train_x.shape[1], 16, 3, 1, 1, bias=False)
        torch.nn.init.kaiming_normal_(model.conv1.weight)
    model.to(args.device)

    def to_torch(t):
        if args.data_device == "cuda":        # a CuPy array on the same GPU: no copy
            return torch.from_dlpack(t.data)
        return torch.from_numpy(t.numpy()).to(args.device)     # made by minires on the CPU
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    steps = len(train_loader)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [m * steps for m in args.milestones], 0.1)

    os.makedirs(args.out, exist_ok=True)
    metrics = open(os.path.join(args.out, "metrics.jsonl"), "w")
    print(f"torch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads: ResNet-{args.depth} on "
          f"{args.dataset}, {len(train_y)} train / {len(test_arrays[1])} test images, {args.epochs} epochs, "
          f"data on {args.data_device}, TF32 {args.tf32}")
    for epoch in range(args.epochs):
        model.train()
        train_loader.set_epoch(epoch)
        started, seen = time.perf_counter(), 0
        # summed on the device, read once per epoch: no host sync inside the epoch
        loss_acc = torch.zeros((), dtype=torch.float64, device=args.device)
        wrong_acc = torch.zeros((), dtype=torch.int64, device=args.device)
        for x, y in train_loader:
            x, y = to_torch(x), to_torch(y)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_acc += loss.detach() * len(y)
            wrong_acc += (logits.argmax(1) != y).sum()
            seen += len(y)
        loss_sum, wrong = float(loss_acc), int(wrong_acc)
        seconds = time.perf_counter() - started
        model.eval()
        t_loss = torch.zeros((), dtype=torch.float64, device=args.device)
        t_wrong = torch.zeros((), dtype=torch.int64, device=args.device)
        t_seen = 0
        with torch.no_grad():
            for x, y in test_loader:
                x, y = to_torch(x), to_torch(y)
                logits = model(x)
                t_loss += F.cross_entropy(logits, y, reduction="sum")
                t_wrong += (logits.argmax(1) != y).sum()
                t_seen += len(y)
        t_loss, t_wrong = float(t_loss), int(t_wrong)
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
