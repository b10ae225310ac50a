"""The one gradient-check test: every registered case of every differentiable op, on every
available backend, plus the rule that no Function subclass may go without a case."""
import pytest

from minimrcnn.autograd.registry import all_cases, function_classes, functions_reached, run_case

from .conftest import BACKENDS

CASES = all_cases()


@pytest.mark.parametrize("xp", BACKENDS, ids=lambda xp: xp.__name__)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_gradcheck(case, xp):
    result, _ = run_case(case, xp)
    w = result.worst
    assert result.passed, (f"{case.id} on {xp.__name__}: input {w.get('input')} index {w.get('index')}: "
                           f"numeric {w.get('numeric')} vs analytic {w.get('analytic')} "
                           f"(max abs err {result.max_abs_err:.3g})")


def test_every_function_has_a_gradcheck_case():
    reached = set()
    for case in CASES:
        reached |= functions_reached(case)
    missing = sorted(f"{c.__module__}.{c.__name__}" for c in function_classes() - reached)
    assert not missing, f"Function subclasses that no gradcheck case reaches: {missing}"


def test_registry_is_not_trivially_small():
    assert len(CASES) >= 30
    assert len({c.op for c in CASES}) >= 25
