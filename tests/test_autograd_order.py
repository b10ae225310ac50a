"""backward visits nodes of equal generation in a fixed order (the last created first), so the
sums of gradients that meet at one tensor -- and so training runs -- are bit-for-bit repeatable
(a tie-break on memory addresses made two identical runs differ in the last bits)."""
import numpy as np

import minimrcnn as mr
from minimrcnn.autograd import Function


class Record(Function):
    """y = x; backward appends its tag to a shared list."""

    def __init__(self, tag, log):
        self.tag, self.log = tag, log

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        self.log.append(self.tag)
        return gy


def test_equal_generations_run_backward_last_created_first():
    for trial in range(20):
        junk = [object() for _ in range(trial * 7)]      # shuffle what memory addresses are free
        log = []
        x = mr.Tensor(np.ones(3, np.float32), requires_grad=True)
        ys = [Record(tag, log)(x) for tag in range(5)]   # five nodes of the same generation
        total = ys[0]
        for y in ys[1:]:
            total = total + y
        total.sum().backward()
        assert log == [4, 3, 2, 1, 0], (trial, log)
        del junk


def test_gradient_sums_are_identical_across_runs():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 64)).astype(np.float32)
    grads = []
    for _ in range(5):
        x = mr.Tensor(a, requires_grad=True)
        parts = [(x * float(k + 1)).tanh() for k in range(6)]   # six gradients meet at x
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        total.sum().backward()
        grads.append(x.grad)
    for g in grads[1:]:
        np.testing.assert_array_equal(g, grads[0])
