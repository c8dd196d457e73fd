"""Problems, written once against an array namespace ``xp`` and run on every backend.

The same definition evaluated with numpy (float64 or complex128) or with
mpmath gives the oracles, so a new problem works on every backend and a new
backend on every problem. The built-in problems are those of the notebook this project grew
from, a tutorial of ``jax.grad`` (tanh and its derivatives at 2.0, a cubic's four derivatives,
a sigmoid and a logistic loss on 4 x 3 data with a finite-difference check of its gradient;
``tests/test_notebook.py`` holds every number it printed), a synthetic logistic loss of any
size; GradBench's evals are built-in problems too (`harness.evals`, one module each); plugins add
more through ``harness_register_problems``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import harness
from harness.pytree import leaves


@dataclass(frozen=True)
class ScalarProblem:
    """An elementwise function ``fn(xp, x)`` whose n-th derivatives are checked at ``points``.

    ``polynomial`` (coefficients, lowest degree first) gives exact derivatives;
    otherwise mpmath differentiates ``fn`` itself at high precision.
    """

    name: str
    fn: Callable[[Any, Any], Any]
    points: tuple[float, ...]
    description: str = ""
    polynomial: tuple[int, ...] | None = None
    default: bool = True
    """Part of a plain ``validate``; the others run with ``--problem all`` or by name."""
    cost: Callable[[Any, int], tuple[float | None, float | None]] | None = None
    """``cost(x, itemsize)``: (bytes moved, flops) per derivative call over points ``x``; by
    default the points read and the derivative written, flops unknown."""
    hand_written: Callable[[Any, Any, int], Any] | None = None
    """``hand_written(xp, x, order)``: the ``order``-th derivative written out by hand, no
    automatic differentiation: the benchmarks' reference, timed on each backend's arrays."""

    def bytes_and_flops(self, x: Any, itemsize: int) -> tuple[float | None, float | None]:
        """The cost model benchmarks divide by (`cost`, or its default)."""
        return self.cost(x, itemsize) if self.cost else (2.0 * np.size(x) * itemsize, None)


@dataclass(frozen=True)
class GradientProblem:
    """A scalar loss ``fn(xp, *args)`` differentiated w.r.t. ``args[argnums]``.

    ``make_args(size)`` returns the arguments as float64 numpy pytrees (seeded;
    ``size`` is ``None`` for the default). ``gradient(*args)``, when known, is
    the closed-form gradient in float64, shaped like ``value_and_grad``'s.
    ``magnitude(*args)``, shaped like the gradient, is the sum of the absolute
    values of the terms each gradient entry reduces: a correct reduction in
    dtype ``d`` can be off by about ``eps(d)`` times it, however large N is, so
    the tolerance grows with it (and not with the array size).
    ``hvp(v, *args)``, when known, is the closed-form Hessian-vector product
    (``v`` shaped like the gradient); it turns on the Hessian and HVP checks.
    ``size`` is what validation passes to ``make_args``.
    """

    name: str
    fn: Callable[..., Any]
    make_args: Callable[[tuple[int, ...] | None], tuple]
    argnums: int | tuple[int, ...]
    description: str = ""
    gradient: Callable[..., Any] | None = None
    magnitude: Callable[..., Any] | None = None
    hvp: Callable[..., Any] | None = None
    size: tuple[int, ...] | None = None
    default: bool = True
    gradient_oracle: str = "closed-form"
    """What reports call the ``gradient`` reference: ``"exact"`` where it is computed in rational
    arithmetic and rounded once (det's cofactors)."""
    value_magnitude: Callable[..., Any] | None = None
    """``value_magnitude(*args)``: the summed ``|terms|`` the loss itself reduces, where they cancel
    (a determinant far smaller than its ell! products): the loss value's tolerance grows with
    it as the gradient's does with ``magnitude``."""
    cost: Callable[[tuple, int], tuple[float | None, float | None]] | None = None
    """``cost(args, itemsize)``: (bytes moved, flops) per value-and-gradient call on
    ``make_args``'s arguments; by default every argument read twice (forward and backward),
    flops unknown."""
    hand_written: Callable[..., Any] | None = None
    """``hand_written(xp, *args)``: (value, gradient) written out by hand, shaped like
    ``value_and_grad``'s: the benchmarks' reference, timed on each backend's arrays."""
    complex_step: bool = True
    """Whether ``fn`` evaluated in complex128 numpy is complex-analytic (no ``abs``, no branches
    on values), so that the complex step is an oracle; `harness.api` probes it for the
    functions it checks."""
    hessian_diagonal: Callable[..., Any] | None = None
    """``hessian_diagonal(*args)``: the diagonal of the Hessian w.r.t. the selected arguments in
    closed form, shaped like the gradient; it turns on the diagonal-Hessian checks
    (`harness.strategies.hessian_diagonal`)."""
    diagonal_hessian: bool = False
    """The whole Hessian is diagonal (no mixed second derivatives, as k-means' cost in its
    centroids): its diagonal is then one Hessian-vector product along ones, where a general
    Hessian needs one per unit vector (`harness.strategies.diagonal_probes`)."""
    native: tuple[tuple[str, Callable[..., Any]], ...] = ()
    """``(backend name, function)`` pairs: a backend's own form of ``fn``, same arguments and
    result (a ``jax.lax.scan`` where ``fn`` loops in Python), which `harness.target.Target` runs
    on that backend, held to the same oracles; ``fn`` stays the oracles' twin and runs on the
    other backends."""

    def bytes_and_flops(self, args: tuple, itemsize: int) -> tuple[float | None, float | None]:
        """The cost model benchmarks divide by (`cost`, or its default)."""
        if self.cost:
            return self.cost(args, itemsize)
        return 2.0 * sum(np.size(leaf) for leaf in leaves(args)) * itemsize, None


@dataclass(frozen=True)
class JacobianProblem:
    """A vector-valued function ``fn(xp, *args)`` (a 1-D array of m entries) whose full Jacobian
    w.r.t. ``args[argnums]`` is checked, by forward and reverse mode (`harness.strategies.jacobian`).

    ``make_args(size)`` returns the arguments as float64 numpy pytrees (seeded; ``size`` is
    ``None`` for the default, and validation passes ``size``). The Jacobian is m x n, n the
    entries of the selected arguments flattened in pytree order (`harness.pytree.flatten`);
    ``jacobian(*args)``, when known, is that matrix in closed form, in float64.
    """

    name: str
    fn: Callable[..., Any]
    make_args: Callable[[tuple[int, ...] | None], tuple]
    argnums: int | tuple[int, ...]
    description: str = ""
    jacobian: Callable[..., Any] | None = None
    size: tuple[int, ...] | None = None
    default: bool = True
    complex_step: bool = True
    """As `GradientProblem.complex_step`."""
    value_magnitude: Callable[..., Any] | None = None
    """``value_magnitude(*args)`` [m]: the summed ``|terms|`` each output entry reduces, where they
    cancel (a residual far smaller than what it subtracts): the value's tolerance grows with it,
    as `GradientProblem.value_magnitude`."""
    unavailable: Callable[[], str | None] | None = None
    """``unavailable()``: why the problem cannot run here (data it reads is absent, and what to
    do), or ``None``; `list` shows it and validation reports the problem unsupported."""
    native: tuple[tuple[str, Callable[..., Any]], ...] = ()
    """As `GradientProblem.native`."""


@dataclass(frozen=True)
class NestedProblem:
    """A nested optimization with a derivative inside (GradBench's particle and saddle), answered
    in the four mode pairs ``rr ff fr rf`` (`harness.strategies.NESTED_PAIRS`: outer, inner).

    ``fn(xp, outer, inner, *args)`` returns the answer, a tuple of scalars; ``outer`` and
    ``inner`` are derivative operators, ``grad(f)(x)`` the gradient of scalar ``f`` at ``x`` (a
    tuple of scalars, the gradient a tuple like it), each the backend's own forward or reverse
    mode as the pair says (`harness.strategies.gradient_operator`). ``make_args(size)`` returns
    the arguments as float64 numpy scalars. ``inner_probe(xp, inner, *args)`` and
    ``outer_probe(xp, outer, inner, *args)`` are the two derivatives the answer is built from,
    at the start: checked against ``inner_reference(*args)`` and ``outer_reference(*args)``
    (float64, closed form or complex step) at the tolerance of orders 1 and 2.
    ``reference(*args)`` returns ``(answer, gap)``: the same computation in float64 numpy with
    closed-form derivatives, and how far an answer may lie from it under the descent's stopping
    rule; ``expected`` is the answer GradBench's own eval expects, checked within the same gap.
    """

    name: str
    fn: Callable[..., Any]
    make_args: Callable[[tuple[int, ...] | None], tuple]
    inner_probe: Callable[..., Any]
    outer_probe: Callable[..., Any]
    inner_reference: Callable[..., Any]
    outer_reference: Callable[..., Any]
    reference: Callable[..., tuple[Any, float]]
    description: str = ""
    expected: tuple[float, ...] | None = None
    outer_oracle: str = "closed-form"
    """What reports call ``outer_reference``: ``"complex-step"`` where it is one."""
    size: tuple[int, ...] | None = None
    default: bool = True
    units: Callable[..., Any] | None = None
    """``units(xp, inner, compiled)``: the problem's units of work (particle's Euler step, saddle's
    inner objective and gradient), each passed through ``compiled`` (`harness.target.Target`'s:
    as is in eager mode, the backend's compiler in a compiled one). `Target.nested` builds them
    once and hands them to ``fn`` and the probes as the keyword ``units`` (only to a problem that
    has them); the descents, which branch on values, stay in Python."""


Problem = ScalarProblem | GradientProblem | JacobianProblem | NestedProblem
KINDS = (ScalarProblem, GradientProblem, JacobianProblem, NestedProblem)
"""The kinds of problem a plugin may register."""


# --- The notebook's scalar problems -----------------------------------------------------------


def tanh(xp, x):
    return xp.tanh(x)


def cubic(xp, x):
    return x**3 + 2 * x**2 - 3 * x + 1


def logistic_sigmoid(xp, x):
    return sigmoid(xp, x)


def softplus(xp, x):
    return xp.log1p(xp.exp(x))


def exp_sin(xp, x):
    return xp.exp(xp.sin(x))


def reciprocal(xp, x):
    return 1 / x


def rational(xp, x):
    return (x**2 - 2 * x + 3) / (x**2 + 1)


# --- The notebook's logistic regression ---------------------------------------------------------


def sigmoid(xp, z):
    return 0.5 * (xp.tanh(z / 2) + 1)


def logistic_loss(xp, W, b, inputs, targets):
    """Negative log-likelihood of ``targets`` (0/1 floats) under ``sigmoid(inputs @ W + b)``."""
    preds = sigmoid(xp, inputs @ W + b)
    label_probs = preds * targets + (1 - preds) * (1 - targets)
    return -xp.sum(xp.log(label_probs))


def logistic_loss_dict(xp, params, inputs, targets):
    return logistic_loss(xp, params["W"], params["b"], inputs, targets)


def logistic_gradient(W, b, inputs, targets):
    """Closed form: d loss / d z = sigmoid(z) - targets, so dW = inputs.T @ r and db = sum(r)."""
    residual = sigmoid(np, inputs @ W + b) - targets
    return inputs.T @ residual, np.sum(residual)


def logistic_by_hand(xp, W, b, inputs, targets):
    """The loss and its gradient in one pass, as one would write them without a framework:
    z = inputs @ W + b, r = sigmoid(z) - targets, dW = inputs.T @ r, db = sum(r)."""
    preds = sigmoid(xp, inputs @ W + b)
    loss = -xp.sum(xp.log(preds * targets + (1 - preds) * (1 - targets)))
    residual = preds - targets
    return loss, (residual @ inputs, xp.sum(residual))


def tanh_by_hand(xp, x, order):
    """d^n tanh / dx^n as a polynomial in t = tanh(x): P_0 = t, P_{k+1}(t) = (1 - t^2) P_k'(t),
    evaluated by Horner's rule (integer coefficients, computed here in Python)."""
    coefficients = [0, 1]  # P_0(t) = t, lowest degree first
    for _ in range(order):
        slope = [k * c for k, c in enumerate(coefficients)][1:]  # P_k'
        coefficients = [a - b for a, b in zip(slope + [0, 0], [0, 0] + slope, strict=True)]
    t = xp.tanh(x)
    value = coefficients[-1] * xp.ones_like(t)
    for c in reversed(coefficients[:-1]):
        value = value * t + c
    return value


def logistic_magnitude(W, b, inputs, targets):
    """The summed |terms| of each gradient entry: |inputs|.T @ |r| and sum(|r|)."""
    residual = np.abs(sigmoid(np, inputs @ W + b) - targets)
    return np.abs(inputs).T @ residual, np.sum(residual)


NOTEBOOK = {
    "inputs": np.array([[0.52, 1.12, 0.77], [0.88, -1.08, 0.15], [0.52, 0.06, -1.30], [0.74, -2.49, 1.39]]),
    "targets": np.array([1.0, 1.0, 0.0, 1.0]),
    # From JAX's legacy generator (jax_threefry_partitionable=False): key(0) split
    # into 3 gives W and b; the first part split again gives the notebook's
    # random direction. Current JAX draws other numbers, so they are kept as data.
    "W": np.array([-0.3683878481388092, -2.275688886642456, 0.011447565630078316]),
    "b": np.array(0.8535516262054443),
    "direction": np.array([0.9672462344169617, -0.5627836585044861, 0.3791317939758301]),
}


def notebook_args(size=None):
    return NOTEBOOK["W"], NOTEBOOK["b"], NOTEBOOK["inputs"], NOTEBOOK["targets"]


def notebook_dict_args(size=None):
    W, b, inputs, targets = notebook_args()
    return {"W": W, "b": b}, inputs, targets


def logistic_hvp(v, W, b, inputs, targets):
    """Closed form: H = J.T diag(s) J with J = [inputs, 1] and s = sigmoid'(z) = p (1 - p)."""
    vW, vb = v
    p = sigmoid(np, inputs @ W + b)
    weighted = p * (1 - p) * (inputs @ vW + vb)
    return inputs.T @ weighted, np.sum(weighted)


def as_dict(closed_form):
    """A (W, b) closed form as one of the dict-pytree problem."""

    def of_dict(params, inputs, targets):
        dW, db = closed_form(params["W"], params["b"], inputs, targets)
        return {"W": dW, "b": db}

    return of_dict


SYNTHETIC_SIZE = (256, 16)
LARGE_SIZE = (64, 200_000)
"""200,001 parameters: a float64 Hessian would take 320 GB, so only HVPs are checked."""


def logistic_cost(args, itemsize):
    """The N x D inputs read twice (forward and backward); 4 N D flops (two products, two sums)."""
    inputs = args[2]
    return 2.0 * inputs.size * itemsize, 4.0 * inputs.size


def synthetic_args(size=None, seed=0):
    """Seeded N x D data: standard normal inputs, weights scaled so logits stay O(1)."""
    n, d = size or SYNTHETIC_SIZE
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((n, d))
    W = rng.standard_normal(d) / np.sqrt(d)
    b = np.array(rng.standard_normal())
    targets = (rng.random(n) < sigmoid(np, inputs @ W + b)).astype(np.float64)
    return W, b, inputs, targets


BUILTIN: tuple[Problem, ...] = (
    ScalarProblem(
        "tanh",
        tanh,
        points=(-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0),
        description="tanh(x); the notebook differentiates it at x = 2.0",
        hand_written=tanh_by_hand,
    ),
    ScalarProblem(
        "cubic",
        cubic,
        points=(-2.0, -1.0, 0.0, 1.0, 2.5),
        description="x**3 + 2*x**2 - 3*x + 1; the notebook differentiates it at x = 1.0",
        polynomial=(1, -3, 2, 1),
    ),
    ScalarProblem(
        "tanh-wide",
        tanh,
        points=(-200.0, -30.0, -3.0, 0.5, 3.0, 30.0, 200.0),
        description="tanh out to |x| = 200, where nested derivative rules overflow",
        default=False,
    ),
    ScalarProblem(
        "sigmoid",
        logistic_sigmoid,
        points=(-8.0, -2.0, -0.5, 0.0, 0.5, 2.0, 8.0),
        description="0.5 * (tanh(x / 2) + 1), the notebook's sigmoid",
        default=False,
    ),
    ScalarProblem(
        "softplus",
        softplus,
        points=(-8.0, -2.0, -0.5, 0.0, 0.5, 2.0, 8.0),
        description="log1p(exp(x))",
        default=False,
    ),
    ScalarProblem(
        "exp-sin",
        exp_sin,
        points=(-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0),
        description="exp(sin(x))",
        default=False,
    ),
    ScalarProblem(
        "reciprocal",
        reciprocal,
        points=(-2.0, -0.5, 0.25, 0.5, 1.0, 3.0),
        description="1 / x; its n-th derivative grows as n! / x**(n+1)",
        default=False,
    ),
    ScalarProblem(
        "rational",
        rational,
        points=(-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0),
        description="(x**2 - 2x + 3) / (x**2 + 1)",
        default=False,
    ),
    GradientProblem(
        "logistic-notebook",
        logistic_loss,
        notebook_args,
        argnums=(0, 1),
        description="the notebook's logistic loss on its 4x3 data, w.r.t. (W, b)",
        gradient=logistic_gradient,
        magnitude=logistic_magnitude,
        hvp=logistic_hvp,
    ),
    GradientProblem(
        "logistic-notebook-dict",
        logistic_loss_dict,
        notebook_dict_args,
        argnums=0,
        description="the same loss w.r.t. the dict pytree {'W': W, 'b': b}",
        gradient=as_dict(logistic_gradient),
        magnitude=as_dict(logistic_magnitude),
    ),
    GradientProblem(
        "logistic",
        logistic_loss,
        synthetic_args,
        argnums=(0, 1),
        description=f"synthetic logistic loss, N x D seeded data (default {SYNTHETIC_SIZE})",
        gradient=logistic_gradient,
        magnitude=logistic_magnitude,
        hvp=logistic_hvp,
        cost=logistic_cost,
        hand_written=logistic_by_hand,
    ),
    GradientProblem(
        "logistic-large",
        logistic_loss,
        synthetic_args,
        argnums=(0, 1),
        description=f"synthetic logistic loss {LARGE_SIZE[0]} x {LARGE_SIZE[1]}: its Hessian "
        "would need 320 GB, so Hessian-vector products only",
        gradient=logistic_gradient,
        magnitude=logistic_magnitude,
        hvp=logistic_hvp,
        size=LARGE_SIZE,
        default=False,
    ),
)


@harness.hookimpl
def harness_register_problems(register):
    for problem in BUILTIN:
        register(problem)
