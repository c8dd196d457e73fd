"""lstm: ADBench's LSTM language-model loss over a bit-encoded text, differentiated w.r.t. its
parameters."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from harness.evals import adapter
from harness.evals.inputs import SEED
from harness.problems import GradientProblem

SIZE = (2, 4, 14)
"""(l, c, b) here: 2 layers, 4 characters (3 predictions), GradBench's 14 bits per character:
8 l b + 3 b = 266 parameters."""
BITS = 14
"""Bits per character of GradBench's text (``ceil(log2(max code point))``: it holds a
character beyond U+2000)."""


def primal(xp, main_params, extra_params, state, sequence):
    """GradBench's ``objective``: ``-1/((c-1) b) sum_t <y_{t+1}, ypred_t - log(2 + sum exp
    ypred_t)>`` over the characters' bits ``y`` (``sequence``, c x b), ``ypred_t`` the l-layer
    LSTM's prediction from ``y_t``. Layer i's rows of ``main_params`` (2l x 4b) are its weights
    and biases, each the forget, input, output and change gates' b entries; its rows of
    ``state`` (2l x b) its hidden and cell state; ``extra_params`` (3 x b) the input weight,
    output weight and output bias. Elementwise gates as ADBench's (forget and output gates read
    the input, input and change gates the hidden state)."""
    layers = state.shape[0] // 2
    hidden = [state[2 * i] for i in range(layers)]
    cell = [state[2 * i + 1] for i in range(layers)]
    total = 0.0
    for t in range(sequence.shape[0] - 1):
        total = total + step(xp, main_params, extra_params, hidden, cell, sequence[t], sequence[t + 1])
    return -total / ((sequence.shape[0] - 1) * state.shape[1])


def step(xp, main_params, extra_params, hidden, cell, current, following):
    """One character: every layer's state updated in place in the lists ``hidden`` and ``cell``
    from the bits ``current``, and the term ``<following, ypred - log(2 + sum exp ypred)>``."""
    b = current.shape[0]
    signal = current * extra_params[0]
    for i in range(len(hidden)):
        # All four gates in one product and sum, as ADBench's PyTorch code forms them; the
        # forget, input and output gates' sigmoid in one call over their 3b entries.
        gates = xp.concatenate([signal, hidden[i], signal, hidden[i]]) * main_params[2 * i]
        gates = gates + main_params[2 * i + 1]
        sigmoids = _sigmoid(xp, gates[: 3 * b])
        change = xp.tanh(gates[3 * b :])
        cell[i] = cell[i] * sigmoids[:b] + sigmoids[b : 2 * b] * change
        hidden[i] = sigmoids[2 * b :] * xp.tanh(cell[i])
        signal = hidden[i]
    prediction = signal * extra_params[1] + extra_params[2]
    normalized = prediction - xp.log(xp.sum(xp.exp(prediction)) + 2)
    return xp.sum(following * normalized)


def primal_jax(jnp, main_params, extra_params, state, sequence):
    """`primal` with its characters in one ``jax.lax.scan`` of `step` (the unrolled loop is c
    steps for XLA to compile: at (l, c) = (2, 64) jax.jit's first call ran past 10 minutes),
    jitted once per process, as ode's (`ode.primal_jax`). The terms are summed by ``jnp.sum``,
    not left to right: a rounding apart, far inside the value's tolerance."""
    return _scan()(main_params, extra_params, state, sequence)


@functools.cache
def _scan():
    import jax
    import jax.numpy as jnp

    def run(main_params, extra_params, state, sequence):
        layers = state.shape[0] // 2

        def body(carry, bits):
            hidden, cell = list(carry[0]), list(carry[1])
            term = step(jnp, main_params, extra_params, hidden, cell, *bits)
            return (tuple(hidden), tuple(cell)), term

        start = (tuple(state[2 * i] for i in range(layers)), tuple(state[2 * i + 1] for i in range(layers)))
        _, terms = jax.lax.scan(body, start, (sequence[:-1], sequence[1:]))
        return -jnp.sum(terms) / ((sequence.shape[0] - 1) * state.shape[1])

    return jax.jit(run)


def primal_tensorflow(tnp, main_params, extra_params, state, sequence):
    """`primal` with its characters in one ``tf.while_loop`` in a ``tf.function``, as GradBench's
    TensorFlow tool forms it (eager, each of c steps' ops dispatched one by one: 11x its time at
    (l, c) = (2, 1024)). The terms are summed left to right, as `primal`'s."""
    return _while_loop()(main_params, extra_params, state, sequence)


@functools.cache
def _while_loop():
    import tensorflow as tf
    import tensorflow.experimental.numpy as tnp

    def run(main_params, extra_params, state, sequence):
        layers, steps = state.shape[0] // 2, sequence.shape[0] - 1

        def body(t, hidden, cell, total):
            hidden, cell = list(hidden), list(cell)
            term = step(tnp, main_params, extra_params, hidden, cell, sequence[t], sequence[t + 1])
            return t + 1, tuple(hidden), tuple(cell), total + term

        start = (tuple(state[2 * i] for i in range(layers)), tuple(state[2 * i + 1] for i in range(layers)))
        total = tf.zeros((), main_params.dtype)
        loop = (tf.constant(0), *start, total)  # maximum_iterations: XLA (jit) needs the bound
        *_, total = tf.while_loop(lambda t, *_: t < steps, body, loop, maximum_iterations=steps)
        return -total / (steps * state.shape[1])

    # Traced once per shape (the layers are a Python loop). The loop is tf.while_loop already, so
    # AutoGraph has nothing to convert: without it the first call (the trace) at (l, c) = (2, 1024)
    # took 0.27-0.40 s against 0.92-1.17 s, the gradient's 1.7-2.0 s against 2.1-2.5 s (each in a
    # fresh process; TF 2.21, the 2-core AMD EPYC beside other work, 8 Dec 2026).
    return tf.function(run, autograph=False)


def _sigmoid(xp, x):
    return 1 / (1 + xp.exp(-x))


def text_bits(text: str) -> np.ndarray:
    """GradBench's encoding of a text: each character's code point in ``ceil(log2(max code
    point))`` bits, most significant first, one row per character."""
    bits = math.ceil(math.log2(max(ord(c) for c in text)))
    return np.array([[int(bit) for bit in bin(ord(c))[2:].zfill(bits)] for c in text], np.float64)


def gradbench_input(size=None, text: str | None = None) -> dict:
    """GradBench's ``input`` at (l, c), b = 14: ``state`` (2l x b), ``main_params`` (2l x 4b) and
    ``extra_params`` (3 x b) uniform in [0, 1), drawn in that order as its ``gen_lstm`` draws
    them (GradBench leaves them unseeded; here ``RandomState(31337)``), then the ``sequence``:
    ``text``'s first c characters encoded as GradBench encodes its text file (`text_bits`), or
    without one (the file is not public) c x b seeded random bits."""
    layers, chars, b = size or SIZE
    rng = np.random.RandomState(SEED)
    state = rng.random_sample((2 * layers, b))
    main_params = rng.random_sample((2 * layers, 4 * b))
    extra_params = rng.random_sample((3, b))
    sequence = text_bits(text[:chars]) if text else (rng.random_sample((chars, b)) < 0.5).astype(np.float64)
    if sequence.shape[1] != b:
        raise ValueError(
            f"the text's characters take {sequence.shape[1]} bits, not {b}: pass b = {sequence.shape[1]}"
        )
    return {
        "main_params": main_params.tolist(),
        "extra_params": extra_params.tolist(),
        "state": state.tolist(),
        "sequence": sequence.tolist(),
    }


def from_gradbench(input: dict) -> tuple:
    """``(main_params, extra_params, state, sequence)``; GradBench's ``jacobian`` is the gradient
    w.r.t. the first two, flattened row by row and joined: [8 l b + 3 b]."""
    return tuple(
        np.array(input[name], np.float64) for name in ("main_params", "extra_params", "state", "sequence")
    )


def args(size=None):
    return from_gradbench(gradbench_input(size))


PROBLEMS = (
    GradientProblem(
        "lstm",
        primal,
        args,
        argnums=(0, 1),
        description="GradBench's lstm (ADBench's): an l-layer LSTM's mean log-loss predicting each "
        "character's b bits from the last, main_params: [2l][4b], extra_params: [3][b], "
        "state: [2l][b] uniform in [0, 1) (seed 31337), sequence: [c][b] bits (GradBench's "
        "text file is not public: seeded random bits, b = 14 as its text); gradient w.r.t. "
        "(main_params, extra_params) (GradBench's jacobian: [8lb + 3b], the two flattened), by "
        "complex step and central differences. GradBench's sizes l = 2, 4, 6, c = 1024, "
        "4096, 8192; here (l, c, b) = (2, 4, 14). Not in the default run: torch.compile of "
        "its gradient took 90 and 135 s (float32, float64; 2-core AMD EPYC, load 10)",
        default=False,
        native=(("jax", primal_jax), ("tensorflow", primal_tensorflow)),
    ),
)


def _jacobian_prepare(target, problem, args: tuple):
    """The gradient by reverse mode (`adapter.gradient`). On TensorFlow in ``eager`` mode, where
    the loss is already one ``tf.function`` (`primal_tensorflow`), the tape and its gradient go
    in that graph too (``tf.function`` without XLA), as GradBench's TensorFlow tool takes its
    gradient in its graph: a tape around the function's call rebuilds the function with its
    intermediates as outputs and runs the gradient as a second one. At (l, c) = (2, 1024): 0.23 s
    a call against 0.47 s, first call (the traces) 1.2 s against 1.6 s; at l = 4 0.42-0.49 s
    against 0.85 s (TF 2.21, the 2-core AMD EPYC, 8 Dec 2026). ``jit`` compiles the whole
    gradient with XLA already (`harness.target.Target.value_and_grad`)."""
    if target.backend.name != "tensorflow" or target.mode != "eager":
        return adapter.gradient().prepare(target, problem, args)
    import tensorflow as tf

    value_and_grad = target.backend.value_and_grad(target.function(problem), problem.argnums)
    return tf.function(lambda *args: value_and_grad(*args)[1], autograph=False)


GRADBENCH = {
    "objective": adapter.value(),
    "jacobian": dataclasses.replace(adapter.gradient(), prepare=_jacobian_prepare),
}
"""GradBench's ``objective`` (the loss) and ``jacobian`` (its gradient w.r.t. main_params then
extra_params, each flattened row by row: [8lb + 3b])."""
