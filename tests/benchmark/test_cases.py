"""`harness.benchmark.cases`: validate before timing (`cases.prepare` calls once and validates that
call; a wrong backend is never timed), the record's fields, and which cases a run holds.

The "do-nothing" backend (``fakes.DoNothing``) meets the spec with numpy and an identity
derivative: it exercises the call path with no framework, and its (wrong) answers must be
caught by validation.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from fakes import DoNothing
from planted import (
    EXTRA_KEYS,
    LOGISTIC,
    TANH,
    Counting,
    Scaled,
    entry_of,
)

from harness import hookspecs, plugins
from harness.benchmark import cases
from harness.benchmark.cases import Case
from harness.results.runs import FORMAT_VERSION
from harness.target import Target

# --- prepare --------------------------------------------------------------------------------------


def test_do_nothing_meets_the_spec():
    backend = DoNothing()
    assert isinstance(backend, hookspecs.Backend)
    assert plugins.spec_violation(backend) is None


def test_correct_backend_is_validated_in_every_mode(entry):
    for mode in entry.backend.modes:
        for case in (
            Case(Target(entry, "cpu", "float32", mode), TANH, (1_000,), 2),
            Case(Target(entry, "cpu", "float64", mode), TANH, (), 3),
            Case(Target(entry, "cpu", "float32", mode), LOGISTIC, (64, 4)),
        ):
            prepared = cases.prepare(case)
            assert prepared.validated, f"{case.name}: {prepared.detail}"
            assert prepared.first_call_s > 0


def test_planted_wrong_backend_is_not_validated(entry):
    wrong = entry_of(Scaled(entry.backend, f"scaled-{entry.name}"))
    for mode in wrong.backend.modes:
        for case in (
            Case(Target(wrong, "cpu", "float32", mode), TANH, (1_000,), 2),
            Case(Target(wrong, "cpu", "float64", mode), TANH, (), 1),
            Case(Target(wrong, "cpu", "float32", mode), LOGISTIC, (64, 4)),
        ):
            prepared = cases.prepare(case)
            assert not prepared.validated, case.name


def test_prepare_calls_once_and_validates_that_call(fast):
    counting = Counting(fast.backend, "counting")
    entry = entry_of(counting)
    prepared = cases.prepare(Case(Target(entry, "cpu", "float32"), TANH, (1_000,), 1))
    assert counting.calls == 1
    assert prepared.validated
    prepared.call()
    assert counting.calls == 2  # the prepared call runs the same function again


def test_do_nothing_backend_runs_the_call_path_and_is_caught_by_validation():
    entry = entry_of(DoNothing())
    for size in ((), (100,)):
        prepared = cases.prepare(Case(Target(entry, "cpu", "float64"), TANH, size, 1))
        assert not prepared.validated  # the identity is not tanh'
        assert "mpmath" in prepared.detail
        expected = 2.0 if size == () else np.linspace(-3.0, 3.0, size[0])
        np.testing.assert_array_equal(prepared.call(), expected)  # the call returns fn(x) = x


@pytest.mark.parametrize("size, order", [((1_000,), 3), ((), 1), ((64, 4), 1)])
def test_extra_info_fields(fast, size, order):
    dtype = "float64" if size == () else "float32"
    problem = LOGISTIC if len(size) == 2 else TANH
    case = Case(Target(fast, "cpu", dtype), problem, size, order)
    info = cases.prepare(case).extra_info()
    assert not EXTRA_KEYS - set(info), f"missing {EXTRA_KEYS - set(info)}"
    json.dumps(info)  # pytest-benchmark writes it as JSON: plain values only
    assert info["harness_format"] == FORMAT_VERSION
    assert (
        info["backend"],
        info["version"],
        info["device"],
        info["dtype"],
        info["mode"],
        info["strategy"],
        info["problem"],
    ) == (fast.name, fast.version, "cpu", dtype, "eager", "reverse", problem.name)
    assert info["size"] == list(size) and info["order"] == order
    assert info["validated"] is True
    assert isinstance(info["first_call_s"], float) and info["first_call_s"] > 0
    itemsize = np.dtype(dtype).itemsize
    if problem is LOGISTIC:
        assert info["bytes"] == 2.0 * 64 * 4 * itemsize and info["flops"] == 4.0 * 64 * 4
    else:
        assert info["bytes"] == 2.0 * int(np.prod(size)) * itemsize and info["flops"] is None


def test_a_backends_known_failures_do_not_cover_its_hand_written_or_value_cases(installed):
    """autograd declares tanh order 6+ wrong in float32 for its own strategies; the hand-written
    derivative on its arrays is right there, and the function alone has no order to fail at."""
    autograd = next((e for e in installed if e.name == "autograd"), None)
    if autograd is None:
        pytest.skip("autograd, the backend with declared failures, is not installed")
    target = Target(autograd, "cpu", "float32")
    own = Case(target, TANH, (10_000,), 6, "reverse")
    assert cases.known_failure(own) is not None and not cases.prepare(own).validated
    for case in (
        Case(target, TANH, (10_000,), 6, cases.HAND_WRITTEN),
        Case(target, TANH, (10_000,), 0, cases.VALUE),
    ):
        assert cases.known_failure(case) is None and cases.prepare(case).validated, case


def test_cases_that_share_arguments_follow_each_other_and_draw_them_once(installed):
    """The gpu profile's 4M x 256 arguments are 8 GB: every target's case of one problem and
    size comes in one block, and the block draws the arguments (and their rounding) once."""
    found = cases.cases(installed, "quick")
    blocks = [(c.problem.name, c.size) for c in found]
    starts = [k for i, k in enumerate(blocks) if i == 0 or blocks[i - 1] != k]
    assert len(starts) == len(set(starts))  # no problem and size comes back after another
    big = [c for c in found if c.problem.name == "logistic" and c.size == (100_000, 64)]
    assert len(big) >= 2
    assert big[0].arguments() is big[-1].arguments()
    assert big[0].rounded() is big[1].rounded()  # same dtype: float32


def test_float32_matmuls_are_float32_in_jax_unless_the_user_says_otherwise(installed):
    """JAX's default would let a GPU compute float32 products in TensorFloat-32."""
    entry = next((e for e in installed if e.name == "jax"), None)
    if entry is None:
        pytest.skip("jax is not installed")
    expected = os.environ.get("JAX_DEFAULT_MATMUL_PRECISION") or "highest"
    assert entry.backend.jax.config.jax_default_matmul_precision == expected
