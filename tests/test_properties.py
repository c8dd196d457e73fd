"""Property tests (hypothesis): parsers over arbitrary text, the CLI over arbitrary options,
pytrees over arbitrary nesting, and derivatives over arbitrary points (finite or not)."""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import math
import os
import re
import tracemalloc
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from harness import expected, oracles, plugins, problems, pytree
from harness.cli import options, output
from harness.cli.main import main
from harness.target import Target
from harness.validation import tolerances, verdicts
from harness.validation.checks import Plan, check_plan

BUILTIN = ("jax", "autograd", "torch", "tensorflow")
SCALAR = ("tanh", "sigmoid", "softplus", "exp-sin", "rational")
PROBLEMS = {p.name: p for p in problems.BUILTIN}
LIMIT = 40.0
"""|x| bound for the oracle property: beyond about 42 the mpmath oracle itself loses tanh'
(see test_mpmath_oracle_is_accurate_where_tanh_saturates)."""
QUICK = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]
)

_LONG_NUMBER = re.compile(r"(?:\d_?){4}")


def bounded(text: str) -> bool:
    """No number of 4+ digits: ``1-99999999`` would make the parsers build a list that large."""
    return not _LONG_NUMBER.search(text)


# --- harness.options.parse_orders ---------------------------------------------------------------------


ORDERISH = st.lists(
    st.tuples(
        st.integers(-3, 40), st.one_of(st.none(), st.integers(-3, 40)), st.sampled_from(["", " ", "\t"])
    ),
    min_size=1,
    max_size=4,
).map(
    lambda parts: ",".join(
        f"{pad}{lo}{pad}" if hi is None else f"{pad}{lo}-{hi}{pad}" for lo, hi, pad in parts
    )
)


@QUICK
@given(
    st.one_of(
        st.text(max_size=20).filter(bounded),
        ORDERISH,
        st.text(alphabet="0123456789-, +_\t", max_size=12).filter(bounded),
    )
)
@example("")
@example("0")
@example("1-30")
@example("31")
@example("1--3")
@example("\u0663")  # Arabic-Indic three: int() accepts it
def test_parse_orders_returns_orders_in_range_or_an_argument_type_error(text):
    try:
        orders = options.parse_orders(text)
    except argparse.ArgumentTypeError:
        return
    assert isinstance(orders, tuple) and orders
    assert all(type(o) is int and 1 <= o <= options.MAX_ORDER for o in orders)
    assert list(orders) == sorted(set(orders))


@QUICK
@given(
    st.lists(st.integers(1, options.MAX_ORDER), min_size=1, max_size=12),
    st.lists(st.tuples(st.integers(1, options.MAX_ORDER), st.integers(0, 5)), max_size=3),
)
def test_parse_orders_round_trip(singles, ranges):
    assert options.parse_orders(",".join(map(str, singles))) == tuple(sorted(set(singles)))
    ranges = [(lo, min(lo + width, options.MAX_ORDER)) for lo, width in ranges]
    text = ",".join([*map(str, singles), *(f"{lo}-{hi}" for lo, hi in ranges)])
    want = set(singles).union(*(range(lo, hi + 1) for lo, hi in ranges))
    assert options.parse_orders(text) == tuple(sorted(want))


def test_parse_orders_rejects_a_reversed_range():
    with pytest.raises(argparse.ArgumentTypeError):
        options.parse_orders("1,5-2")


@pytest.mark.parametrize(
    "parse",
    [options.parse_orders, lambda text: expected._orders(text)],
    ids=["options.parse_orders", "expected._orders"],
)
def test_order_parsers_check_bounds_before_expanding(parse):
    tracemalloc.start()
    try:
        with contextlib.suppress(ValueError, argparse.ArgumentTypeError):
            parse("1-300000")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, f"{peak / 1e6:.0f} MB to parse an 8-character order list"


# --- harness.cli.main validate --------------------------------------------------------------------


def junk() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=10).filter(bounded),
        st.just(""),
        st.integers(-5, 40).map(str),
        st.sampled_from(
            [
                ",",
                " ",
                ",,",
                "--",
                "-x",
                "-",
                "ünïcødé",
                "\U0001f642",
                "\u0663",
                "nan",
                "1e3",
                "None",
                "*",
                "a,b",
            ]
        ),
    )


# Mostly valid values, chosen so that a run stays tiny: autograd only, cheap problems, orders <= 2.
OPTIONS = {
    "--order": ["1", "2", "1-2", "2,1", " 1 ", "0", "31", "2-1", "1-"],
    "--dtype": ["float64", "float32", "float32,float64", "float16"],
    "--mode": ["eager", "jit", "eager,jit", "lazy"],
    "--strategy": ["reverse", "forward", "taylor", "reverse,forward", "forward-over-reverse", "backward"],
    "--device": ["cpu", "cuda:0", "cpu,cpu", "tpu"],
    "-b": ["autograd", "autograd,autograd", "AUTOGRAD", "nope"],
    "-p": [
        "cubic",
        "tanh",
        "sigmoid",
        "logistic-notebook",
        "logistic-notebook-dict",
        "cubic,tanh",
        "ode",
        "det,lse",
        "logistic-huge",
    ],
}
DEFAULTS = {"-b": "autograd", "-p": "cubic", "--order": "1", "--dtype": "float64"}


@st.composite
def option_values(draw) -> dict[str, str | None]:
    """Per option: left out (default) half the time, else a listed value, sometimes junk."""
    drawn = {}
    for flag, listed in OPTIONS.items():
        kind = draw(st.integers(0, 9))
        drawn[flag] = None if kind < 5 else draw(st.sampled_from(listed)) if kind < 9 else draw(junk())
    return drawn


@pytest.fixture(scope="module")
def autograd(registry):
    if registry.backends["autograd"].unavailable:
        pytest.skip(registry.backends["autograd"].unavailable)


@QUICK
@given(option_values(), st.booleans())
def test_validate_cli_exits_0_1_or_2_whatever_the_options(autograd, drawn, joined):
    argv = ["validate", "--no-isolate", "--format", "json"]
    for flag, value in {**DEFAULTS, **{k: v for k, v in drawn.items() if v is not None}}.items():
        argv += [f"{flag}={value}"] if joined else [flag, value]
    out, err = io.StringIO(), io.StringIO()
    # MAX_ORDER patched down: whatever order text parses, the run stays cheap.
    with (
        mock.patch.object(options, "MAX_ORDER", 2),
        mock.patch.dict(os.environ, {plugins.BACKENDS_ENV: ""}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        try:
            code = main(argv)
        except SystemExit as exc:
            event("argparse exit")
            assert exc.code == output.EXIT_USAGE, (argv, err.getvalue())
            assert "usage:" in err.getvalue()
            return
    assert code in (output.EXIT_OK, output.EXIT_FAIL, output.EXIT_USAGE), argv
    event(f"exit {code}")
    if code == output.EXIT_USAGE:
        assert err.getvalue().startswith(("error: unknown ", "error: no ")), (argv, err.getvalue())
    else:
        report = json.loads(out.getvalue())
        assert all(c["status"] in verdicts.STATUSES for c in report["checks"])


@pytest.mark.parametrize("option", ["-b", "-p"])
def test_an_empty_selection_does_not_pass(autograd, option, capsys, monkeypatch):
    monkeypatch.delenv(plugins.BACKENDS_ENV, raising=False)
    argv = {"-b": "autograd", "-p": "cubic", option: ""}
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "validate",
                "--no-isolate",
                "-o",
                "1",
                "--dtype",
                "float64",
                *(x for item in argv.items() for x in item),
            ]
        )
    assert exc.value.code == output.EXIT_USAGE
    captured = capsys.readouterr()
    assert "no checks ran" not in captured.out and "names nothing" in captured.err


# --- harness.expected.parse -----------------------------------------------------------------------


ORDER_FIELDS = ["*", "1", "1-3", "2,5", "6-8", "x", "1-", "3-1", "-2", "1,,2"]
FIELD = {
    "problem": st.sampled_from(["tanh", "*", "cubic", "tanh-wide"]),
    "strategy": st.sampled_from(["*", "reverse", "taylor"]),
    "mode": st.sampled_from(["*", "eager", "jit"]),
    "dtype": st.sampled_from(["*", "float32", "float64"]),
    "orders": st.sampled_from(ORDER_FIELDS),
    "outcome": st.sampled_from([*expected.OUTCOMES, "explode", "FAIL", "pass"]),
}
LINE = st.one_of(
    st.tuples(*FIELD.values(), st.sampled_from(["", "  # why", "#", "# a # b"])).map(
        lambda t: " ".join(t[:-1]) + t[-1]
    ),
    st.lists(st.sampled_from([*ORDER_FIELDS, "fail", "tanh", "*"]), max_size=8).map(" ".join),
    st.sampled_from(["", "   ", "# comment", "\t# indented comment"]),
    st.text(max_size=30).filter(bounded),
)
SOURCE = "plugin.expected"


@QUICK
@given(st.one_of(st.lists(LINE, max_size=6).map("\n".join), st.text(max_size=80).filter(bounded)))
@example("tanh * * float64 2 fail\ntanh * * float64 2")
@example("\n\n# only comments\n")
def test_expected_parse_returns_expectations_or_names_the_bad_line(text):
    lines = text.splitlines()
    try:
        found = expected.parse(text, SOURCE)
    except ValueError as exc:
        match = re.match(rf"{re.escape(SOURCE)}:(\d+): ", str(exc))
        assert match, str(exc)
        number = int(match.group(1))
        assert 1 <= number <= len(lines)
        expected.parse("\n".join(lines[: number - 1]), SOURCE)  # the lines above are fine
        with pytest.raises(ValueError):
            expected.parse(lines[number - 1], SOURCE)
        return
    assert isinstance(found, list)
    assert len(found) == sum(bool(line.partition("#")[0].split()) for line in lines)
    for exp in found:
        assert isinstance(exp, expected.Expectation)
        assert exp.outcome in expected.OUTCOMES
        number = int(exp.source.rpartition(":")[2])
        assert exp.source == f"{SOURCE}:{number}"
        assert lines[number - 1].split()[:4] == [exp.problem, exp.strategy, exp.mode, exp.dtype]
        assert exp.orders is None or all(isinstance(o, int) for o in exp.orders)


# --- harness.pytree -------------------------------------------------------------------------------


LEAF = st.one_of(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=3),
        elements=st.floats(width=64),
    ),
    st.floats(width=64).map(np.float64),
)
TREE = st.recursive(
    LEAF,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3),
        st.lists(kids, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=3), kids, max_size=3),
    ),
    max_leaves=10,
)


def assert_same_tree(got, want):
    if isinstance(want, dict):
        assert type(got) is dict and list(got) == list(want)
        for key in want:
            assert_same_tree(got[key], want[key])
    elif isinstance(want, tuple | list):
        assert type(got) is type(want) and len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_same_tree(g, w)
    else:
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
        assert got.shape == np.shape(want)
        assert np.array_equal(got, want, equal_nan=True)


@QUICK
@given(TREE)
def test_pytree_flatten_unflatten_round_trip(tree):
    flat = pytree.flatten(tree)
    assert flat.ndim == 1 and flat.dtype == np.float64
    assert flat.size == sum(int(np.size(leaf)) for leaf in pytree.leaves(tree))
    back = pytree.unflatten(flat, tree)
    assert_same_tree(back, tree)
    assert pytree.structure(back) == pytree.structure(tree)
    assert np.array_equal(pytree.flatten(back), flat, equal_nan=True)
    # Any vector of the right size takes the tree's shape.
    other = np.arange(flat.size, dtype=np.float64)
    assert np.array_equal(pytree.flatten(pytree.unflatten(other, tree)), other)


def test_pytree_round_trip_of_a_namedtuple():
    Params = collections.namedtuple("Params", "W b")
    tree = Params(np.ones(3), np.zeros(()))
    assert_same_tree(pytree.unflatten(pytree.flatten(tree), tree), tree)


# --- Derivatives at drawn points ------------------------------------------------------------------


@pytest.fixture(scope="module")
def backend(registry) -> plugins.BackendEntry:
    """autograd if installed (its tanh rule is exact in the tails), else any installed built-in."""
    for name in ("autograd", *BUILTIN):
        if not registry.backends[name].unavailable:
            return registry.backends[name]
    pytest.skip("no built-in backend is installed")


def first_derivative(entry: plugins.BackendEntry, name: str, points: list[float]) -> np.ndarray:
    target = Target(entry, "cpu", "float64", "eager")
    d = target.derivative(PROBLEMS[name], 1, "reverse")
    return target.numpy(d(target.array(np.asarray(points, np.float64))))


FINITE = st.floats(-LIMIT, LIMIT, allow_nan=False, allow_infinity=False)


@pytest.mark.on_installed  # `backend`: autograd, else whichever is installed
@QUICK
@given(st.sampled_from(SCALAR), st.lists(FINITE, min_size=1, max_size=4))
@example("tanh", [LIMIT])
@example("sigmoid", [-LIMIT])
@example("softplus", [LIMIT, -LIMIT])
def test_first_derivative_agrees_with_the_mpmath_oracle(backend, name, points):
    if backend.name != "autograd":
        # jax and torch differentiate tanh as 1 - tanh**2, exact only relative to 1: compare
        # there, as validation does, with a point where the derivative is O(1).
        points = [0.0, *points]
    value = first_derivative(backend, name, points)
    reference = oracles.mpmath_derivative(PROBLEMS[name].fn, np.asarray(points), 1)
    assert tolerances.agrees(value, reference, "float64", 1), (value, reference)


def test_mpmath_oracle_is_accurate_where_tanh_saturates():
    import mpmath

    x = np.array([50.0])
    reference = oracles.mpmath_derivative(PROBLEMS["tanh"].fn, x, 1)
    with mpmath.workdps(60):
        exact = np.array([float(mpmath.sech(mpmath.mpf(50)) ** 2)])
    assert tolerances.agrees(reference, exact, "float64", 1), (reference, exact)


NONFINITE = st.sampled_from([math.nan, math.inf, -math.inf])


@pytest.mark.on_installed  # `backend`: autograd, else whichever is installed
@QUICK
@given(st.sampled_from(SCALAR), st.lists(st.one_of(NONFINITE, st.floats(-5, 5)), min_size=1, max_size=4))
@example("tanh", [math.nan])
@example("softplus", [math.inf, 1.0])
@example("rational", [-math.inf])
def test_nonfinite_points_are_classified_never_raised(backend, name, points):
    assume(not all(map(math.isfinite, points)))
    if backend.name != "autograd":
        points = [0.0, *points]  # as above: jax and torch are exact in tanh's tails only relative to 1
    problem = problems.ScalarProblem(f"{name}-nonfinite", PROBLEMS[name].fn, tuple(points))
    plan = Plan(
        backends=[backend],
        problems=[problem],
        dtypes=("float64",),
        modes=("eager",),
        strategies=("reverse",),
        orders=(1,),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numdifftools warns about all-NaN slices
        checks = list(check_plan(plan))
    assert checks
    for c in checks:
        if c.status == "error":
            # Known: numdifftools raises IndexError on a NaN point (test_nan_point_self_consistency).
            assert c.oracle == "self-consistency" and any(map(math.isnan, points)), c
        else:
            assert c.status == "pass" or (c.status, c.classification) == ("fail", "overflow/nan"), c
    [primary] = [c for c in checks if c.oracle.startswith("mpmath")]
    assert primary.status in ("pass", "fail")
    if any(map(math.isnan, points)):
        assert primary.classification == "overflow/nan"


@pytest.mark.on_installed  # `backend`: autograd, else whichever is installed
def test_nan_point_self_consistency_is_overflow_nan(backend):
    problem = problems.ScalarProblem("tanh-nan", problems.tanh, (math.nan, 1.0))
    plan = Plan(
        backends=[backend],
        problems=[problem],
        dtypes=("float64",),
        modes=("eager",),
        strategies=("reverse",),
        orders=(1,),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [check] = [c for c in check_plan(plan) if c.oracle == "self-consistency"]
    assert (check.status, check.classification) == ("fail", "overflow/nan"), check.message
