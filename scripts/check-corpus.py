"""``harness.check`` against ``torch.autograd.gradcheck`` on PyTorch's own operator samples.

    OMP_NUM_THREADS=1 python scripts/check-corpus.py --out corpus.jsonl          # every sample
    OMP_NUM_THREADS=1 python scripts/check-corpus.py --limit 40 --out smoke.jsonl

``torch.testing._internal`` imports ``expecttest``, which torch does not install: ``pip install
expecttest`` first (or ``pip install --target DIR expecttest`` and DIR on ``PYTHONPATH``). Five
minutes for all 539 samples on 2 loaded cores.

The corpus: ``torch.testing._internal.common_methods_invocations.op_db``, every operator that
supports autograd in float64 on the CPU, its first sample (``op.sample_inputs("cpu",
torch.float64, requires_grad=True)``) whose input is a tensor, or a list of tensors, that
requires grad; the function is ``op(input, *args, **kwargs)`` of the input alone (the other
arguments closed over; through ``op.gradcheck_wrapper`` and ``sample.output_process_fn_grad``,
as PyTorch's own gradcheck tests call it), given to ``harness.check(fn, input, backend="torch")`` and to
``torch.autograd.gradcheck(fn, (input,))`` with their defaults. The first ``--order2`` operators
that support gradgrad are also checked at order 2 (``check(..., order=2)``, ``gradgradcheck``).
Each sample whose output is one floating tensor is also wrapped in a custom
``torch.autograd.Function`` (``setup_context`` style) whose backward and jvp are the true ones
(``torch.func.vjp``/``jvp``) times 1 + eps, for eps 1e-6 and 1e-9.

Every check runs first (pass 1, so that the process's peak resident memory after it is check's
alone), then gradcheck on the same samples (pass 2). Per sample one JSON line; at the end a
summary: exceptions escaping ``check``, failures of ``check`` where gradcheck passes (each also
given to gradcheck with ``check_forward_ad=True``, off by default, to tell a forward-mode fault
from a false alarm), planted errors caught (1e-9: where the complex step applied), median and
p90 of check's time over gradcheck's (same process, one thread; check timed on its second call,
once the operator has run, as it has for gradcheck) and the peak memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
import traceback
import warnings

import numpy as np
import torch
from torch.testing._internal.common_methods_invocations import op_db

import harness

EPSILONS = (1e-6, 1e-9)


def samples(limit: int | None):
    """``(name, fn, input, op)`` for each operator's first usable float64 sample."""
    found = 0
    for op in op_db:
        if limit is not None and found >= limit:
            return
        if not op.supports_autograd or not op.supports_dtype(torch.float64, "cpu"):
            continue
        try:
            sample = next(
                s
                for s in op.sample_inputs("cpu", torch.float64, requires_grad=True)
                if _differentiable(s.input)
            )
        except (StopIteration, Exception):
            continue
        found += 1
        yield _name(op), _function(op, sample), sample.input, op


def _name(op) -> str:
    return op.name + (f".{op.variant_test_name}" if op.variant_test_name else "")


def _differentiable(x) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dtype == torch.float64 and x.requires_grad
    return isinstance(x, list | tuple) and len(x) > 0 and all(_differentiable(t) for t in x)


def _function(op, sample):
    args = [a.detach() if isinstance(a, torch.Tensor) else a for a in sample.args]
    kwargs = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in sample.kwargs.items()}
    # As PyTorch's own gradcheck tests call it: through the op's gradcheck_wrapper (a Hermitian
    # input for eigh, a positive definite one for cholesky) and the sample's output processing.
    wrapper, post = op.gradcheck_wrapper, sample.output_process_fn_grad
    return lambda x: post(wrapper(op, x, *args, **kwargs))


def planted(fn, eps: float):
    """``fn`` of one tensor returning one tensor, as an autograd.Function whose backward and jvp
    are the true ones times 1 + eps."""

    class Planted(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return fn(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])
            ctx.x = inputs[0]

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return torch.func.vjp(fn, x)[1](g)[0] * (1 + eps)

        @staticmethod
        def jvp(ctx, t):
            return torch.func.jvp(fn, (ctx.x,), (t,))[1] * (1 + eps)

    return Planted.apply


def run_check(fn, x, **options) -> dict:
    started = time.perf_counter()
    try:
        report = harness.check(fn, _copy(x), backend="torch", **options)
    except Exception as exc:
        return {"escaped": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()[-2000:],
                "seconds": time.perf_counter() - started}  # fmt: skip
    seconds = time.perf_counter() - started
    statuses = {}
    for c in report.checks:
        statuses[c.status] = statuses.get(c.status, 0) + 1
    return {
        "passed": report.passed,
        "classification": report.classification,
        "complex_step": any(c.oracle == "complex-step" for c in report.checks),
        "inconclusive": sum(c.classification == "inconclusive" for c in report.checks),
        "statuses": statuses,
        "failures": [
            f"{c.strategy} order {c.order} vs {c.oracle}: {c.classification} "
            f"(err/allowed {c.err_over_allowed}) {c.message[:200]}"
            for c in report.failures
        ],
        "seconds": seconds,
    }


def run_gradcheck(fn, x, order: int, **options) -> dict:
    """gradcheck (gradgradcheck) with its defaults; a list input as that many tensor arguments."""
    check = torch.autograd.gradcheck if order == 1 else torch.autograd.gradgradcheck
    inputs = (_copy(x),) if isinstance(x, torch.Tensor) else tuple(_copy(x))
    of = fn if isinstance(x, torch.Tensor) else (lambda *ts: fn(list(ts)))
    started = time.perf_counter()
    try:
        ok = bool(check(of, inputs, raise_exception=False, **options))
        error = None
    except Exception as exc:
        ok, error = False, f"{type(exc).__name__}: {str(exc)[:300]}"
    return {"passed": ok, "error": error, "seconds": time.perf_counter() - started}


def _copy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().clone().requires_grad_()
    return [_copy(t) for t in x]


def _one_float_tensor(fn, x) -> bool:
    try:
        with torch.no_grad():
            y = fn(_copy(x))
    except Exception:
        return False
    return isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and y.dtype == torch.float64


def _nonzero_jacobian(fn, x) -> bool:
    """Whether a planted scale can show: the derivative is not all zero (nor rounding residue,
    as ``corrcoef`` of one row, the constant 1, gives)."""
    try:
        xx = _copy(x)
        y = fn(xx)
        (grad,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), xx, allow_unused=True)
        return grad is not None and bool(grad.abs().max() > 1e-10 * (1 + y.abs().max()))
    except Exception:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="at most this many operators")
    parser.add_argument("--order2", type=int, default=30, help="operators also checked at order 2")
    parser.add_argument("--out", default="corpus.jsonl")
    options = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    chosen = list(samples(options.limit))
    rows = []
    # Pass 1: harness.check alone, so that the process's peak memory after it is check's own.
    for name, fn, x, op in chosen:
        shape = list(x.shape) if isinstance(x, torch.Tensor) else [list(t.shape) for t in x]
        row = {"op": name, "shape": shape, "check": run_check(fn, x)}
        if _one_float_tensor(fn, x) and _nonzero_jacobian(fn, x):
            row["planted"] = {str(eps): run_check(planted(fn, eps), x) for eps in EPSILONS}
        if sum("check2" in r for r in rows) < options.order2 and op.supports_gradgrad:
            row["check2"] = run_check(fn, x, order=2)
        rows.append(row)
    check_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Pass 2: gradcheck on the same samples (timed in the same process, one thread).
    with open(options.out, "w") as out:
        for row, (name, fn, x, _) in zip(rows, chosen, strict=True):
            # Timed warm, as gradcheck is: the op already ran forward and backward in pass 1 (its
            # first-call costs, such as torch importing its decompositions, stay in pass 1).
            row["first_check_seconds"] = row["check"]["seconds"]
            row["check"]["seconds"] = run_check(fn, x)["seconds"]
            row["gradcheck"] = run_gradcheck(fn, x, 1)
            if "check2" in row:
                row["gradgradcheck"] = run_gradcheck(fn, x, 2)
            if row["gradcheck"]["passed"] and not row["check"].get("passed"):
                # Does gradcheck see it too once it checks forward mode (off by default)?
                row["gradcheck_forward_ad"] = run_gradcheck(fn, x, 1, check_forward_ad=True)
            out.write(json.dumps(row) + "\n")
            out.flush()
            ratio = row["check"]["seconds"] / max(row["gradcheck"]["seconds"], 1e-9)
            print(name, row["check"].get("passed"), row["gradcheck"]["passed"], f"{ratio:.2f}x", flush=True)
    print(f"peak resident memory after every check (before any gradcheck): {check_peak:.0f} MB")
    summarize(rows)


def summarize(rows: list[dict]) -> None:
    runs = [(r["op"], r["check"], r["gradcheck"]) for r in rows]
    runs += [(r["op"] + " (order 2)", r["check2"], r["gradgradcheck"]) for r in rows if "check2" in r]
    escaped = [(op, c["escaped"]) for op, c, _ in runs if "escaped" in c]
    alarms = [(op, c["failures"]) for op, c, g in runs if g["passed"] and c.get("failures")]
    undecided = [(op, c.get("classification")) for op, c, _ in runs if "escaped" not in c]
    undecided = [(op, why) for op, why in undecided if why in ("inconclusive", "unsupported")]
    forward = {r["op"]: r["gradcheck_forward_ad"]["passed"] for r in rows if "gradcheck_forward_ad" in r}
    first = runs[: len(rows)]
    ratios = [c["seconds"] / g["seconds"] for _, c, g in first if g["seconds"] > 0 and g["passed"]]
    print(f"\n{len(rows)} samples, {sum('check2' in r for r in rows)} also at order 2")
    print(f"exceptions escaping check: {len(escaped)}")
    for op, e in escaped:
        print(f"  {op}: {e[:200]}")
    print(f"check fails where gradcheck passes: {len(alarms)}; of them gradcheck with "
          f"check_forward_ad=True fails too: {sum(v is False for v in forward.values())}")  # fmt: skip
    for op, failures in alarms:
        seen = "" if forward.get(op) is not False else " [gradcheck(check_forward_ad=True) fails too]"
        print(f"  {op}{seen}: {failures[:2]}")
    print(f"no verdict (nothing failed, no oracle could judge): {len(undecided)}")
    for op, why in undecided:
        print(f"  {op}: {why}")
    for eps in EPSILONS:
        tried = [(r["op"], r["planted"][str(eps)]) for r in rows if "planted" in r]
        caught = [op for op, c in tried if c.get("passed") is False]
        stepped = [(op, c) for op, c in tried if c.get("complex_step")]
        caught_stepped = [op for op, c in stepped if c.get("passed") is False]
        print(f"planted {eps:g}: caught {len(caught)} of {len(tried)}; where the complex step applied "
              f"{len(caught_stepped)} of {len(stepped)}")  # fmt: skip
        missed = [op for op, c in (stepped if eps < 1e-7 else tried) if c.get("passed") is not False]
        if missed:
            print("  missed:", ", ".join(missed[:40]))
    if ratios:
        q = statistics.quantiles(ratios, n=10)
        print(f"time check/gradcheck over {len(ratios)} samples gradcheck passes: median "
              f"{statistics.median(ratios):.2f}x, p90 {q[-1]:.2f}x, max {max(ratios):.1f}x")  # fmt: skip
    print(f"gradcheck passes {sum(g['passed'] for _, _, g in runs)} of {len(runs)}; "
          f"check passes {sum(bool(c.get('passed')) for _, c, _ in runs)}")  # fmt: skip
    print(f"median check seconds {np.median([c['seconds'] for _, c, _ in runs]):.3f}")


if __name__ == "__main__":
    main()
