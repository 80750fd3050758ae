"""Epoch time on the full CIFAR-10 JPEG copy, data and augmentation on the device: minires eager and graph vs PyTorch.

    python benchmarks/gpu_epoch.py --data .data/cifar-10-jpeg.tar.gz [--epochs 2] [--only ...]
    python benchmarks/gpu_epoch.py --smoke          # synthetic images: a check that it runs

--data: the tarball (read in place) or the extracted folder holding train/<class>/*.jpg and
test/<class>/*.jpg (see ../shared/data/JPEG.md).  The images are decoded once with
minires.data.ImageFolder (Pillow) and cached as .npz beside the data; decoding is timed
apart and is no part of an epoch.

Each row runs in its own subprocess, with the same data path:

    minires-eager   minires.data.DataLoader(device='gpu', shuffle, augment): the uint8 images
                    on the device, each batch gathered, pad-4-cropped, flipped and normalised
                    there; ResNet-20, SGD (momentum 0.9, wd 1e-4, lr 0.1); loss and errors summed
                    on the device, read once per epoch
    minires-graph   the same through minires.cuda_graph.TrainingGraph (what train --graph runs):
                    one graph launch per step, the batch gathered inside the graph; the short last
                    batch eagerly; test pass through EvaluationGraph
    torch-eager     the same uint8 array as one torch tensor on the device; the same pad-crop-flip
                    written in torch on the device (one gather + mask, as minires does); the
                    epoch's order and crop/flip draws made once per epoch on the host (numpy)
                    and copied over; torch_resnet.ResNetCifar(20); sums on the device

Prints per epoch: training seconds (390 steps of 128 + one of 80), test-pass seconds (10,000
images, batch 500 / minires graph: EvaluationGraph), images/s, and peak device memory (minires: its
CuPy pool plus the graphs' private pools, which never shrink; torch: max_memory_reserved).
The first epoch holds compilation, warm-up and the capture: read the later ones.  Training
loss/error are printed only to show that each run trains (different weights' init and draws:
not comparable digit for digit).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("minires-eager", "minires-graph", "torch-eager")
RUN_ORDER = ("minires-graph", "torch-eager", "minires-eager")
MEAN_STD_NOTE = "per-channel mean/std of the training images (minires.data.channel_stats)"


def load(args):
    """(train images, train labels, test images, test labels, mean, std, decode seconds)."""
    import numpy as np

    from minires import data
    if args.smoke:
        rng = np.random.default_rng(0)
        tr = rng.integers(0, 256, (args.limit_train, 3, 32, 32), dtype=np.uint8)
        te = rng.integers(0, 256, (args.limit_test, 3, 32, 32), dtype=np.uint8)
        return (tr, rng.integers(0, 10, len(tr)), te, rng.integers(0, 10, len(te)),
                *data.channel_stats(tr), 0.0)
    t0 = time.perf_counter()
    if data.imagefolder.is_tarball(args.data):
        splits = [data.ImageFolder(args.data, subfolder=f"{args.subfolder}/{s}", progress=False)
                  for s in ("train", "test")]
    else:
        splits = [data.ImageFolderSplit(args.data, train=s == "train", progress=False)
                  for s in ("train", "test")]
    if splits[0].classes != splits[1].classes:
        raise SystemExit(f"gpu_epoch: train and test class folders differ: {splits[0].classes} vs "
                         f"{splits[1].classes}")
    seconds = time.perf_counter() - t0
    tr, te = splits
    n, m = args.limit_train or len(tr), args.limit_test or len(te)
    return (tr.images[:n], tr.labels[:n], te.images[:m], te.labels[:m], *data.channel_stats(tr.images[:n]),
            seconds)


def _device_mib(cp, *pools):
    return (cp.get_default_memory_pool().total_bytes() + sum(p.total_bytes() for p in pools if p)) / 2**20


def run_minires(args, variant):
    import numpy as np

    import minires as mr
    from minires import cuda_graph, data
    from minires.train import evaluate
    if not mr.backend.cuda_is_available():
        raise SystemExit("no CUDA device for CuPy (this benchmark is for the GPU)")
    cp = mr.backend.cupy_module()
    tr_x, tr_y, te_x, te_y, mean, std, decode_s = load(args)
    mr.manual_seed(args.seed)
    loader = data.DataLoader((tr_x, tr_y), args.batch, shuffle=True, seed=args.seed, augment=True,
                             mean=mean, std=std, device="gpu")
    test_loader = data.DataLoader((te_x, te_y), args.eval_batch, mean=mean, std=std, device="gpu")
    model = mr.models.resnet20().to("gpu")
    opt = mr.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    n = len(tr_y)
    sync = cp.cuda.Device().synchronize
    tg = eg = None
    if variant == "minires-graph":
        tg = cuda_graph.TrainingGraph(model, opt, loader)
        eg = cuda_graph.EvaluationGraph(model, test_loader)
    rows, step = [], 0
    for epoch in range(args.epochs):
        sync()
        t0 = time.perf_counter()
        model.train()
        if tg is not None:
            tg.start_epoch(epoch, 0, step)
            for b in range(len(loader)):
                tg.step(min(args.batch, n - b * args.batch))
            step += len(loader)
            loss_sum, wrong, _ = tg.read()         # the one read of the epoch (a sync)
        else:
            from minires.nn import functional as F
            loader.set_epoch(epoch)
            loss_acc, wrong_acc = cp.zeros((), np.float64), cp.zeros((), np.int64)
            for x, y in loader:
                logits = model(x)
                loss = F.cross_entropy(logits, y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                loss_acc += loss.data * len(y.data)
                wrong_acc += (logits.data.argmax(axis=1) != y.data).sum()
            step += len(loader)
            loss_sum, wrong = float(loss_acc.get()), int(wrong_acc.get())
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        test_loss, test_err = eg.evaluate() if eg is not None else evaluate(model, test_loader)
        sync()
        rows.append({"epoch": epoch + 1, "train_s": train_s, "test_s": time.perf_counter() - t0,
                     "train_loss": loss_sum / n, "train_error": wrong / n, "test_error": float(test_err)})
    pools = [tg.graph._pool, eg.graph._pool] if tg is not None else []
    return {"rows": rows, "reserved_mib": _device_mib(cp, *pools), "decode_s": decode_s,
            "train": n, "test": len(te_y)}


def _torch_crops(torch, images, idx, dy, dx, flip, pad=4):
    """images[idx] zero-padded by pad, cropped at (dy, dx) in the padded frame, mirrored where
    flip: minires.data.transforms.gather_crops written in torch (one gather and a mask)."""
    _, C, H, W = images.shape
    i = torch.arange(H, device=images.device)
    j = torch.arange(W, device=images.device)
    rows = dy[:, None] - pad + i[None, :]
    cols = dx[:, None] - pad + torch.where(flip[:, None], W - 1 - j, j)
    inside = (((rows >= 0) & (rows < H))[:, None, :, None] & ((cols >= 0) & (cols < W))[:, None, None, :])
    rows, cols = rows.clamp(0, H - 1), cols.clamp(0, W - 1)
    c = torch.arange(C, device=images.device)
    flat = ((idx[:, None, None, None] * C + c[None, :, None, None]) * (H * W)
            + rows[:, None, :, None] * W + cols[:, None, None, :])
    return images.reshape(-1).take(flat) * inside


def run_torch(args, variant):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch_resnet import ResNetCifar

    from minires.random import derived
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and not args.smoke:
        raise SystemExit("torch sees no CUDA device")
    tf32 = args.tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    tr_x, tr_y, te_x, te_y, mean, std, decode_s = load(args)
    torch.manual_seed(args.seed)
    images = torch.from_numpy(np.ascontiguousarray(tr_x)).to(device)        # the one copy
    labels = torch.from_numpy(np.asarray(tr_y, np.int64)).to(device)
    test_images = torch.from_numpy(np.ascontiguousarray(te_x)).to(device)
    test_labels = torch.from_numpy(np.asarray(te_y, np.int64)).to(device)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    model = ResNetCifar(20).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    n, B = len(labels), args.batch
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rows = []
    for epoch in range(args.epochs):
        sync()
        t0 = time.perf_counter()
        model.train()
        rng = derived(np, args.seed, epoch)                # the loader's draws, on the host
        order = torch.from_numpy(np.argsort(rng.random(n))).to(device)
        dy = torch.from_numpy(rng.integers(0, 9, size=n)).to(device)
        dx = torch.from_numpy(rng.integers(0, 9, size=n)).to(device)
        flip = torch.from_numpy(rng.random(n) < 0.5).to(device)
        loss_acc = torch.zeros((), dtype=torch.float64, device=device)
        wrong_acc = torch.zeros((), dtype=torch.int64, device=device)
        for b in range(0, n, B):
            part = slice(b, b + B)
            idx = order[part]
            x = _torch_crops(torch, images, idx, dy[part], dx[part], flip[part])
            x = (x.float() / 255 - m) / s
            y = labels[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_acc += loss.detach() * len(y)
            wrong_acc += (logits.argmax(1) != y).sum()
        loss_sum, wrong = float(loss_acc), int(wrong_acc)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.eval()
        t_wrong = torch.zeros((), dtype=torch.int64, device=device)
        with torch.no_grad():
            for b in range(0, len(test_labels), args.eval_batch):
                x = (test_images[b:b + args.eval_batch].float() / 255 - m) / s
                t_wrong += (model(x).argmax(1) != test_labels[b:b + args.eval_batch]).sum()
        test_err = int(t_wrong) / len(test_labels)
        rows.append({"epoch": epoch + 1, "train_s": train_s, "test_s": time.perf_counter() - t0,
                     "train_loss": loss_sum / n, "train_error": wrong / n, "test_error": test_err})
    out = {"rows": rows, "decode_s": decode_s, "train": n, "test": len(test_labels), "device": device,
           "tf32": f"matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}"}
    if device == "cuda":
        out["reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        out["alloc_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def child(variant, args, argv):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", variant] + argv
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE, timeout=args.child_timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"skipped: ran past {args.child_timeout} s"}
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()] or ["failed"]
        return {"error": lines[-1][:200]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="cifar-10-jpeg.tar.gz or the folder holding train/ and test/")
    ap.add_argument("--subfolder", default="cifar-10-jpeg",
                    help="the tree's folder inside the tarball (default: cifar-10-jpeg)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per row (default: 2; the first warms up)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--eval-batch", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-train", type=int, help="only the first N training images")
    ap.add_argument("--limit-test", type=int, help="only the first N test images")
    ap.add_argument("--tf32", action="store_true",
                    help="torch: TF32 for matmul and cuDNN (default: off, fp32 as minires)")
    ap.add_argument("--only", nargs="+", choices=VARIANTS)
    ap.add_argument("--smoke", action="store_true",
                    help="10 synthetic training and 6 test images, batch 4, 1 epoch: a check, no figures")
    ap.add_argument("--child-timeout", type=float, default=300, help="seconds per row (default: 300)")
    ap.add_argument("--json", help="also write the raw results to this file")
    ap.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    args = ap.parse_args()
    if args.smoke:
        args.epochs, args.batch, args.eval_batch = 1, 4, 4
        args.limit_train, args.limit_test = args.limit_train or 10, args.limit_test or 6
    elif not args.data:
        ap.error("--data is needed (the JPEG copy), or --smoke")
    elif not os.path.exists(args.data):
        print(f"gpu_epoch: --data {args.data} does not exist", file=sys.stderr)
        sys.exit(1)
    if min(args.epochs, args.batch, args.eval_batch) < 1:
        ap.error("--epochs, --batch and --eval-batch must be >= 1")
    sys.path.insert(0, HERE)
    if args.child:
        run = run_minires if args.child.startswith("minires") else run_torch
        print(json.dumps(run(args, args.child)))
        return
    from _timing import machine
    print(f"# epoch benchmark, ResNet-20, batch {args.batch}, data {'synthetic (SMOKE, no figures)' if args.smoke else args.data}, "
          f"fp32{' (torch: TF32)' if args.tf32 else ''}; {machine()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
          flush=True)
    if not args.smoke:                       # decode (and cache) once, before the timed children
        t0 = time.perf_counter()
        load(args)
        print(f"decoded/loaded the images in {time.perf_counter() - t0:.1f} s (cached for the rows)", flush=True)
    # the most needed rows first, each printed as it lands and saved to --json (a time-out keeps them)
    results = {}
    print(f"{'variant':<15}{'epoch':>6}{'train s':>9}{'img/s':>8}{'test s':>8}{'MiB':>7}"
          f"{'train loss':>11}{'train err':>10}{'test err':>9}", flush=True)
    for v in sorted(args.only or VARIANTS, key=RUN_ORDER.index):
        t0 = time.perf_counter()
        r = results[v] = child(v, args, argv)
        if "rows" not in r:
            print(f"{v:<15} not run: {r['error']} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for row in r.get("rows", []):
            mib = f"{r['reserved_mib']:7.0f}" if "reserved_mib" in r else f"{'-':>7}"
            print(f"{v:<15}{row['epoch']:6d}{row['train_s']:9.2f}{r['train'] / row['train_s']:8.0f}"
                  f"{row['test_s']:8.2f}{mib}{row['train_loss']:11.4f}{100 * row['train_error']:9.2f}%"
                  f"{100 * row['test_error']:8.2f}%", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    base = results.get("torch-eager", {}).get("rows")
    if base:
        last = base[-1]["train_s"]
        for v, r in results.items():
            if "rows" in r and v != "torch-eager":
                print(f"ratio {v} / torch-eager, last epoch's training: {r['rows'][-1]['train_s'] / last:.2f}")
    print("MiB: minires = CuPy pool total (+ the graphs' private pools); torch = max_memory_reserved; "
          "both hold the data set on the device")


if __name__ == "__main__":
    main()
