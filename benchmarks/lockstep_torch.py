"""minires and PyTorch in lockstep: the same initial weights, the same batches, float64.

    python benchmarks/lockstep_torch.py --data-dir ../shared/data [--steps 41]

Prints both losses every few steps.  The two agree to ~1e-14 at the start; training
at lr 0.1 is chaotic, so rounding differences then grow by orders of magnitude per
few steps -- the test of equivalence is the first steps, and that the losses stay
on one track afterwards.  (Used for docs/results.md: why two single runs of the
two frameworks may end a few points apart.)
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_resnet import ResNetCifar  # noqa: E402

import minires as mr  # noqa: E402
from minires import data  # noqa: E402
from minires.nn import functional as F  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--steps", type=int, default=41)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    mr.manual_seed(args.seed)
    ours = mr.models.resnet20().double()
    ref = ResNetCifar(20).double()
    ref.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    opt_ours = mr.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loader = data.DataLoader(data.CIFAR10(args.data_dir, train=True), 128, shuffle=True, seed=args.seed,
                             augment=True, mean=data.CIFAR10_MEAN, std=data.CIFAR10_STD)
    print(f"{'step':>5}{'minires loss':>20}{'torch loss':>20}{'|difference|':>14}")
    for step, (x, y) in enumerate(loader):
        if step >= args.steps:
            break
        x64 = x.numpy().astype(np.float64)
        loss = F.cross_entropy(ours(mr.tensor(x64)), y)
        opt_ours.zero_grad()
        loss.backward()
        opt_ours.step()
        ref_loss = torch.nn.functional.cross_entropy(ref(torch.tensor(x64)), torch.tensor(y.numpy()))
        opt_ref.zero_grad()
        ref_loss.backward()
        opt_ref.step()
        if step % 5 == 0 or step == args.steps - 1:
            print(f"{step:>5}{loss.item():20.12f}{ref_loss.item():20.12f}{abs(loss.item() - ref_loss.item()):14.2e}")


if __name__ == "__main__":
    main()
