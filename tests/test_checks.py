"""minimrcnn/checks.py: the argument checks every layer shares."""
import numpy as np
import pytest

from minimrcnn.checks import INT32_MAX, fraction, int_pair, is_int, positive_int


def test_is_int_takes_python_and_numpy_integers_but_not_bools_or_floats():
    assert is_int(3) and is_int(np.int64(3)) and is_int(np.uint8(3))
    assert not any(is_int(v) for v in (True, np.bool_(True), 3.0, np.float32(3), "3", None))


def test_int_pair():
    assert int_pair(3, "stride", "op") == (3, 3) and int_pair((1, np.int32(2)), "stride", "op") == (1, 2)
    assert all(type(v) is int for v in int_pair(np.int64(4), "k", "op"))
    for bad in (1.0, (1, 2.5), (1, 2, 3), (1,), "2", None, True, (True, 1)):
        with pytest.raises(ValueError, match=rf"op: stride must be an int or a pair of ints, got {bad!r}"
                                              .replace("(", r"\(").replace(")", r"\)")):
            int_pair(bad, "stride", "op")
    with pytest.raises(ValueError, match=r"op: padding must be >= 0, got \(0, -1\)"):
        int_pair((0, -1), "padding", "op")
    with pytest.raises(ValueError, match=rf"op: size must be at most {INT32_MAX}, got {INT32_MAX + 1}"):
        int_pair(INT32_MAX + 1, "size", "op", minimum=1)
    assert int_pair(INT32_MAX, "size", "op") == (INT32_MAX, INT32_MAX)


def test_positive_int_and_fraction():
    assert positive_int(np.int16(5), "n", "op") == 5
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match=rf"op: n must be a positive int, got {bad!r}"):
            positive_int(bad, "n", "op")
    with pytest.raises(ValueError, match="op: n must be at most 4, got 5"):
        positive_int(5, "n", "op", maximum=4)
    assert fraction(0, "t", "op") == 0.0 and fraction(np.float32(0.5), "t", "op") == 0.5
    for bad in (-0.1, 1.5, float("nan"), True, "0.5", None):
        with pytest.raises(ValueError, match=r"op: t must be a number in \[0, 1\], got"):
            fraction(bad, "t", "op")
