"""SGD's update for a list of parameters, in place (PyTorch's rule; see minires/optim/sgd.py).

The GPU module does the same in one kernel launch over all parameters; on the
CPU a loop over NumPy arrays is already memory-bound, so this stays plain.
"""
import numpy as np


def sgd_step(params, grads, bufs, lr, momentum, weight_decay, dampening, nesterov, first_step):
    """params, grads, bufs: lists of arrays matched by position (bufs: None when momentum
    is 0).  first_step: the buffers are initialised to the gradient."""
    for i, (p, g) in enumerate(zip(params, grads)):
        if weight_decay:
            g = g + weight_decay * p
        if momentum:
            buf = bufs[i]
            if first_step:
                np.copyto(buf, g)
            else:
                buf *= momentum
                buf += (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p -= lr * g
