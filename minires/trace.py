"""Watching every op of a forward and backward pass: ``minires.trace()``.

    with minires.trace() as t:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    print(t.table(by="time", top=15))    # the slowest ops, then totals per op type
    t.to_json("trace.json")

One record per graph node and phase (a node's forward and backward rows share
its ``node`` number).  What each field measures:

    input_shapes, output_shape   of the op's inputs and of the tensor it made
    grad_in     backward: ‖gradient arriving at the op's output‖ (after that tensor's hooks)
    grad_out    backward: ‖gradient the op sends to each input‖ (None where it sends none)
    seconds     backward: wall time of the op's backward closure.  forward: time since
                the previous op was recorded -- the op's compute plus the Python between
                ops (a forward op announces itself only once it is done).  On the GPU
                the device is synchronised at each op, so the times are real, not launch times.
    bytes       size of each array the op returns (its output forward, its input
                gradients backward) that shares no memory with the arrays it was given:
                views and pass-throughs (add's backward, reshape) count 0; scratch
                arrays inside the op (im2col workspaces, temporaries) are not counted.

Only ops that record a graph are seen (nothing under ``no_grad``: the optimizer
step is invisible).  While a trace records, the models do not fuse (ops/fused.py): it
sees every batch_norm, relu and add as its own op, not the fused ops a step uses
otherwise, so its times are those of the unfused step.  When no trace is open ``autograd.tracer`` is None and the
cost is one ``is None`` test per op.

``minires trace MODEL`` (``add_parser`` below) traces one training step.
"""
from __future__ import annotations

import json
import time
import weakref
from collections import defaultdict
from dataclasses import asdict, dataclass

from . import autograd, backend

PHASES = ("forward", "backward")
ORDERS = ("order", "time", "bytes")


@dataclass
class OpRecord:
    node: int                  # the graph node: same number for its forward and backward rows
    phase: str                 # "forward" or "backward"
    op: str
    input_shapes: tuple
    output_shape: tuple
    seconds: float
    bytes: int
    grad_in: float = None      # backward rows only
    grad_out: tuple = ()       # backward rows only: one norm (or None) per input


def _norm(a):
    flat = a.reshape(-1)
    return float(backend.get_array_module(a).vdot(flat, flat)) ** 0.5


def _fresh_bytes(arrays, given):
    """Bytes of ``arrays`` that share no memory with ``given`` nor with each other."""
    total, seen = 0, list(given)
    for a in arrays:
        if a is None:
            continue
        xp = backend.get_array_module(a)
        if not any(xp.may_share_memory(a, b) for b in seen):
            total += a.nbytes
        seen.append(a)
    return total


def _synchronize(a):
    if backend.is_cupy_array(a):
        backend.cupy_module().cuda.get_current_stream().synchronize()


class Trace:
    """The recorder ``minires.trace()`` returns; see the module docstring."""

    def __init__(self):
        self.records = []
        self._nodes = {}            # id(tensor) -> (node number, weakref to the tensor)
        self._latest = {}           # node number -> its latest backward record
        self._clock = None

    # ---------------------------------------------------------- recording
    def __enter__(self):
        if autograd.tracer is not None:
            raise RuntimeError("minires.trace: a trace is already recording; close it before "
                               "opening another (traces do not nest)")
        autograd.tracer = self
        self._clock = time.perf_counter()
        return self

    def __exit__(self, *exc):
        autograd.tracer = None
        return False

    def _number(self, tensor):
        """The node number of ``tensor`` (a new one for a tensor not seen before)."""
        known = self._nodes.get(id(tensor))
        if known is not None and known[1]() is tensor:
            return known[0]
        number = len(self._nodes)
        self._nodes[id(tensor)] = (number, weakref.ref(tensor))
        return number

    def forward(self, out):
        """Called by Tensor.from_op for every op output that records a graph."""
        _synchronize(out.data)
        now = time.perf_counter()
        given = [p.data for p in out._parents]
        self.records.append(OpRecord(
            self._number(out), "forward", out._op, tuple(tuple(p.shape) for p in out._parents),
            tuple(out.shape), now - self._clock, _fresh_bytes([out.data], given)))
        self._clock = time.perf_counter()     # the next op's time leaves out this bookkeeping

    def backward(self, node, g):
        """Called by the graph walk in place of ``node._backward(g)``."""
        _synchronize(g)
        start = time.perf_counter()
        grads = node._backward(g)
        _synchronize(g)
        seconds = time.perf_counter() - start
        given = [g] + [p.data for p in node._parents]
        record = OpRecord(
            self._number(node), "backward", node._op, tuple(tuple(p.shape) for p in node._parents),
            tuple(node.shape), seconds, _fresh_bytes(grads, given), _norm(g),
            tuple(None if pg is None or not p.requires_grad else _norm(pg)
                  for p, pg in zip(node._parents, grads)))
        self.records.append(record)
        self._latest[record.node] = record
        return grads

    def walk_done(self):
        """Called at the end of each backward walk: forward timing restarts from here."""
        self._clock = time.perf_counter()

    # ---------------------------------------------------------- reading
    def _backward_record(self, tensor):
        known = self._nodes.get(id(tensor))
        if known is None or known[1]() is not tensor:
            return None
        return self._latest.get(known[0])

    def grad_norm(self, tensor):
        """‖gradient that arrived at ``tensor``‖ in the latest backward (None if none did)."""
        record = self._backward_record(tensor)
        return None if record is None else record.grad_in

    def input_grad_norms(self, tensor):
        """‖gradient ``tensor``'s op sent to each of its inputs‖ in the latest backward."""
        record = self._backward_record(tensor)
        return None if record is None else record.grad_out

    def totals(self):
        """{(op, phase): {"count", "seconds", "bytes"}}, in order of first appearance."""
        sums = defaultdict(lambda: {"count": 0, "seconds": 0.0, "bytes": 0})
        for r in self.records:
            s = sums[(r.op, r.phase)]
            s["count"] += 1
            s["seconds"] += r.seconds
            s["bytes"] += r.bytes
        return dict(sums)

    def table(self, by="order", top=None, timings=True):
        """The records as text -- all of them, or the ``top`` first when sorted ``by``
        'order' (as recorded), 'time' (slowest first) or 'bytes' (largest first) --
        then the totals per op type.  timings=False leaves the time columns out."""
        if by not in ORDERS:
            raise ValueError(f"Trace.table: by={by!r}; expected one of {', '.join(ORDERS)}")
        if top is not None and top < 0:
            raise ValueError(f"Trace.table: top must be >= 0 or None (all rows), got {top}")
        rows = list(self.records)
        if by == "time":
            rows.sort(key=lambda r: -r.seconds)
        elif by == "bytes":
            rows.sort(key=lambda r: -r.bytes)
        shown = rows if top is None else rows[:top]
        time_head = f" {'ms':>8}" if timings else ""
        lines = [f"{'node':>5} {'phase':<8} {'op':<18} {'inputs -> output':<44} "
                 f"{'|g in|':>9} {'|g out| per input':<24}{time_head} {'bytes':>10}"]
        for r in shown:
            shapes = ", ".join(map(_shape, r.input_shapes)) + " -> " + _shape(r.output_shape)
            g_in = "" if r.grad_in is None else f"{r.grad_in:.4g}"
            g_out = ", ".join("-" if v is None else f"{v:.4g}" for v in r.grad_out)
            ms = f" {1e3 * r.seconds:8.3f}" if timings else ""
            lines.append(f"{r.node:>5} {r.phase:<8} {r.op:<18} {shapes:<44} {g_in:>9} "
                         f"{g_out:<24}{ms} {r.bytes:>10}")
        if len(shown) < len(rows):
            lines.append(f"({len(rows) - len(shown)} more records; table(top=None) shows all)")
        lines += ["", f"{'op':<18} {'phase':<8} {'count':>6}{time_head} {'MB':>9}"]
        totals = self.totals()
        for (op, phase), s in sorted(totals.items(), key=lambda kv: (kv[0][1] != "forward", kv[0][0])):
            ms = f" {1e3 * s['seconds']:8.3f}" if timings else ""
            lines.append(f"{op:<18} {phase:<8} {s['count']:>6}{ms} {s['bytes'] / 2**20:9.3f}")
        for phase in PHASES:
            sel = [s for (_, p), s in totals.items() if p == phase]
            ms = f" {1e3 * sum(s['seconds'] for s in sel):8.3f}" if timings else ""
            lines.append(f"{'all':<18} {phase:<8} {sum(s['count'] for s in sel):>6}{ms} "
                         f"{sum(s['bytes'] for s in sel) / 2**20:9.3f}")
        return "\n".join(lines)

    def to_json(self, path):
        """Save every record and the totals per op type as JSON."""
        totals = [{"op": op, "phase": phase, **s} for (op, phase), s in self.totals().items()]
        with open(path, "w") as f:
            json.dump({"records": [asdict(r) for r in self.records], "totals": totals}, f, indent=1)


def _shape(shape):
    return "x".join(map(str, shape)) or "scalar"


def trace():
    """Record every op of the forward and backward passes run inside ``with``."""
    return Trace()


# ---------------------------------------------------------------- `minires trace MODEL`
def add_parser(subparsers):
    """Add ``trace`` to the ``minires`` command line (cli.main's subparsers)."""
    p = subparsers.add_parser(
        "trace", help="trace one training step of a model: every op, forward and backward",
        description="Run one training step (forward, backward, SGD update) of MODEL and print "
                    "every op's shapes, gradient norms, time and bytes, then totals per op type.")
    p.add_argument("model", help="resnet20, plain56, preact_resnet110, ... (see `minires summary --list`)")
    p.add_argument("--batch", type=int, default=32, help="images in the batch (default 32)")
    p.add_argument("--device", default="auto", help="cpu, gpu (alias cuda) or auto: gpu when CuPy sees one")
    p.add_argument("--data-dir", help="trace a batch of real CIFAR-10 training images from this "
                   "folder (default: random images)")
    p.add_argument("--by", default="time", choices=ORDERS, help="row order: as recorded, "
                   "slowest first (default) or largest first")
    p.add_argument("--top", type=int, default=25, help="rows to show (default 25; 0 shows all)")
    p.add_argument("--json", metavar="PATH", help="also save every record as JSON")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch (default 0)")
    p.set_defaults(func=run_trace)
    return p


def _batch(args, device, shape):
    import numpy as np

    from . import data, tensor
    if args.data_dir:
        images = data.CIFAR10(args.data_dir, train=True)
        loader = data.DataLoader(images, args.batch, mean=data.CIFAR10_MEAN, std=data.CIFAR10_STD,
                                 device=device)
        return next(iter(loader))
    rng = np.random.default_rng(args.seed)
    x = tensor(rng.standard_normal((args.batch, *shape)).astype(np.float32), device=device)
    return x, None


def run_trace(args):
    """``minires trace``: one training step of args.model, then the table."""
    from . import models, optim
    from .nn import functional as F
    from .random import manual_seed
    from .tensor import tensor
    from .train import resolve_device
    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    if args.top < 0:
        raise ValueError(f"--top must be 0 (all rows) or more, got {args.top}")
    device = resolve_device(args.device)
    manual_seed(args.seed)
    try:
        model = models.get_model(args.model)
    except ValueError as e:
        raise ValueError(str(e).removeprefix("get_model: ")) from None
    model.to(device)
    imagenet = args.model in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
    if imagenet and args.data_dir:
        raise ValueError(f"--data-dir gives 32x32 CIFAR-10 images; {args.model} expects 224x224 "
                         f"(leave --data-dir out to trace random images)")
    x, y = _batch(args, device, (3, 224, 224) if imagenet else (3, 32, 32))
    # an untraced forward and backward first, so the table shows steady-state times
    # (Numba's compilation, CuPy's kernel cache and the workspaces are warmed up here)
    logits = model(x)
    if y is None:                        # random images get random labels
        import numpy as np
        labels = np.random.default_rng(args.seed).integers(0, logits.shape[1], len(x))
        y = tensor(labels, device=device)
    F.cross_entropy(logits, y).backward()
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with trace() as t:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    source = "CIFAR-10 images" if args.data_dir else "random images"
    print(f"{args.model}: one training step on a batch of {args.batch} {source} ({device}), "
          f"loss {loss.item():.4f}; {len(t.records)} op records")
    print(t.table(by=args.by, top=args.top or None))
    if args.json:
        t.to_json(args.json)
        print(f"saved every record to {args.json}")


def main(argv=None):
    """``python -m minires.trace MODEL ...``: the same command without cli.py."""
    import argparse
    import sys
    parser = argparse.ArgumentParser(prog="minires")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["trace", *(sys.argv[1:] if argv is None else argv)])
    try:
        args.func(args)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"minires trace: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
