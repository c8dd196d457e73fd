"""``harness.check``, ``check_xp`` and ``assert_gradients``: a user's own function, checked by the
validation the CLI runs. Planted mistakes are a custom ``torch.autograd.Function`` and JAX
``custom_vjp``/``custom_jvp`` rules off by 1e-8 relative; their correct versions must pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import harness
from harness import plugins
from harness.errors import UsageError

try:
    import torch
except ImportError:  # each backend's tox env has only its own framework
    torch = None
try:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
except ImportError:
    jax = None
try:
    import autograd
except ImportError:
    autograd = None
try:
    import tensorflow as tf
except ImportError:
    tf = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")
needs_jax = pytest.mark.skipif(jax is None, reason="jax is not installed")
needs_autograd = pytest.mark.skipif(autograd is None, reason="autograd is not installed")
needs_tf = pytest.mark.skipif(tf is None, reason="tensorflow is not installed")

OFF = 1 + 1e-8
X = np.linspace(-1.0, 2.0, 5)


@pytest.fixture(autouse=True)
def no_backends_env(monkeypatch):
    monkeypatch.delenv(plugins.BACKENDS_ENV, raising=False)


def torch_sin(scale: float):
    """sin as a custom autograd.Function (torch.func's style: setup_context), backward * scale."""

    class Sin(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return torch.sin(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * torch.cos(x) * scale

    return lambda x: torch.sum(Sin.apply(x) ** 2)


def jax_vjp_sin(scale: float):
    @jax.custom_vjp
    def sin(x):
        return jnp.sin(x)

    sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, g: (g * jnp.cos(x) * scale,))
    return lambda x: jnp.sum(sin(x) ** 2)


def jax_jvp_sin(scale: float):
    @jax.custom_jvp
    def sin(x):
        return jnp.sin(x)

    sin.defjvp(lambda primals, tangents: (jnp.sin(primals[0]), jnp.cos(primals[0]) * tangents[0] * scale))
    return lambda x: jnp.sum(sin(x) ** 2)


def tf_sin(scale: float):
    @tf.custom_gradient
    def sin(x):
        return tf.sin(x), lambda g: g * tf.cos(x) * scale

    # s * s, not s ** 2: TensorFlow's complex power goes through exp and log, and its imaginary
    # part (what the complex step reads) is then rounding noise.
    return lambda x: tf.reduce_sum(sin(x) * sin(x))


@pytest.mark.parametrize(
    "make, backend",
    [
        pytest.param(torch_sin, "torch", marks=needs_torch, id="torch-autograd-Function"),
        pytest.param(tf_sin, "tensorflow", marks=needs_tf, id="tf-custom_gradient"),
        pytest.param(jax_vjp_sin, "jax", marks=needs_jax, id="jax-custom_vjp"),
        pytest.param(jax_jvp_sin, "jax", marks=needs_jax, id="jax-custom_jvp"),
    ],
)
def test_a_rule_off_by_1e_8_is_caught_in_float64_and_its_correct_version_passes(make, backend):
    # each framework looked up only when its own case runs: a tox env has one framework alone
    wrap = {
        "torch": lambda a: torch.asarray(a),
        "tensorflow": lambda a: tf.constant(a),
        "jax": lambda a: jnp.asarray(a),
    }[backend]
    right = harness.check(make(1.0), wrap(X))  # the backend is read off the argument's type
    assert right.passed and right.classification is None
    assert {c.backend for c in right.checks} == {backend}
    assert 0 < right.worst[0] < 1
    wrong = harness.check(make(OFF), wrap(X))
    assert not wrong.passed
    assert wrong.classification == "wrong derivative"
    assert wrong.worst[0] > 1000  # 1e-8 against a float64 tolerance of 1e-13
    caught_by = {c.oracle for c in wrong.failures}
    assert "complex-step" in caught_by
    assert "FAIL [wrong derivative] <lambda> order 1 vs complex-step" in wrong.text()


@needs_torch
def test_an_old_style_autograd_function_is_checked_and_a_wrong_backward_caught():
    """PyTorch's tutorial form (``forward(ctx, x)``, no ``setup_context``), which torch.func
    refuses: reverse mode takes autograd's tape, so it is checked like any function, and forward
    mode is ``unsupported`` with torch's reason (not an error, not a failure)."""

    def custom(scale):
        class Old(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return torch.sin(x)

            @staticmethod
            def backward(ctx, g):
                return g * torch.cos(ctx.saved_tensors[0]) * scale

        return lambda x: torch.sum(Old.apply(x))

    found = harness.check(custom(1.0), torch.asarray(X))
    assert found.passed
    assert {c.strategy for c in found.checks if c.status == "pass"} == {"reverse"}
    (forward,) = [c for c in found.checks if c.strategy == "forward"]
    assert forward.status == "unsupported" and "setup_context" in forward.message
    wrong = harness.check(custom(OFF), torch.asarray(X))
    assert not wrong.passed and wrong.classification == "wrong derivative"
    assert {(c.strategy, c.oracle) for c in wrong.failures} == {("reverse", "complex-step")}


@needs_torch
def test_complex_step_only_where_it_gives_the_derivative():
    """abs() is not analytic: its complex step would be wrong, so only differences judge it."""
    found = harness.check(lambda x: torch.sum(torch.abs(x) ** 3), torch.asarray(X))
    assert found.passed
    assert "complex-step" not in {c.oracle for c in found.checks}
    assert "central-difference" in {c.oracle for c in found.checks}


@needs_jax
def test_per_argument_worst_and_a_jacobian_by_forward_and_reverse():
    w = np.array([0.5, -1.0, 2.0])
    found = harness.check(lambda x, w: jnp.tanh(x[:3] * w), jnp.asarray(X), w, argnums=(0, 1))
    assert found.passed
    assert set(found.worst) == {0, 1}
    strategies = {c.strategy for c in found.checks}
    assert {"forward", "reverse"} <= strategies
    assert any(c.oracle.startswith("agreement:") for c in found.checks)  # forward against reverse


def torch_sin_second_off(scale: float):
    """``sum(sin(x))``, sin (`sin_second_off`) with its second derivative scaled."""
    sin = sin_second_off(scale)
    return lambda x: torch.sum(sin(x))


def sin_second_off(scale: float):
    """sin (elementwise) whose first derivative is right and whose second is scaled: its backward
    calls a custom cos whose own backward is off."""

    class Cos(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return torch.cos(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            return -g * torch.sin(ctx.saved_tensors[0]) * scale

    class Sin(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return torch.sin(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            return g * Cos.apply(ctx.saved_tensors[0])

    return Sin.apply


@needs_torch
def test_order_two_catches_a_wrong_second_derivative_the_first_order_misses():
    wrong = torch_sin_second_off(1 + 1e-4)
    assert harness.check(wrong, torch.asarray(X)).passed
    assert harness.check(torch_sin_second_off(1.0), torch.asarray(X), order=2, strategies=["reverse"]).passed
    found = harness.check(wrong, torch.asarray(X), order=2, strategies=["reverse"])
    assert found.classification == "wrong derivative"
    assert {(c.order, c.oracle) for c in found.failures} == {(2, "central-difference(gradient)")}


def lse(xp, x, w):
    return xp.log(xp.sum(xp.exp(x * w)))


@pytest.mark.on_installed
def test_an_xp_function_is_checked_on_every_installed_backend_in_one_call():
    installed = {e.name for e in plugins.load().backends.values() if not e.unavailable}
    found = harness.check_xp(lse, X, np.full(5, 0.5), argnums=(0, 1))
    assert found.passed
    assert {c.backend for c in found.checks} == installed
    assert {"complex-step", "central-difference"} <= {c.oracle for c in found.checks}
    across = {c.oracle.split(":")[1].split("/")[0] for c in found.checks if c.oracle.startswith("agreement:")}
    if len(installed) > 1:  # each backend against the first one's result
        assert across and across < installed


@needs_autograd
def test_an_elementwise_xp_function_gets_mpmath_and_every_strategy():
    found = harness.check_xp(lambda xp, x: xp.tanh(x) * xp.exp(x), X, elementwise=True, backends=["autograd"])
    assert found.passed
    assert {c.order for c in found.checks} == {1}
    assert {"forward", "reverse", "forward-over-reverse"} <= {c.strategy for c in found.checks}
    assert any(c.oracle.startswith("mpmath") for c in found.checks)


@needs_torch
def test_assert_gradients_raises_with_the_mismatch_report():
    harness.assert_gradients(torch_sin(1.0), torch.asarray(X))
    with pytest.raises(AssertionError, match=r"FAIL \[wrong derivative\].*vs complex-step"):
        harness.assert_gradients(torch_sin(OFF), torch.asarray(X))


@pytest.mark.parametrize(
    "call, says",
    [
        (lambda: harness.check(lambda x: x.sum(), X), "backend='autograd'"),
        (lambda: harness.check(lambda x: x.sum(), X, backend="nope"), "unknown backend 'nope'"),
        (lambda: harness.check_xp(lambda xp, x: xp.sum(x), X, argnums=3), "argnums 3"),
        (lambda: harness.check_xp(lambda xp, x: xp.sum(x), X, order=3), "order 3"),
        (lambda: harness.check_xp(lambda xp, x: x[:, None] * x, X), "returns shape (5, 5)"),
        (lambda: harness.check_xp(lambda xp, x: x * 2, X, order=2), "order 2 takes a scalar"),
    ],
)
def test_bad_calls_say_what_is_wrong(call, says):
    with pytest.raises(UsageError, match=re.escape(says)):
        call()


@needs_torch
def test_the_fixture_fails_a_test_with_the_mismatch_report(tmp_path):
    (tmp_path / "test_mine.py").write_text(
        "import torch\n"
        "from test_check import torch_sin, OFF, X\n\n"
        "def test_right(assert_gradients):\n"
        "    assert_gradients(torch_sin(1.0), torch.asarray(X))\n\n"
        "def test_wrong(assert_gradients):\n"
        "    assert_gradients(torch_sin(OFF), torch.asarray(X))\n"
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [os.path.dirname(__file__), os.path.dirname(os.path.dirname(__file__)), *sys.path]
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "test_mine.py", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout
    assert "FAIL [wrong derivative] <lambda> order 1 vs complex-step" in done.stdout
    assert "Traceback" not in done.stdout  # the report alone
