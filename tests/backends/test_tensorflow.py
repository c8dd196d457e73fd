"""What the TensorFlow backend does its own way: nested tapes and accumulators, XLA, quiet loading.

Validation covers its numbers on every problem (``backends/tensorflow.expected``); these
tests pin down the mechanics that validation would only show as a wrong number.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from functools import partial

import numpy as np
import pytest
from conftest import require, tanh_derivative

from harness import evals, problems
from harness.evals import lstm
from harness.pytree import flatten
from harness.target import Target
from harness.validation import tolerances, verdicts

PROBLEMS = {p.name: p for p in problems.BUILTIN}
POINTS = np.array([-3.0, -0.5, 0.0, 0.5, 2.0])


@pytest.fixture(scope="module")
def tf_entry(registry):
    return require(registry.backends["tensorflow"])


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_nested_derivatives_agree_with_the_closed_form(tf_entry, mode):
    """Reverse nests four tapes; forward and forward-over-reverse nest up to three accumulators."""
    target = Target(tf_entry, "cpu", "float64", mode)
    x = target.array(POINTS)
    for strategy, orders in (("reverse", 4), ("forward", 3), ("forward-over-reverse", 3)):
        for order in range(1, orders + 1):
            got = target.numpy(target.derivative(PROBLEMS["tanh"], order, strategy)(x))
            assert tolerances.agrees(got, tanh_derivative(POINTS, order), "float64", order), (strategy, order)


def test_deeper_forward_nesting_is_refused_not_attempted(tf_entry):
    target = Target(tf_entry, "cpu", "float64")
    with pytest.raises(NotImplementedError, match="at most 3"):
        target.derivative(PROBLEMS["tanh"], 4, "forward")
    with pytest.raises(NotImplementedError, match="at most 3"):
        target.derivative(PROBLEMS["tanh"], 5, "forward-over-reverse")


def test_gradients_follow_argnums_not_tensor_identity(tf_entry):
    """A tensor passed at two positions is differentiated at the chosen one only (as jax does),
    and an argument the value does not depend on gets zeros, never None."""
    backend = tf_entry.backend
    x = backend.asarray(np.array([1.0, 2.0]), "float64", "cpu")
    xp = backend.namespace()

    def f(a, b, c):
        return xp.sum(a * b)  # c unused

    value, (da, dc) = backend.value_and_grad(f, (0, 2))(x, x, x)
    assert float(value) == 5.0
    assert backend.to_numpy(da).tolist() == [1.0, 2.0]  # d/da of a * b with b = x held fixed
    assert backend.to_numpy(dc).tolist() == [0.0, 0.0]


def test_dict_pytree_gradient_and_jvp(tf_entry):
    backend = tf_entry.backend
    xp = backend.namespace()
    params = {
        "w": backend.asarray(np.array([1.0, -2.0]), "float32", "cpu"),
        "s": backend.asarray(3.0, "float32", "cpu"),
    }

    def f(p):
        return xp.sum(p["w"] ** 2) * p["s"]

    _, grads = backend.value_and_grad(f, 0)(params)
    assert set(grads) == {"w", "s"} and grads["w"].dtype.name == "float32"
    assert backend.to_numpy(grads["w"]).tolist() == [6.0, -12.0] and float(grads["s"]) == 5.0
    tangent = {"w": xp.ones_like(params["w"]), "s": xp.ones_like(params["s"])}
    _, out = backend.jvp(f, (params,), (tangent,))
    assert float(out) == 6.0 - 12.0 + 5.0


def test_jit_mode_compiles_with_xla(tf_entry):
    """``compile`` is ``tf.function(jit_compile=True)``: an op XLA cannot compile is refused."""
    backend = tf_entry.backend
    tf = backend.tf
    x = backend.asarray(np.array([1.0, 2.0]), "float64", "cpu")
    assert backend.to_numpy(backend.compile(lambda y: y * 2, "jit")(x)).tolist() == [2.0, 4.0]
    as_text = backend.compile(lambda y: tf.strings.as_string(y), "jit")
    with pytest.raises(Exception, match="XLA|compil"):
        as_text(x)


def test_a_device_it_lacks_is_refused(tf_entry):
    backend = tf_entry.backend
    missing = f"cuda:{len(backend.devices()) - 1}"
    with pytest.raises(ValueError, match="no device"):
        backend.asarray(np.zeros(2), "float32", missing)


def test_loading_is_quiet_and_leaves_the_log_level_alone(tf_entry):
    """TensorFlow's import noise is dropped, and TF_CPP_MIN_LOG_LEVEL (JAX reads it too) is
    unset again afterwards."""
    code = textwrap.dedent("""
        import os
        from harness import plugins
        backend = plugins.load().backends["tensorflow"].backend
        backend.namespace()
        print(os.environ.get("TF_CPP_MIN_LOG_LEVEL"))
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "None"
    assert result.stderr == ""


@pytest.mark.parametrize("mode", ["eager", "jit"])
def test_lstm_runs_as_one_while_loop_with_the_reference_s_numbers(tf_entry, mode):
    """TensorFlow's own form of lstm (`lstm.primal_tensorflow`) is what runs there; at two layer
    counts in one process (a retrace with unknown shapes would lose the layers' Python loop) its
    value and gradient are the namespace reference's."""
    from harness.evals import lstm

    (problem,) = lstm.PROBLEMS
    target = Target(tf_entry, "cpu", "float64", mode)
    assert target.function(problem).func is lstm.primal_tensorflow
    loop = tf_entry.backend.value_and_grad(partial(lstm.primal, tf_entry.backend.namespace()), (0, 1))
    for size in ((1, 4, 3), (2, 5, 3)):
        args = target.array(lstm.args(size))
        value, grads = target.numpy(target.value_and_grad(problem)(*args))
        want, want_grads = target.numpy(loop(*args))
        assert value == pytest.approx(want, rel=1e-14)
        for got, expected in zip(grads, want_grads, strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-16)


def test_lstm_jacobian_in_tensorflow_s_graph_is_the_tape_s_and_passes_its_oracles(registry):
    """On TensorFlow eager, GradBench's lstm ``jacobian`` is taken inside one ``tf.function``
    (`lstm._jacobian_prepare`): the same numbers as the tape around the loss's function (the
    generic path) and within the float64 oracles' tolerances."""
    entry = require(registry.backends["tensorflow"])
    target, problem = Target(entry), next(p for p in lstm.PROBLEMS if p.name == "lstm")
    args64 = lstm.args((2, 5, 14))
    function = lstm.GRADBENCH["jacobian"]
    in_graph = function.prepare(target, problem, args64)
    assert hasattr(in_graph, "get_concrete_function")  # one tf.function, not a tape around one
    found = flatten(target.numpy(in_graph(*target.array(args64))))
    taped = evals.adapter.gradient().prepare(target, problem, args64)
    np.testing.assert_allclose(found, flatten(target.numpy(taped(*target.array(args64)))), rtol=1e-13)
    known = {"backend": "tensorflow", "version": entry.version, "device": "cpu", "dtype": "float64"}
    make = verdicts.head(**known, mode="eager", strategy="reverse", problem="lstm", points="jacobian")
    for oracle in function.oracles(problem, args64):
        along = found if oracle.along is None else oracle.along @ found
        check = verdicts.judge(
            make(1, oracle.name, "pass"), along, along, oracle.reference, oracle.rtol, oracle.slack
        )
        assert check.status == "pass", (oracle.name, check.message)
