"""gradcheck itself: it must catch wrong gradients -- including the ones that a
check of sum(f(x)) cannot see -- and say which input and where."""
import numpy as np
import pytest

import minires as mr
from minires.nn import functional as F
from helpers import make


def batch_norm_with_wrong_dx(x):
    """Training-mode batch norm (no affine) whose backward forgets the x̂·mean(g·x̂) term.

    The mistake is invisible under an all-ones upstream gradient: then g - mean(g) = 0
    and mean(g·x̂) = 0, so the wrong and the right dx are both exactly zero.
    """
    xp = x.xp
    mean = x.data.mean(axis=0)
    invstd = 1 / xp.sqrt(x.data.var(axis=0) + 1e-5)
    out = (x.data - mean) * invstd

    def backward(g):
        return (invstd * (g - g.mean(axis=0)),)
    return mr.Tensor.from_op(out, (x,), backward, "bad_batch_norm")


def test_catches_wrong_batchnorm_dx_that_sum_check_misses(rng):
    x = make(rng, 6, 3)
    # The naive check: differentiate sum(f(x)).  It passes -- the bug hides.
    assert mr.gradcheck(lambda x: batch_norm_with_wrong_dx(x).sum(), (x,))
    # With a random upstream gradient the bug shows, and the message says where.
    with pytest.raises(mr.GradcheckError, match=r"input 0 \(shape \(6, 3\)\).*worst at index"):
        mr.gradcheck(batch_norm_with_wrong_dx, (x,))
    # The real op passes the same check.
    assert mr.gradcheck(lambda x: F.batch_norm(x, None, None, training=True), (x,))


def test_reports_the_offending_input(rng):
    a, b = make(rng, 3), make(rng, 3)

    def wrong_mul(a, b):
        # correct for a, wrong (missing factor a) for b
        return mr.Tensor.from_op(a.data * b.data, (a, b), lambda g: (g * b.data, g), "wrong_mul")
    with pytest.raises(mr.GradcheckError) as err:
        mr.gradcheck(wrong_mul, (a, b))
    assert "input 1" in str(err.value) and "input 0" not in str(err.value)
    assert not mr.gradcheck(wrong_mul, (a, b), raise_exception=False)


def test_catches_errors_on_a_random_subset_and_by_direction(rng):
    x = make(rng, 40, 30)

    def off_by_a_bit(x):
        return mr.Tensor.from_op(x.data * 2, (x,), lambda g: (g * 2.01,), "scale")
    with pytest.raises(mr.GradcheckError):
        mr.gradcheck(off_by_a_bit, (x,), max_elements=50)


def test_needs_float64_and_some_input_to_check(rng):
    with pytest.raises(TypeError, match="float64"):
        mr.gradcheck(lambda x: x * 2, (make(rng, 3, dtype=np.float32),))
    with pytest.raises(ValueError, match="requires_grad"):
        mr.gradcheck(lambda x: x * 2, (make(rng, 3, requires_grad=False),))


def test_several_outputs_and_unused_inputs(rng):
    a, b, unused = make(rng, 3), make(rng, 3), make(rng, 2)
    assert mr.gradcheck(lambda a, b, u: (a * b, a.exp()), (a, b, unused))


def test_leaves_inputs_and_their_grads_untouched(rng):
    x = make(rng, 4)
    before = x.numpy().copy()
    x.grad = mr.tensor(np.ones(4))
    mr.gradcheck(lambda x: x ** 3, (x,))
    np.testing.assert_array_equal(x.numpy(), before)
    np.testing.assert_array_equal(x.grad.numpy(), np.ones(4))


def test_result_reports_the_max_relative_error_per_input(rng):
    a, b = make(rng, 3, 2), make(rng, 2)
    result = mr.gradcheck(lambda a, b: a * b, (a, b), max_elements=4)
    assert result and [(c.index, c.shape, c.elements, c.directions) for c in result.inputs] == \
        [(0, (3, 2), 4, 3), (1, (2,), 2, 3)]
    assert 0 < result.max_rel_error < 1e-6
    text = str(result)
    assert text.startswith("gradcheck passed (tolerance: relative error <= rtol=0.001, atol=1e-05)")
    assert "input 0 (3, 2): 4 elements and 3 directions, max relative error" in text

    def wrong(a, b):          # dL/db off by 1 %: relative error about 0.01 > rtol
        return mr.Tensor.from_op(a.data * b.data, (a, b),
                                 lambda g: (g * b.data, (g * a.data).sum(axis=0) * 1.01), "wrong")
    bad = mr.gradcheck(wrong, (a, b), raise_exception=False)
    assert not bad and not bad.inputs[0].failure and "input 1" in bad.inputs[1].failure
    assert 1e-3 < bad.inputs[1].max_rel_error < 2e-2
    assert str(bad).startswith("gradcheck FAILED") and str(bad).rstrip().endswith("FAIL")
