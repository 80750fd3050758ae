"""CUDA-graph mode: a training step captured once as a CUDA graph and replayed.

A GPU training step in eager mode is hundreds of kernel launches, each a few
microseconds of Python and CuPy on the host: the host, not the GPU, sets the pace.
``graphed(step)`` runs ``step`` eagerly for ``warmup`` calls (so every kernel is
compiled, every workspace and gradient buffer and pointer table exists), then
captures the next call with CuPy's ``Stream.begin_capture`` / ``end_capture`` and
from then on replays it: one ``Graph.launch()`` per call, whatever the step holds.

What a captured step may and may not do (CUDA's rules, and CuPy's):

* Work is recorded, not executed, during capture: a replay runs exactly the kernels
  the capture saw, with the arguments they had -- host numbers (a learning rate, a
  step count) are baked in.  Anything that changes from step to step must live in
  device memory that the host writes between launches (``TrainingGraph`` below keeps
  the learning rate, the step counter and the batch position there).
* No host reads (``.item()``, ``float()``, ``.get()``, printing a tensor), no
  synchronisation, no host-to-device copies, no Python hooks (they would run once,
  at capture, and never again), no cuBLAS (CuPy refuses it: ``GEMM = 'own'`` is set
  for the captured step) and no cupy.random (cuRAND: refused too).  Each is a
  ``CaptureError`` naming what was refused and what to do instead.
* Memory: the graph holds bare addresses.  CuPy's memory pool knows nothing of
  graphs (its ``Graph`` keeps no memory alive): a temporary freed during capture
  goes back to the pool's free list and would be handed to a later allocation
  while every replay still writes into it.  So the capture allocates from a private
  ``cupy.cuda.MemoryPool`` that this object keeps for the graph's lifetime and that
  nothing else allocates from (PyTorch's private graph pool, the same idea); and
  the buffers made before the capture that the graph uses (parameters, gradients,
  momenta, conv workspaces, SGD pointer tables) are held here, so that a later
  growth of a workspace (e.g. a larger evaluation batch) cannot free them.
* The graph runs on the stream that is current when it is launched (the null
  stream in minires), so it is ordered with the eager work around it (evaluation,
  the host's writes of the learning rate): nothing runs concurrently.

Everything here has run only in the CUDA emulator (tests/cuda_emulator), whose fake
CuPy records and replays captures; see docs/gpu-graphs.md.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import autograd, backend

__all__ = ["CaptureError", "GraphedStep", "graphed", "TrainingGraph", "EvaluationGraph", "own_gemm"]


class CaptureError(RuntimeError):
    """Something in a step cannot be captured in a CUDA graph (one line: what, and what to do)."""


@contextlib.contextmanager
def own_gemm():
    """kernels.cuda.GEMM = 'own' inside: minires's GEMM kernel instead of cupy.matmul (cuBLAS),
    which CuPy refuses during stream capture."""
    K = backend.kernels_for(backend.cupy_module())
    previous, K.GEMM = K.GEMM, "own"
    try:
        yield
    finally:
        K.GEMM = previous


def _kernel_buffers(K):
    """Device buffers the kernel wrappers cache across calls (conv workspaces, SGD pointer
    tables), in kernels.cuda and its submodules."""
    import sys
    held = []
    for name, module in list(sys.modules.items()):
        if module is not None and (name == K.__name__ or name.startswith(K.__name__ + ".")):
            for cache in ("_workspaces", "_sgd_tables"):
                values = getattr(module, cache, None)
                if isinstance(values, dict):
                    held.extend(values.values())
    return held


def _explain(error):
    """The CaptureError for an exception raised inside a capture."""
    text = str(error)
    if "cuBLAS" in text:
        return ("the step called cuBLAS (cupy.matmul or a dot product), which CuPy refuses during "
                "stream capture; use minires.kernels.cuda.GEMM = 'own' for the step (graphed() "
                "does unless gemm='keep') or run it eagerly")
    if "cuRAND" in text:
        return ("the step drew random numbers with cupy.random, which CuPy refuses during stream "
                "capture; draw them outside the step (e.g. once per epoch) into a device buffer "
                "that the step reads")
    if "StreamCaptureUnsupported" in text or "StreamCaptureInvalidated" in text:
        return ("the step read a device value on the host or waited for the device (.item(), "
                "float(), .get(), printing a tensor, a synchronize): nothing in a captured step may "
                "talk to the host; keep the value on the device and read it after the launch, or "
                f"run the step eagerly ({text.split(';')[0]})")
    if "StreamCaptureImplicit" in text:
        return ("the step issued work on the legacy default stream while capturing; issue it on "
                "the current stream")
    if "host-to-device copy" in text:
        return ("the step copies host data to the device (a NumPy array, a Python list or "
                "cupy.asarray of host data): copy it before capturing into a device buffer that "
                "the step reads")
    return None


class GraphedStep:
    """``step()`` eagerly ``warmup`` times, then captured once and replayed (see the module doc).

    ``step``: a callable of no arguments doing device work only, on inputs it reads
    from device buffers that stay at the same addresses (the caller refills them
    between calls).  Its return value is the capture's: device arrays that every
    replay rewrites in place (``.result``).  ``gemm='own'`` (default) runs the step's
    products on minires's GEMM kernel, in the warm-up too, so that warm-up and
    replays compute alike; ``gemm='keep'`` leaves kernels.cuda.GEMM as it is.
    """

    def __init__(self, step, warmup=1, gemm="own"):
        if warmup < 1:
            raise ValueError(f"graphed: warmup must be >= 1 (the capture needs every kernel loaded "
                             f"and every buffer made beforehand), got {warmup}")
        if gemm not in ("own", "keep"):
            raise ValueError(f"graphed: gemm must be 'own' or 'keep', got {gemm!r}")
        self.step, self.warmup, self.gemm = step, int(warmup), gemm
        self.calls = 0             # calls so far: warm-up, capture, replays
        self.graph = None
        self.result = None
        self._pool = self._stream = None
        self._held = ()

    @property
    def captured(self):
        return self.graph is not None

    def _gemm(self):
        return own_gemm() if self.gemm == "own" else contextlib.nullcontext()

    def __call__(self):
        cp = backend.cupy_module()
        if self.graph is None and self.calls < self.warmup:
            with self._gemm():
                self.result = self.step()
        else:
            if self.graph is None:
                self.capture()
            self.graph.launch(stream=cp.cuda.get_current_stream())
        self.calls += 1
        return self.result

    def capture(self):
        """Capture one call of the step (executing nothing); the next __call__ replays it."""
        cp = backend.cupy_module()
        if autograd.tracer is not None:
            raise CaptureError("graphed: minires.trace() is recording; a trace records Python "
                               "calls, which a graph replay does not make -- trace an eager step")
        K = backend.kernels_for(cp)
        K.load_all()                           # no module compiled or loaded during the capture
        self._held = _kernel_buffers(K)        # kept alive with the graph (see the module doc)
        self._pool = cp.cuda.MemoryPool()
        self._stream = cp.cuda.Stream(non_blocking=True)
        previous, autograd.capturing = autograd.capturing, "a CUDA-graph capture (minires.cuda_graph)"
        try:
            with self._gemm(), self._stream, cp.cuda.using_allocator(self._pool.malloc):
                self._stream.begin_capture()
                try:
                    result = self.step()
                except BaseException as e:
                    try:
                        self._stream.end_capture()
                    except Exception:                     # the capture is invalid anyway
                        pass
                    why = _explain(e)
                    if why is not None and not isinstance(e, CaptureError):
                        raise CaptureError(f"cannot capture the step as a CUDA graph: {why}") from e
                    raise
                graph = self._stream.end_capture()
        finally:
            autograd.capturing = previous
        self.graph, self.result = graph, result
        return graph


def graphed(step, warmup=1, gemm="own"):
    """``step`` as a GraphedStep: eager for ``warmup`` calls, then one graph launch per call."""
    return GraphedStep(step, warmup=warmup, gemm=gemm)


class TrainingGraph:
    """The device state and the captured step of ``minires train --graph``.

    One call of ``step()`` is one training step, ONE graph launch once captured: the
    graph gathers its batch itself from the epoch's augmentation plan (order, crop
    offsets, flips -- drawn once per epoch outside the graph by the loader's
    ``plan``, with minires.random.derived, exactly as eager mode draws them, and
    copied into static device buffers), at the position a device-side counter holds;
    then forward, backward and the SGD update, then the metrics.  No random numbers
    are drawn inside the graph, so it needs no in-graph RNG (a counter-based Philox):
    the whole epoch's draws exist before its first step, and augmentation is the
    eager mode's to the bit.

    Device state, all at fixed addresses, written by the host only between launches:
        lr         float64 (groups,)  the learning rate of each parameter group (the
                                      schedule writes it when it changes; SGD reads it
                                      on the device)
        step       int64 ()           the iteration count (for the non-finite flag)
        position   int64 ()           index of the batch's first sample in the epoch order
        loss_sum   float64 ()         sum of loss * batch size since the last readback
        wrong      int64 ()           misclassified samples since the last readback
        first_bad  int64 ()           the first iteration whose loss was not finite, else -1
    A batch smaller than batch_size (the end of an epoch) runs the same step eagerly.
    """

    def __init__(self, model, optimizer, loader):
        cp = backend.cupy_module()
        if loader.xp is not cp:
            raise ValueError("--graph needs a CUDA GPU: the data, the model and the step must be on "
                             "the device")
        self.model, self.optimizer, self.loader = model, optimizer, loader
        self.batch_size = loader.batch_size
        n = len(loader.labels)
        self.order = cp.zeros(n, np.int64)
        self.dy = cp.zeros(n, np.int64)
        self.dx = cp.zeros(n, np.int64)
        self.flip = cp.zeros(n, np.bool_)
        groups = len(optimizer.param_groups)
        self.lr = cp.zeros(groups, np.float64)
        self._lr_host = [None] * groups
        self.counter = cp.zeros((), np.int64)
        self.position = cp.zeros((), np.int64)
        self.loss_sum = cp.zeros((), np.float64)
        self.wrong = cp.zeros((), np.int64)
        self.first_bad = cp.full((), -1, np.int64)
        self._arange = {}
        self.graph = graphed(lambda: self._step(self.batch_size))

    # ---------------------------------------------------------- host side
    def start_epoch(self, epoch, batch_in_epoch, step):
        """Copy the epoch's plan into the static buffers and set the counters."""
        order, dy, dx, flip = self.loader.plan(epoch)
        self.order[...] = order
        if dy is not None:
            self.dy[...], self.dx[...], self.flip[...] = dy, dx, flip
        self.position.fill(batch_in_epoch * self.batch_size)
        self.counter.fill(step)

    def set_lrs(self):
        """Write the schedule's current rates to the device when they changed."""
        for i, group in enumerate(self.optimizer.param_groups):
            if group["lr"] != self._lr_host[i]:
                self.lr[i:i + 1].fill(group["lr"])
                self._lr_host[i] = group["lr"]

    def step(self, batch):
        """One training step on the next ``batch`` samples of the epoch's order."""
        self.set_lrs()
        if batch == self.batch_size:
            self.graph()
        else:                                  # the short last batch: the same step, eagerly
            with own_gemm():
                self._step(batch)

    def read(self):
        """(loss sum, wrong, first non-finite iteration or -1) since the last read, and reset
        the sums: the one device-to-host read of a log interval."""
        values = backend.cupy_module().stack([self.loss_sum, self.wrong.astype(np.float64),
                                              self.first_bad.astype(np.float64)]).get()
        self.loss_sum.fill(0)
        self.wrong.fill(0)
        return float(values[0]), int(values[1]), int(values[2])

    # ---------------------------------------------------------- the step (captured)
    def _positions(self, batch):
        ar = self._arange.get(batch)
        if ar is None:
            ar = self._arange[batch] = backend.cupy_module().arange(batch, dtype=np.int64)
        return self.position + ar

    def _step(self, batch):
        from .nn import functional as F
        cp = backend.cupy_module()
        pos = self._positions(batch)
        loader = self.loader
        x, y = loader.batch(self.order[pos], *((self.dy[pos], self.dx[pos], self.flip[pos])
                                                if loader.augment else (None, None, None)))
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=False)     # gradients stay in their buffers
        loss.backward()
        self.optimizer.step(lr=[self.lr[i:i + 1] for i in range(len(self.optimizer.param_groups))])
        bad = (self.first_bad < 0) & ~cp.isfinite(loss.data)
        cp.copyto(self.first_bad, cp.where(bad, self.counter, self.first_bad))
        self.loss_sum += loss.data * batch
        self.wrong += (logits.data.argmax(axis=1) != y.data).sum()
        self.counter += 1
        self.position += batch
        return loss.data


class EvaluationGraph:
    """``evaluate()`` of train.py with one graph launch per test batch: forward only, in
    eval mode (batch norm with the running statistics, which the training graph
    updates in place), no autograd.  The graph gathers batch k itself (the test
    loader neither shuffles nor augments: positions k*B .. k*B+B-1) and adds the
    batch's summed loss and errors into device sums, read once per evaluation.
    A short last batch runs eagerly; the first full batch of the first evaluation
    is the warm-up, the capture happens at the next one.
    """

    def __init__(self, model, loader):
        cp = backend.cupy_module()
        if loader.xp is not cp or loader.shuffle or loader.augment:
            raise ValueError("EvaluationGraph: a test loader on the GPU, without shuffling or "
                             "augmentation, is needed")
        self.model, self.loader, self.batch_size = model, loader, loader.batch_size
        self.position = cp.zeros((), np.int64)
        self.loss_sum = cp.zeros((), np.float64)
        self.wrong = cp.zeros((), np.int64)
        self._arange = cp.arange(self.batch_size, dtype=np.int64)
        self.graph = graphed(lambda: self._batch(self._arange))

    def evaluate(self):
        """(mean loss, error rate) over the test loader, like train.evaluate."""
        cp = backend.cupy_module()
        was_training = self.model.training
        self.model.eval()
        for a in (self.position, self.loss_sum, self.wrong):
            a.fill(0)
        n = len(self.loader.labels)
        try:
            for b in range(len(self.loader)):
                batch = min(self.batch_size, n - b * self.batch_size)
                if batch == self.batch_size:
                    self.graph()
                else:
                    with own_gemm():
                        self._batch(cp.arange(batch, dtype=np.int64))
        finally:
            self.model.train(was_training)
        values = cp.stack([self.loss_sum, self.wrong.astype(np.float64)]).get()
        return float(values[0]) / n, float(values[1]) / n

    def _batch(self, arange):
        from .autograd import no_grad
        from .nn import functional as F
        with no_grad():
            x, y = self.loader.batch(self.position + arange)
            logits = self.model(x)
            self.loss_sum += F.cross_entropy(logits, y, reduction="sum").data
            self.wrong += (logits.data.argmax(axis=1) != y.data).sum()
            self.position += len(arange)
