"""Full Jacobians of vector-valued functions, composed in the host (`harness.strategies.jacobian`)
from each backend's ``jvp`` (columns) and ``value_and_grad`` (rows), against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import DoNothing

from harness import strategies
from harness.pytree import select
from harness.target import Target


def coupled(xp, x, w):
    """tanh(a * x) + b * sum(x): elementwise, plus a coupling of every entry to every output."""
    return xp.tanh(x * w["a"]) + w["b"] * xp.sum(x)


def coupled_jacobian(x, w):
    """Columns: x (diagonal plus b everywhere), then w['a'] (diagonal), then w['b'] (sum(x))."""
    a, b = w["a"], w["b"]
    slope = 1 - np.tanh(x * a) ** 2
    return np.concatenate(
        [np.diag(slope * a) + b, np.diag(slope * x), np.full((x.size, 1), np.sum(x))], axis=1
    )


ARGS = (np.array([0.3, -1.2, 0.7, 2.0]), {"a": np.array([1.5, 0.5, -2.0, 0.25]), "b": np.array(0.25)})


def composed(target: Target, fn, args, argnums, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """(value, Jacobian) of ``fn`` by ``strategy`` on ``target``, assembled in numpy."""

    class Problem:
        pass

    Problem.fn, Problem.argnums = staticmethod(fn), argnums
    outputs = np.size(fn(np, *args))
    basis = strategies.jacobian_basis(strategy, select(args, argnums), outputs)
    value, parts = target.numpy(target.jacobian(Problem, strategy)(target.array(basis), *target.array(args)))
    return strategies.jacobian_matrix(strategy, value, parts)


@pytest.mark.parametrize("strategy", strategies.JACOBIAN_STRATEGIES)
def test_jacobian_of_a_pytree_equals_the_closed_form(entry, strategy):
    value, jac = composed(Target(entry), coupled, ARGS, (0, 1), strategy)
    assert jac.shape == (4, 9)
    np.testing.assert_allclose(jac, coupled_jacobian(*ARGS), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(value, coupled(np, *ARGS), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("strategy", strategies.JACOBIAN_STRATEGIES)
def test_jacobian_with_respect_to_one_argument(entry, strategy):
    value, jac = composed(Target(entry), coupled, ARGS, 0, strategy)
    np.testing.assert_allclose(jac, coupled_jacobian(*ARGS)[:, :4], rtol=1e-14, atol=1e-15)


def test_forward_needs_jvp_and_unknown_strategies_are_refused():
    backend = DoNothing()
    assert not hasattr(backend, "jvp")
    with pytest.raises(NotImplementedError, match="jvp"):
        strategies.jacobian(backend, lambda x: x, 0, "forward")
    with pytest.raises(NotImplementedError, match="no Jacobian strategy 'taylor'"):
        strategies.jacobian(backend, lambda x: x, 0, "taylor")
    strategies.jacobian(backend, lambda x: x, 0, "reverse")  # composed from value_and_grad alone


def test_basis_and_assembly_in_numpy():
    chosen = (np.zeros(2), {"k": np.zeros((1, 2))})
    basis = strategies.jacobian_basis("forward", chosen, outputs=3)
    assert len(basis) == 4 and [np.shape(b[1]["k"]) for b in basis] == [(1, 2)] * 4
    assert basis[2][1]["k"].tolist() == [[1.0, 0.0]]
    assert np.array_equal(strategies.jacobian_basis("reverse", chosen, outputs=3), np.eye(3))
    columns = tuple(np.arange(3.0) + 10 * k for k in range(4))
    value, jac = strategies.jacobian_matrix("forward", np.ones(3), columns)
    assert jac.shape == (3, 4) and jac[2, 1] == 12.0 and value.tolist() == [1.0, 1.0, 1.0]
    rows = tuple((np.full(2, float(i)), {"k": np.full((1, 2), -float(i))}) for i in range(3))
    value, jac = strategies.jacobian_matrix("reverse", tuple(np.array(float(i)) for i in range(3)), rows)
    assert jac.shape == (3, 4) and jac[2].tolist() == [2.0, 2.0, -2.0, -2.0] and value.tolist() == [0, 1, 2]
